"""The flat, bilingual table of organisations: CSV and XLSX exports, and the importer's template.

One row per activity place, one column per stored field of the record (see
:class:`app.models.Organisation` and its links), in :data:`COLUMNS` order, plus a few read-only
label columns for humans (commune names, category titles, legal status labels …) that an
importer ignores. The same table is written by :func:`csv_chunks` / :func:`xlsx_bytes` and read
back by :func:`rows_from_table`, so *export → edit in Excel → import* round-trips.

Cells
  * free-text lists and id lists are joined with ``" | "`` in one cell (items must not contain
    ``|``); on reading, a cell is split on ``|`` and the items stripped, empty items dropped; id
    lists also accept ``,`` ``;`` or blanks between ids;
  * ints, floats, booleans and dates are typed cells in XLSX; in CSV they are written as
    ``1030``, ``152302`` / ``4.401445106123757``, ``true``/``false`` and ISO ``2020-08-28``;
    the reader also accepts what a spreadsheet writes back (``28/08/2020``, ``4,40``,
    ``TRUE``/``WAAR``/``VRAI``, ``1030.0`` …);
  * empty cells are ``None`` (scalars) or ``[]`` (lists).

Header cells read ``"{key} — {label_nl} / {label_fr}"``; :func:`parse_header` gives back the key,
so columns may be reordered, removed or added in a spreadsheet.

CSV and spreadsheets: a text cell starting with ``= + - @`` (or tab / carriage return) would be
run as a formula by Excel ("CSV injection", and ``- Partenariat …`` would come back as
``#NAME?``). With ``excel_safe=True`` (the default) such cells are written with a leading
``'``, and :func:`rows_from_table` removes it again, so the value is unchanged either way. XLSX
needs no such escape: every text cell is stored as text, never as a formula; carriage returns
are kept with the OOXML ``_x000D_`` escape; floats are written with all 17 digits.

Not kept: XML-illegal control characters (dropped in XLSX) and text beyond Excel's 32,767
characters per cell (openpyxl truncates).
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import math
import os
import re
import uuid as uuid_mod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

__all__ = [
    "COLUMNS",
    "COLUMNS_BY_KEY",
    "DERIVED",
    "EDITABLE_KEYS",
    "HEADERS",
    "KEYS",
    "LIST_SEPARATOR",
    "SHEET_TITLE",
    "Column",
    "TableError",
    "TableProblem",
    "csv_chunks",
    "header_cell",
    "parse_header",
    "row_cells",
    "rows_from_table",
    "xlsx_bytes",
]

LIST_SEPARATOR = " | "
HEADER_SEPARATOR = " — "
SHEET_TITLE = "organisations"

Kind = Literal["int", "float", "bool", "date", "str", "texts", "ids"]


@dataclass(frozen=True)
class Column:
    """One column of the table.

    ``kind`` is the python type of the value: ``int``, ``float``, ``bool``, ``date``, ``str``,
    ``texts`` (list of str) or ``ids`` (list of int). ``get`` reads the value from a
    :func:`app.search.fetch_records` row (default: ``row[key]``). Read-only columns are derived
    labels for humans; :func:`rows_from_table` ignores them.
    """

    key: str
    label_nl: str
    label_fr: str
    kind: Kind = "str"
    read_only: bool = False
    width: float | None = None
    get: Callable[[dict], Any] | None = field(default=None, compare=False, repr=False)

    @property
    def header(self) -> str:
        return header_cell(self.key, self.label_nl, self.label_fr)

    def value(self, row: dict) -> Any:
        """The python value of this column for one fetch_records row (lists stay lists)."""
        value = self.get(row) if self.get is not None else row.get(self.key)
        if self.kind in ("texts", "ids"):
            return list(value or [])
        return value


def header_cell(key: str, label_nl: str, label_fr: str) -> str:
    return f"{key}{HEADER_SEPARATOR}{label_nl} / {label_fr}"


def parse_header(cell: Any) -> str:
    """The column key of a header cell: the text before ``" — "``, stripped (a bare key works too)."""
    if cell is None:
        return ""
    text = str(cell).lstrip("\ufeff")
    return text.split("—", 1)[0].strip().lower()


# ---------------------------------------------------------------- column definitions


def _ids(name: str) -> Callable[[dict], list[int]]:
    return lambda row: [item["id"] for item in row.get(name) or []]


def _labels(name: str, attr: str) -> Callable[[dict], list[str]]:
    return lambda row: [item.get(attr) or "" for item in row.get(name) or []]


def _legal(attr: str) -> Callable[[dict], str | None]:
    return lambda row: (row.get("legal_status") or {}).get(attr)


def _commune(lang: str) -> Callable[[dict], str | None]:
    return lambda row: (row.get("commune_ref") or {}).get(lang)


def _uuid(row: dict) -> str | None:
    value = row.get("uuid")
    return None if value is None else str(value)


def _pair(stem: str, label_nl: str, label_fr: str, kind: Kind = "str", width: float | None = None) -> list[Column]:
    return [
        Column(f"{stem}_nl", f"{label_nl} (NL)", f"{label_fr} (NL)", kind, width=width),
        Column(f"{stem}_fr", f"{label_nl} (FR)", f"{label_fr} (FR)", kind, width=width),
    ]


def _ro_pair(stem: str, label_nl: str, label_fr: str, get: Callable[[str], Callable[[dict], Any]],
             kind: Kind = "str", width: float | None = None) -> list[Column]:
    return [
        Column(f"{stem}_nl", f"{label_nl} (NL)", f"{label_fr} (NL)", kind, read_only=True, width=width, get=get("nl")),
        Column(f"{stem}_fr", f"{label_nl} (FR)", f"{label_fr} (FR)", kind, read_only=True, width=width, get=get("fr")),
    ]


def _link(stem: str, name: str, label_attr: str, ids_nl: str, ids_fr: str, labels_nl: str, labels_fr: str,
          label_stem: str) -> list[Column]:
    return [
        Column(f"{stem}_ids", ids_nl, ids_fr, "ids", width=16, get=_ids(name)),
        *_ro_pair(label_stem, labels_nl, labels_fr, lambda lang: _labels(name, f"{label_attr}_{lang}"), "texts", 40),
    ]


COLUMNS: list[Column] = [
    # identity
    Column("id", "Id (fiche)", "Id (fiche)", "int", width=10),
    Column("uuid", "UUID (afgeleid)", "UUID (dérivé)", read_only=True, width=38, get=_uuid),
    # names
    *_pair("name_official", "Officiële naam", "Nom officiel", width=45),
    *_pair("name_alternative", "Andere namen", "Autres noms", "texts", 24),
    *_pair("name_former", "Vroegere namen", "Anciens noms", "texts", 24),
    *_pair("name_service", "Dienstnamen", "Noms de service", "texts", 24),
    # descriptive texts
    *_pair("description", "Beschrijving", "Description", width=50),
    *_pair("activities", "Activiteiten", "Activités", width=50),
    *_pair("public", "Doelpubliek", "Public cible", width=40),
    *_pair("permanency", "Openingsuren", "Heures d'ouverture", width=40),
    *_pair("remark", "Opmerking", "Remarque", width=40),
    *_pair("access", "Toegang", "Accès", "texts", 30),
    *_pair("publication", "Publicaties", "Publications", "texts", 30),
    *_pair("other_accreditation", "Andere erkenningen", "Autres agréments", "texts", 30),
    *_pair("subsidy", "Subsidies", "Subventions", "texts", 30),
    # contact
    *_pair("phone", "Telefoon", "Téléphone", "texts", 30),
    *_pair("fax", "Fax", "Fax", "texts", 20),
    *_pair("email", "E-mail", "E-mail", "texts", 30),
    *_pair("website_official", "Officiële website", "Site officiel", "texts", 30),
    *_pair("website_unofficial", "Niet-officiële website", "Site non officiel", "texts", 30),
    *_pair("website_info", "Informatieve website", "Site d'information", "texts", 30),
    # identity and status
    Column("enterprise_numbers", "Ondernemingsnummers (KBO)", "Numéros d'entreprise (BCE)", "texts", width=16),
    Column("legal_status_id", "Rechtsvorm (id)", "Statut juridique (id)", "int", width=10),
    *_ro_pair("legal_status", "Rechtsvorm", "Statut juridique", lambda lang: _legal(f"label_{lang}"), width=30),
    Column("lang_status", "Taalstatuut", "Statut linguistique", width=10),
    Column("is_interpreting", "Tolkdienst", "Service d'interprétariat", "bool", width=10),
    Column("legacy_type", "Type (oud veld)", "Type (ancien champ)", width=10),
    # links, each followed by its labels (read-only)
    *_link("category", "categories", "title", "Categorieën (ids)", "Catégories (ids)", "Categorieën", "Catégories",
           "category_titles"),
    Column("sector_ids", "Sectoren (ids - afgeleid)", "Secteurs (ids - dérivés)", "ids", read_only=True, width=16,
           get=_ids("sectors")),
    *_ro_pair("sector_titles", "Sectoren", "Secteurs", lambda lang: _labels("sectors", f"title_{lang}"), "texts", 40),
    *_link("accreditation", "accreditations", "label", "Erkenningen (ids)", "Agréments (ids)", "Erkenningen",
           "Agréments", "accreditation_labels"),
    *_link("language", "languages", "name", "Aangeboden talen (ids)", "Langues proposées (ids)", "Aangeboden talen",
           "Langues proposées", "language_names"),
    *_link("offer_type", "offer_types", "label", "Aanbodtypes (ids)", "Types d'offre (ids)", "Aanbodtypes",
           "Types d'offre", "offer_type_labels"),
    *_link("action_zone", "action_zones", "label", "Actiegebieden (ids)", "Zones d'action (ids)", "Actiegebieden",
           "Zones d'action", "action_zone_labels"),
    # address
    Column("address_id", "Adres (oud id)", "Adresse (ancien id)", "int", width=10),
    *_pair("street", "Straat", "Rue", width=30),
    Column("number", "Huisnummer", "Numéro", width=8),
    Column("number_building", "Gebouw", "Bâtiment", width=8),
    Column("postal_box", "Bus", "Boîte", width=8),
    Column("postcode", "Postcode", "Code postal", "int", width=10),
    Column("commune_nis", "Gemeente (NIS-code)", "Commune (code INS)", width=10),
    *_ro_pair("commune_name", "Gemeente", "Commune", _commune, width=20),
    *_pair("commune", "Gemeente zoals opgegeven", "Commune telle que donnée", width=20),
    Column("quartier_code", "Wijk (code)", "Quartier (code)", width=10),
    *_pair("quartier", "Wijk", "Quartier", width=20),
    Column("statistical_sector_code", "Statistische sector (code)", "Secteur statistique (code)", width=12),
    *_pair("statistical_sector", "Statistische sector", "Secteur statistique", width=24),
    Column("x_31370", "X Lambert 72 (m)", "X Lambert 72 (m)", "float", width=12),
    Column("y_31370", "Y Lambert 72 (m)", "Y Lambert 72 (m)", "float", width=12),
    Column("lon", "Lengtegraad WGS84", "Longitude WGS84", "float", width=12),
    Column("lat", "Breedtegraad WGS84", "Latitude WGS84", "float", width=12),
    *_pair("address_remark", "Opmerking adres", "Remarque adresse", width=30),
    # dates and state
    Column("last_update", "Laatste bijwerking", "Dernière mise à jour", "date", width=12),
    Column("start_date", "Startdatum", "Date de début", "date", width=12),
    Column("publication_state", "Publicatiestatus", "État de publication", width=12),
    # what the importer derived (read-only: recomputed on every import)
    Column("phones_e164", "Telefoons (E.164, afgeleid)", "Téléphones (E.164, dérivés)", "texts", read_only=True, width=20),
    Column("geocode_status", "Geocodering", "Géocodage", read_only=True, width=10),
    Column("quality_score", "Kwaliteit (0-100)", "Qualité (0-100)", "int", read_only=True, width=8),
    Column("quality_flags", "Kwaliteitsopmerkingen", "Remarques de qualité", "texts", read_only=True, width=30),
]
DERIVED = ("uuid", "phones_e164", "geocode_status", "quality_score", "quality_flags")

COLUMNS_BY_KEY: dict[str, Column] = {c.key: c for c in COLUMNS}
KEYS: list[str] = [c.key for c in COLUMNS]
EDITABLE_KEYS: list[str] = [c.key for c in COLUMNS if not c.read_only]
HEADERS: list[str] = [c.header for c in COLUMNS]
assert len(COLUMNS_BY_KEY) == len(COLUMNS), "duplicate column key"


# ---------------------------------------------------------------- writing


def _cell(column: Column, value: Any) -> Any:
    if value is None:
        return None
    kind = column.kind
    if kind in ("texts", "ids"):
        return LIST_SEPARATOR.join(str(v) for v in value) if value else None
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "bool":
        return bool(value)
    if kind == "date":
        return value.date() if isinstance(value, dt.datetime) else value
    if isinstance(value, uuid_mod.UUID):
        return str(value)
    return value if isinstance(value, str) else str(value)


def row_cells(row: dict) -> list:
    """The typed cells of one fetch_records row in COLUMNS order: int, float, bool,
    datetime.date, str (lists joined with " | "), or None for an empty cell."""
    return [_cell(c, c.value(row)) for c in COLUMNS]


_FORMULA_START = re.compile(r"'*[=+\-@\t\r]")
_ESCAPED = re.compile(r"'+[=+\-@\t\r]")


def _csv_text(value: Any, excel_safe: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, (int, dt.date)):
        return str(value) if isinstance(value, int) else value.isoformat()
    if excel_safe and _FORMULA_START.match(value):
        return "'" + value
    return value


def csv_chunks(rows: Iterable[dict], *, sep: str = ",", bom: bool = True, excel_safe: bool = True,
               batch: int = 200) -> Iterator[bytes]:
    """The table as UTF-8 CSV (header row first), streamed in chunks of ``batch`` rows.

    ``bom`` prefixes the UTF-8 byte-order mark so Excel reads the file as UTF-8; ``sep`` is ","
    or ";" (the latter is what Excel expects in Belgian locales). Lines end with CRLF (RFC 4180);
    cells with the separator, quotes or newlines are quoted.
    """
    if sep not in (",", ";", "\t"):
        raise ValueError("sep must be ',' or ';'")
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=sep, quotechar='"', quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(HEADERS)
    head = buffer.getvalue().encode("utf-8")
    yield (codecs.BOM_UTF8 + head) if bom else head
    buffer.seek(0)
    buffer.truncate()
    pending = 0
    for row in rows:
        writer.writerow([_csv_text(v, excel_safe) for v in row_cells(row)])
        pending += 1
        if pending >= batch:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    if pending:
        yield buffer.getvalue().encode("utf-8")


def xlsx_bytes(rows: Iterable[dict]) -> bytes:
    """The table as an XLSX workbook: one sheet "organisations", a bold frozen header row with
    an autofilter, typed cells (numbers, ``yyyy-mm-dd`` dates, booleans, text never read as a
    formula). Written with openpyxl's write-only mode: rows are streamed to a temporary file."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ERROR_CODES, ILLEGAL_CHARACTERS_RE
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(SHEET_TITLE)
    for i, column in enumerate(COLUMNS, 1):
        ws.column_dimensions[get_column_letter(i)].width = column.width or 14
    ws.freeze_panes = "A2"

    bold = Font(bold=True)
    bold_grey = Font(bold=True, italic=True, color="FF595959")
    grey = PatternFill("solid", fgColor="FFE7E6E6")
    wrap = Alignment(wrap_text=True, vertical="top")
    header = []
    for column in COLUMNS:
        cell = WriteOnlyCell(ws, value=column.header)
        cell.font = bold_grey if column.read_only else bold
        cell.alignment = wrap
        if column.read_only:
            cell.fill = grey
        header.append(cell)
    ws.append(header)

    dates = [i for i, c in enumerate(COLUMNS) if c.kind == "date"]
    floats = [i for i, c in enumerate(COLUMNS) if c.kind == "float"]
    count = 0
    for row in rows:
        cells = row_cells(row)
        for i in floats:
            value = cells[i]
            if value is not None and math.isfinite(value) and float(f"{value:.16g}") != value:
                # openpyxl writes "%.16g", which loses the 17th digit of some doubles
                # (50.851756126658735): write the shortest exact representation instead.
                exact = WriteOnlyCell(ws, value=value)
                exact._value = repr(value)
                cells[i] = exact
        for i, value in enumerate(cells):
            if isinstance(value, str):
                if ILLEGAL_CHARACTERS_RE.search(value):
                    value = ILLEGAL_CHARACTERS_RE.sub("", value)
                    cells[i] = value
                if "\r" in value or "_x" in value:
                    value = _xlsx_escape(value)
                    cells[i] = value
                if value.startswith("=") or value in ERROR_CODES:
                    text_cell = WriteOnlyCell(ws, value=value)
                    text_cell.data_type = "s"  # text, never a formula or an error value
                    cells[i] = text_cell
        for i in dates:
            if cells[i] is not None:
                date_cell = WriteOnlyCell(ws, value=cells[i])
                date_cell.number_format = "yyyy-mm-dd"
                cells[i] = date_cell
        ws.append(cells)
        count += 1
    ws.auto_filter.ref = f"A1:{get_column_letter(len(COLUMNS))}{count + 1}"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


