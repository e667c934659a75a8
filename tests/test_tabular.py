"""The flat bilingual table (CSV / XLSX) of organisations, and its way back (rows_from_table);
plus the GeoJSON feature helpers. Rows come from the real search core over the test database."""

from __future__ import annotations

import asyncio
import codecs
import copy
import csv
import datetime as dt
import io
import re
import tracemalloc

import pytest
from openpyxl import load_workbook
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.models import LINKS, Organisation
from app.serialize import geojson, tabular
from app.serialize.tabular import COLUMNS, EDITABLE_KEYS, KEYS

# fetch_records row key of each link-id column
LINK_ROWS = {
    "category_ids": "categories",
    "accreditation_ids": "accreditations",
    "language_ids": "languages",
    "offer_type_ids": "offer_types",
    "action_zone_ids": "action_zones",
}


def fetch_all(engine) -> list[dict]:
    """Every record (all publication states) through app.search.fetch_records, in id order."""
    from app import search

    async def run():
        eng = create_async_engine(engine.url)
        try:
            async with eng.connect() as conn:
                ids = (await conn.execute(text("SELECT id FROM organisation ORDER BY id"))).scalars().all()
                return await search.fetch_records(conn, ids, public=False)
        finally:
            await eng.dispose()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def rows(loaded) -> list[dict]:
    result = fetch_all(loaded)
    assert len(result) >= 300
    return result


@pytest.fixture(scope="module")
def record_13219(rows) -> dict:
    return next(r for r in rows if r["id"] == 13219)


def expected(row: dict, key: str):
    """The stored value of an editable column, read straight from the row (not via tabular)."""
    if key in LINK_ROWS:
        return [item["id"] for item in row[LINK_ROWS[key]]]
    return row[key]


def csv_text(rows, sep=",") -> str:
    data = b"".join(tabular.csv_chunks(rows, sep=sep))
    assert data.startswith(codecs.BOM_UTF8)
    return data.decode("utf-8-sig")


def assert_round_trip(source_rows, back):
    back = list(back)
    assert len(back) == len(source_rows)
    for row, got in zip(source_rows, back):
        assert set(got) == set(EDITABLE_KEYS)
        for key in EDITABLE_KEYS:
            assert got[key] == expected(row, key), (row["id"], key)
            assert type(got[key]) is type(expected(row, key)), (row["id"], key)


# ---------------------------------------------------------------- columns


def test_columns_cover_every_stored_field():
    stored = {c.name for c in Organisation.__table__.columns if c.computed is None} - {"geom", "search_text", "created_at", "updated_at"}
    editable = set(EDITABLE_KEYS)
    assert stored - set(tabular.DERIVED) <= editable  # uuid (from id) and the importer's findings: shown, read-only
    assert all(tabular.COLUMNS_BY_KEY[key].read_only for key in tabular.DERIVED)
    assert {f"{name}_ids" for name in LINKS} <= editable
    assert editable <= stored | {f"{name}_ids" for name in LINKS}
    assert tabular.COLUMNS_BY_KEY["uuid"].read_only
    for key in ("commune_name_nl", "commune_name_fr", "category_titles_nl", "category_titles_fr",
                "legal_status_nl", "legal_status_fr"):
        assert tabular.COLUMNS_BY_KEY[key].read_only
    assert len(set(KEYS)) == len(KEYS)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", k) for k in KEYS)


def test_headers_are_bilingual_and_parse_back():
    col = tabular.COLUMNS_BY_KEY["name_official_nl"]
    assert col.header == "name_official_nl — Officiële naam (NL) / Nom officiel (NL)"
    for c in COLUMNS:
        assert c.header == f"{c.key} — {c.label_nl} / {c.label_fr}"
        assert tabular.parse_header(c.header) == c.key
        assert tabular.parse_header(f"  {c.header}  ") == c.key
    assert tabular.parse_header("\ufeffid — Id (fiche) / Id (fiche)") == "id"
    assert tabular.parse_header("postcode") == "postcode"
    assert tabular.parse_header(None) == ""