_XSTRING_LITERAL = re.compile(r"_(?=x[0-9A-Fa-f]{4}_)")
_XSTRING_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def _xlsx_escape(value: str) -> str:
    """OOXML ST_Xstring escaping, as Excel writes it: a carriage return (which XML would turn into
    a line feed) as ``_x000D_``, and a literal ``_x0041_``-like text as ``_x005F_x0041_``."""
    return _XSTRING_LITERAL.sub("_x005F_", value).replace("\r", "_x000D_")


def _xlsx_unescape(value: str) -> str:
    return _XSTRING_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value) if "_x" in value else value


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class TableProblem:
    """A cell that could not be read: sheet/file ``row`` (1-based, the header is row 1)."""

    row: int
    key: str
    value: Any
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.key} = {self.value!r}: {self.reason}"


class TableError(ValueError):
    def __init__(self, problem: TableProblem | str):
        self.problem = problem if isinstance(problem, TableProblem) else None
        super().__init__(str(problem))


_TRUE = {"true", "1", "yes", "y", "ja", "oui", "waar", "vrai", "x"}
_FALSE = {"false", "0", "no", "n", "nee", "non", "onwaar", "faux"}
_INT = re.compile(r"[+-]?\d+")
_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d/%m/%y", "%d-%m-%Y", "%d.%m.%Y", "%Y/%m/%d")
_ID_SPLIT = re.compile(r"[|,;\s]+")


def _number_text(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise ValueError("expected a whole number")
    text = str(value).strip()
    if _INT.fullmatch(text):
        return int(text)
    number = _to_float(text)
    if number.is_integer():
        return int(number)
    raise ValueError("expected a whole number")


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip().replace("\u00a0", "").replace(" ", "")
        if "," in text and "." not in text:
            text = text.replace(",", ".")  # decimal comma (nl-BE, fr-BE spreadsheets)
        try:
            number = float(text)
        except ValueError:
            raise ValueError("expected a number") from None
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected true or false")


def _to_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        from openpyxl.utils.datetime import from_excel

        return from_excel(value).date()  # a spreadsheet date serial
    text = str(value).strip()
    if " " in text or "T" in text:  # "2020-08-28 00:00:00"
        text = re.split(r"[ T]", text, maxsplit=1)[0]
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError("expected a date (yyyy-mm-dd or dd/mm/yyyy)")


def _to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _number_text(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _parse(column: Column, value: Any, csv_escaped: bool) -> Any:
    """Cell → python value of ``column``; raises ValueError with the reason."""
    if isinstance(value, str):
        if csv_escaped and _ESCAPED.match(value):
            value = value[1:]
        if value.strip() == "":
            value = None
    kind = column.kind
    if value is None:
        return [] if kind in ("texts", "ids") else None
    if kind == "str":
        return _to_text(value)
    if kind == "int":
        return _to_int(value)
    if kind == "float":
        return _to_float(value)
    if kind == "bool":
        return _to_bool(value)
    if kind == "date":
        return _to_date(value)
    if kind == "texts":
        if not isinstance(value, str):
            return [_to_text(value)]
        return [item.strip() for item in value.split("|") if item.strip()]
    # ids
    if not isinstance(value, str):
        return [_to_int(value)]
    return [_to_int(item) for item in _ID_SPLIT.split(value.strip()) if item]


Source = bytes | bytearray | memoryview | str | os.PathLike | BinaryIO


def rows_from_table(path_or_bytes: Source, kind: Literal["csv", "xlsx"], *, sep: str | None = None,
                    errors: list[TableProblem] | None = None) -> Iterator[dict]:
    """Read a table written by :func:`csv_chunks` / :func:`xlsx_bytes` (or edited from one).

    Yields one ``{key: python value}`` dict per non-empty row, with the keys of the header's
    known, editable columns (read-only and unknown columns are ignored; columns absent from the
    file are absent from the dicts): int, float, bool, datetime.date, str or None; lists of str
    or of int for list columns ([] when empty).

    A cell that cannot be read raises :class:`TableError` (with the row number and column key),
    unless an ``errors`` list is given: then the problem is appended to it, the value is None (or
    []), and reading goes on, so a caller can report every problem at once.

    CSV: UTF-8 with or without BOM (else Windows-1252), separator detected from the header line
    ("," ";" or tab) unless ``sep`` is given. XLSX: the sheet "organisations", else the first one.
    """
    if kind == "csv":
        raw_rows = _csv_rows(path_or_bytes, sep)
        csv_escaped = True
    elif kind == "xlsx":
        raw_rows = _xlsx_rows(path_or_bytes)
        csv_escaped = False
    else:
        raise ValueError("kind must be 'csv' or 'xlsx'")
    try:
        yield from _records(raw_rows, csv_escaped, errors)
    finally:
        raw_rows.close()


def _records(raw_rows: Iterator[tuple[int, list]], csv_escaped: bool,
             errors: list[TableProblem] | None) -> Iterator[dict]:
    columns: list[tuple[int, Column]] | None = None
    for number, cells in raw_rows:
        if all(c is None or (isinstance(c, str) and c.strip() == "") for c in cells):
            continue
        if columns is None:
            columns = _header(number, cells)
            continue
        record: dict = {}
        for index, column in columns:
            value = cells[index] if index < len(cells) else None
            try:
                record[column.key] = _parse(column, value, csv_escaped)
            except ValueError as exc:
                problem = TableProblem(number, column.key, value, str(exc))
                if errors is None:
                    raise TableError(problem) from None
                errors.append(problem)
                record[column.key] = [] if column.kind in ("texts", "ids") else None
        yield record
    if columns is None:
        raise TableError("the table is empty: no header row")


def _header(number: int, cells: list) -> list[tuple[int, Column]]:
    columns: list[tuple[int, Column]] = []
    seen: set[str] = set()
    for index, cell in enumerate(cells):
        key = parse_header(cell)
        column = COLUMNS_BY_KEY.get(key)
        if column is None:
            continue
        if key in seen:
            raise TableError(TableProblem(number, key, cell, "column appears twice"))
        seen.add(key)
        if not column.read_only:
            columns.append((index, column))
    if not seen:
        raise TableError(TableProblem(number, "-", None, "no known column in the header row"))
    return columns


def _binary(source: Source) -> tuple[BinaryIO, bool]:
    """A binary stream over the source, and whether we opened it (and must close it)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source)), True
    if isinstance(source, (str, os.PathLike)):
        return open(Path(source), "rb"), True
    return source, False


def _csv_rows(source: Source, sep: str | None) -> Iterator[tuple[int, list]]:
    stream, owned = _binary(source)
    try:
        head = stream.read(1 << 20)
        stream.seek(0)
        if head.startswith(codecs.BOM_UTF8):
            encoding = "utf-8-sig"
        else:
            try:
                codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
                encoding = "utf-8"
            except UnicodeDecodeError:
                encoding = "cp1252"
        text = io.TextIOWrapper(stream, encoding=encoding, newline="")
        try:
            if sep is None:
                first = text.readline()
                text.seek(0)
                counts = {s: first.count(s) for s in (";", ",", "\t")}
                sep = max(counts, key=lambda s: counts[s]) if any(counts.values()) else ","
            reader = csv.reader(text, delimiter=sep, quotechar='"')
            number = 0  # records, not lines: the row number a spreadsheet shows
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    problem = TableProblem(number + 1, "-", None, f"bad CSV (line {reader.line_num}): {exc}")
                    raise TableError(problem) from None
                number += 1
                yield number, [c if c != "" else None for c in cells]
        finally:
            text.detach()
    finally:
        if owned:
            stream.close()


def _xlsx_rows(source: Source) -> Iterator[tuple[int, list]]:
    from openpyxl import load_workbook

    stream, owned = _binary(source)
    try:
        try:
            wb = load_workbook(stream, read_only=True, data_only=True)
        except Exception as exc:  # noqa: BLE001 - zipfile.BadZipFile, KeyError, InvalidFileException …
            raise TableError(f"not a readable XLSX workbook: {exc}") from None
        try:
            ws = wb[SHEET_TITLE] if SHEET_TITLE in wb.sheetnames else wb.worksheets[0]
            for number, cells in enumerate(ws.iter_rows(values_only=True), 1):
                yield number, [_xlsx_unescape(c) if isinstance(c, str) else c for c in cells]
        finally:
            wb.close()
    finally:
        if owned:
            stream.close()