# ---------------------------------------------------------------- CSV


@pytest.mark.parametrize("sep", [",", ";"])
def test_csv_bom_header_and_rows(rows, sep):
    content = csv_text(rows, sep)
    parsed = list(csv.reader(io.StringIO(content, newline=""), delimiter=sep))
    assert [tabular.parse_header(h) for h in parsed[0]] == KEYS
    assert parsed[0] == tabular.HEADERS
    assert len(parsed) == len(rows) + 1
    assert all(len(line) == len(KEYS) for line in parsed)
    assert [int(line[0]) for line in parsed[1:]] == [r["id"] for r in rows]
    assert content.count("\r\n") >= len(rows) + 1


def test_csv_without_bom():
    first = next(tabular.csv_chunks([], bom=False))
    assert not first.startswith(codecs.BOM_UTF8)
    assert first.decode("utf-8").startswith("id — ")
    with pytest.raises(ValueError):
        next(tabular.csv_chunks([], sep="|"))


def test_csv_streams(rows):
    consumed = 0

    def source():
        nonlocal consumed
        for row in rows * 3:
            consumed += 1
            yield row

    chunks = tabular.csv_chunks(source())
    header = next(chunks)
    assert header.startswith(codecs.BOM_UTF8) and consumed == 0
    next(chunks)
    assert 0 < consumed < len(rows) * 3  # a small batch, not the whole input
    rest = list(chunks)
    assert consumed == len(rows) * 3 and len(rest) >= 2


def test_record_13219_cells(rows, record_13219):
    cells = dict(zip(KEYS, tabular.row_cells(record_13219)))
    assert cells["id"] == 13219
    assert cells["uuid"] == str(record_13219["uuid"])
    assert cells["name_official_nl"] == "COÖRDINATIE VAN DE SCHAARBEEKSE SOCIALE ACTIE"
    assert cells["name_official_fr"] == "COORDINATION DE L'ACTION SOCIALE DE SCHAERBEEK"
    assert cells["name_alternative_nl"] == "CSSA"
    assert cells["phone_nl"] == cells["phone_fr"] == "02/435.51.38 | 02/435.51.39"
    assert cells["access_fr"] == "Par e-mail | Par téléphone"
    assert cells["enterprise_numbers"] == "0212.347.945"
    assert cells["legal_status_id"] == 932
    assert cells["legal_status_nl"] == "Openbare dienst - OCMW"
    assert cells["legal_status_fr"] == "Service public - CPAS"
    assert cells["lang_status"] == "FR-NL"
    assert cells["is_interpreting"] is False
    assert cells["postcode"] == 1030
    assert cells["commune_nis"] == "21015"
    assert (cells["commune_name_nl"], cells["commune_name_fr"]) == ("Schaarbeek", "Schaerbeek")
    assert (cells["x_31370"], cells["y_31370"]) == (152302.0, 171263.0)
    assert isinstance(cells["x_31370"], float)
    assert cells["last_update"] == dt.date(2020, 8, 28)
    assert cells["start_date"] is None and cells["fax_nl"] is None and cells["category_ids"] is None
    assert cells["publication_state"] == "published"

    line = next(csv.DictReader(io.StringIO(csv_text([record_13219]), newline="")))
    line = {tabular.parse_header(k): v for k, v in line.items()}
    assert line["id"] == "13219"
    assert line["phone_nl"] == "02/435.51.38 | 02/435.51.39"
    assert line["enterprise_numbers"] == "0212.347.945"
    assert line["postcode"] == "1030"
    assert (line["x_31370"], line["y_31370"]) == ("152302", "171263")
    assert line["lon"] == repr(record_13219["lon"])
    assert line["last_update"] == "2020-08-28"
    assert line["is_interpreting"] == "false"
    assert line["start_date"] == ""
    # starts with "-": escaped so that Excel does not read it as a formula
    assert line["remark_fr"].startswith("'- Partenariat")


@pytest.mark.parametrize("sep", [",", ";"])
def test_csv_round_trip(rows, sep):
    data = b"".join(tabular.csv_chunks(rows, sep=sep))
    assert_round_trip(rows, tabular.rows_from_table(data, "csv"))
    assert_round_trip(rows, tabular.rows_from_table(data, "csv", sep=sep))


def test_csv_round_trip_from_path(rows, tmp_path):
    path = tmp_path / "organisations.csv"
    with path.open("wb") as fh:
        for chunk in tabular.csv_chunks(rows, sep=";"):
            fh.write(chunk)
    assert_round_trip(rows, tabular.rows_from_table(path, "csv"))
    assert_round_trip(rows, tabular.rows_from_table(str(path), "csv"))


# ---------------------------------------------------------------- awkward values

AWKWARD = {
    "remark_fr": 'a; b, "c"\nd',
    "remark_nl": '=1+2',
    "description_nl": "-- geen",
    "description_fr": "+32 2 000 00 00",
    "activities_nl": "@home\r\nen ook thuis",
    "activities_fr": "'t Zonnetje",
    "public_nl": "'=A1",
    "public_fr": "  #N/A  ",
    "permanency_nl": "ma, di; wo \"tot\" 16u\n\nvr: gesloten",
    "name_alternative_fr": ['x; y', 'z, "w"\nv', "=SUM(A1)"],
    "phone_nl": ["+32 2 435 51 38", "-"],
    "email_fr": ["a@b.be"],
    "legacy_type": "42",
    "address_remark_nl": "tekst _x0041_ en _x005F_ en _X000d_\r",
    "address_id": 77,
    "number_building": "B",
    "postal_box": "3",
    "commune_nis": "21015",
    "is_interpreting": True,
    "start_date": dt.date(1999, 12, 31),
    "lon": -0.1,
    "lat": 1e-05,
    "x_31370": 152302.125,
    "website_info_nl": ["https://example.org/?a=1&b=2"],
}


@pytest.fixture(scope="module")
def awkward_rows(record_13219, rows) -> list[dict]:
    linked = next(r for r in rows if r["categories"] and r["accreditations"] and r["action_zones"])
    first = copy.deepcopy(record_13219)
    first.update(AWKWARD)
    second = copy.deepcopy(linked)
    second.update({"id": 999_999, "name_official_nl": None, "postcode": None, "x_31370": None, "y_31370": None,
                   "lon": None, "lat": None, "last_update": None, "legal_status": None, "legal_status_id": None,
                   "commune_ref": None, "publication_state": "archived"})
    return [first, second]


@pytest.mark.parametrize("sep", [",", ";"])
def test_awkward_values_survive_csv(awkward_rows, sep):
    data = b"".join(tabular.csv_chunks(awkward_rows, sep=sep))
    parsed = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=sep))
    assert len(parsed) == 3  # newlines stay inside quoted cells
    cells = dict(zip(KEYS, parsed[1]))
    assert cells["remark_nl"] == "'=1+2" and cells["activities_fr"] == "'t Zonnetje"
    assert cells["public_nl"] == "''=A1"
    assert_round_trip(awkward_rows, tabular.rows_from_table(data, "csv"))


def test_awkward_values_without_excel_escape(awkward_rows):
    data = b"".join(tabular.csv_chunks(awkward_rows, excel_safe=False))
    cells = dict(zip(KEYS, list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))[1]))
    assert cells["remark_nl"] == "=1+2"


def test_awkward_values_survive_xlsx(awkward_rows):
    data = tabular.xlsx_bytes(awkward_rows)
    ws = load_workbook(io.BytesIO(data))["organisations"]
    col = {key: i for i, key in enumerate(KEYS)}
    row = next(ws.iter_rows(min_row=2, max_row=2))
    assert row[col["remark_nl"]].value == "=1+2" and row[col["remark_nl"]].data_type == "s"
    assert row[col["public_fr"]].value == "  #N/A  "
    assert row[col["is_interpreting"]].value is True
    assert_round_trip(awkward_rows, tabular.rows_from_table(data, "xlsx"))


# ---------------------------------------------------------------- XLSX


def test_xlsx_sheet_header_and_types(rows, record_13219):
    data = tabular.xlsx_bytes(rows)
    wb = load_workbook(io.BytesIO(data))
    assert wb.sheetnames == ["organisations"]
    ws = wb["organisations"]
    assert ws.max_row == len(rows) + 1 and ws.max_column == len(KEYS)
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == f"A1:{ws.cell(1, len(KEYS)).column_letter}{len(rows) + 1}"
    header = [c.value for c in ws[1]]
    assert header == tabular.HEADERS
    assert all(c.font.b for c in ws[1])
    assert ws.column_dimensions["A"].width == 10
    # exactly one header row: the second row is data already
    assert isinstance(ws.cell(2, 1).value, int)
    assert [ws.cell(r, 1).value for r in range(2, ws.max_row + 1)] == [r["id"] for r in rows]

    col = {key: i + 1 for i, key in enumerate(KEYS)}
    r = 2 + [x["id"] for x in rows].index(13219)

    def cell(key):
        return ws.cell(r, col[key])

    assert cell("id").value == 13219 and type(cell("id").value) is int
    assert cell("postcode").value == 1030 and type(cell("postcode").value) is int
    assert cell("legal_status_id").value == 932 and type(cell("legal_status_id").value) is int
    # a number cell (XLSX has one number type: an integral double reads back as int)
    assert cell("x_31370").value == 152302.0 and cell("x_31370").data_type == "n"
    assert cell("lon").value == record_13219["lon"] and isinstance(cell("lon").value, float)
    assert cell("is_interpreting").value is False and cell("is_interpreting").data_type == "b"
    assert cell("last_update").value == dt.datetime(2020, 8, 28) and cell("last_update").is_date
    assert cell("last_update").number_format == "yyyy-mm-dd"
    assert cell("start_date").value is None
    assert cell("phone_nl").value == "02/435.51.38 | 02/435.51.39"
    assert cell("enterprise_numbers").value == "0212.347.945"
    assert cell("commune_nis").value == "21015" and cell("commune_nis").data_type == "s"
    assert cell("name_official_nl").value == "COÖRDINATIE VAN DE SCHAARBEEKSE SOCIALE ACTIE"
    assert cell("remark_fr").value.startswith("- Partenariat")  # no CSV escape in XLSX


def test_xlsx_round_trip(rows, tmp_path):
    data = tabular.xlsx_bytes(iter(rows))
    assert_round_trip(rows, tabular.rows_from_table(data, "xlsx"))
    path = tmp_path / "organisations.xlsx"
    path.write_bytes(data)
    assert_round_trip(rows, tabular.rows_from_table(path, "xlsx"))


def test_xlsx_3000_rows_bounded_memory(rows):
    n = 3000
    tabular.xlsx_bytes(rows[:2])  # imports and caches out of the measurement
    tracemalloc.start()
    try:
        data = tabular.xlsx_bytes(rows[i % len(rows)] for i in range(n))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # write-only: rows go to a temporary file; the peak is about the size of the result
    assert peak < 3 * len(data) + 8_000_000, (peak, len(data))
    ws = load_workbook(io.BytesIO(data), read_only=True)["organisations"]
    ids = [row[0] for row in ws.iter_rows(min_row=2, values_only=True)]
    assert len(ids) == n and ids[:len(rows)] == [r["id"] for r in rows]


# ---------------------------------------------------------------- reading edited tables


def test_reads_a_spreadsheet_edited_csv():
    """What Excel in a Belgian locale writes back: ';', cp1252, no BOM, local dates and booleans,
    decimal commas, columns reordered, bare keys, unknown and read-only columns."""
    content = (
        "postcode;id;Notes;is_interpreting;last_update — x / y;lon;category_ids;phone_nl;commune_name_nl;name_official_fr\r\n"
        "1030;13219;mine;WAAR;28/08/2020;4,4014;12, 34;02/435.51.38|02/435.51.39 | ;Schaarbeek;Crèche « Les Petits »\r\n"
        ";;;;;;;;;\r\n"
        "1000.0;5;;faux;2020-08-28 00:00:00;4.5;7;;;'- x\r\n"
    ).encode("cp1252")
    got = list(tabular.rows_from_table(content, "csv"))
    assert got == [
        {"postcode": 1030, "id": 13219, "is_interpreting": True, "last_update": dt.date(2020, 8, 28), "lon": 4.4014,
         "category_ids": [12, 34], "phone_nl": ["02/435.51.38", "02/435.51.39"],
         "name_official_fr": "Crèche « Les Petits »"},
        {"postcode": 1000, "id": 5, "is_interpreting": False, "last_update": dt.date(2020, 8, 28), "lon": 4.5,
         "category_ids": [7], "phone_nl": [], "name_official_fr": "- x"},
    ]


def test_reads_typed_xlsx_cells_in_text_columns():
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Blad1"
    ws.append(["id", "commune_nis", "category_ids", "postcode", "start_date", "phone_fr", "lat"])
    ws.append([1.0, 21015, 12, "1030", 36526, 24355138, "50,85"])
    out = io.BytesIO()
    wb.save(out)
    assert list(tabular.rows_from_table(out.getvalue(), "xlsx")) == [
        {"id": 1, "commune_nis": "21015", "category_ids": [12], "postcode": 1030, "start_date": dt.date(2000, 1, 1),
         "phone_fr": ["24355138"], "lat": 50.85}
    ]


def test_unreadable_cells_are_reported():
    content = b"id,postcode,is_interpreting,start_date\n1,abc,maybe,2020-02-30\n2,1000,true,\n"
    with pytest.raises(tabular.TableError) as err:
        list(tabular.rows_from_table(content, "csv"))
    assert err.value.problem.row == 2 and err.value.problem.key == "postcode"
    problems: list = []
    got = list(tabular.rows_from_table(content, "csv", errors=problems))
    assert [(p.row, p.key, p.value) for p in problems] == [
        (2, "postcode", "abc"), (2, "is_interpreting", "maybe"), (2, "start_date", "2020-02-30")]
    assert got[0] == {"id": 1, "postcode": None, "is_interpreting": None, "start_date": None}
    assert got[1] == {"id": 2, "postcode": 1000, "is_interpreting": True, "start_date": None}


def test_bad_tables_are_refused():
    with pytest.raises(tabular.TableError):
        list(tabular.rows_from_table(b"", "csv"))
    with pytest.raises(tabular.TableError):
        list(tabular.rows_from_table(b"foo,bar\n1,2\n", "csv"))
    with pytest.raises(tabular.TableError):
        list(tabular.rows_from_table(b"id,id\n1,2\n", "csv"))
    with pytest.raises(tabular.TableError):
        list(tabular.rows_from_table(b"not a zip", "xlsx"))
    with pytest.raises(ValueError):
        list(tabular.rows_from_table(b"id\n1\n", "ods"))


# ---------------------------------------------------------------- GeoJSON


def test_geojson_feature(record_13219):
    f = geojson.feature(record_13219, {"name": "x"})
    assert f == {
        "type": "Feature",
        "id": 13219,
        "geometry": {"type": "Point", "coordinates": [round(record_13219["lon"], 7), round(record_13219["lat"], 7)]},
        "properties": {"name": "x"},
    }
    assert f["geometry"]["coordinates"] == [4.4014451, 50.8517561]
    assert geojson.feature({"id": 1, "lon": None, "lat": 50.8}, {})["geometry"] is None
    assert geojson.feature({"id": 2}, {})["geometry"] is None


def test_geojson_feature_collection(rows):
    features = (geojson.feature(r, {"id": r["id"]}) for r in rows[:3])
    links = [{"rel": "self", "href": "http://testserver/v1/organisations?f=geojson", "type": "application/geo+json"}]
    fc = geojson.feature_collection(features, number_matched=len(rows), number_returned=3, links=links)
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 3
    assert (fc["numberMatched"], fc["numberReturned"], fc["links"]) == (len(rows), 3, links)
    assert geojson.feature_collection([]) == {"type": "FeatureCollection", "features": []}
