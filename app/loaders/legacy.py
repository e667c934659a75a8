"""Load the legacy social.brussels JSON: lookup lists and organisation records.

Sources (a directory, or single files):

* lookup lists, named as the legacy API captures are (``sectors.json``, ``categories.json``,
  ``accreditations.json``, ``accreditors.json``, ``legal-status.json``, ``languages.json``,
  ``service-types.json``, ``zones.json``; optional ``category-tree.json``);
* organisation records in the ``/rest/organisation/{id}`` shape: ``organisation-*.json`` (one
  record), ``*.ndjson`` (one record a line) or a JSON array. Bruso's extension keys are read too:
  ``agreements``, ``languagesOffer``, ``offerTypes``, ``actionZones`` (lists of objects with an
  ``id``) and ``publicationState``; ``categoriesObject`` (objects) or ``categories`` (ids).

Everything is validated before anything is kept: on any problem the transaction is rolled back
and a LoadError lists every record and field at fault. Records are upserted by legacy id and only
rewritten when something differs, so loading the same files twice changes nothing.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from sqlalchemy import Connection, text

from ..geo.crs import in_brussels_bbox_l72, in_brussels_bbox_wgs84, to_lambert72
from ..identifiers import InvalidEnterpriseNumber, normalise_enterprise_number
from ..search import documents
from ..models import LANG_STATUSES, LINKS, PUBLICATION_STATES, SRID, Organisation
from ..importer.checks import check_row
from ..taxonomy_tree import infer_tree
from . import LoadError, Problem
from .sql import RowFormatter, copy_bytes, copy_rows, temp_table

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://social.brussels/")
BATCH = 5000


def organisation_uuid(legacy_id: int) -> uuid.UUID:
    """Stable UUID of an activity place (the same in every API and every language)."""
    return uuid.uuid5(NAMESPACE, f"organisation:{legacy_id}")


def clean_label(value: str | None) -> str | None:
    """Labels in the captures carry trailing spaces; strip them."""
    return value.strip() if isinstance(value, str) else value


def clean_text(value: str | None) -> str | None:
    """Descriptions are hard-wrapped with newlines mid-sentence; join those lines."""
    if not isinstance(value, str):
        return value
    value = re.sub(r"[ \t]*\n[ \t]*(?=[a-zà-ÿ(])", " ", value.strip())
    return value or None


# ---------------------------------------------------------------- lookup lists

LOOKUP_FILES = {
    "authority": ("accreditors.json", "agreementpowers.json"),
    "sector": ("sectors.json",),
    "category": ("categories.json",),
    "accreditation": ("accreditations.json", "agreements.json"),
    "legal_status": ("legal-status.json", "legalstatus.json"),
    "language": ("languages.json", "languageoffer.json"),
    "offer_type": ("service-types.json", "offertypes.json"),
    "action_zone": ("zones.json", "actionzones.json"),
}


def _lookup_rows(kind: str, items: list[dict]) -> list[dict]:
    if kind == "authority":
        return [{"id": i["id"], "name_nl": clean_label(i["nameNl"]), "name_fr": clean_label(i["nameFr"])} for i in items]
    if kind == "sector":
        return [
            {"id": i["id"], "title_nl": clean_label(i["titleNl"]), "title_fr": clean_label(i["titleFr"]),
             "description_nl": clean_text(i.get("descriptionNl")), "description_fr": clean_text(i.get("descriptionFr")),
             "position": i.get("order") or 0}
            for i in items
        ]
    if kind == "category":
        return [
            {"id": i["id"], "title_nl": clean_label(i["titleNl"]), "title_fr": clean_label(i["titleFr"]),
             "description_nl": clean_text(i.get("descriptionNl")), "description_fr": clean_text(i.get("descriptionFr")),
             "keywords_nl": [k.strip() for k in i.get("keywordsNl") or []],
             "keywords_fr": [k.strip() for k in i.get("keywordsFr") or []],
             "urls_nl": i.get("urlsNl") or [], "urls_fr": i.get("urlsFr") or [],
             "position": i.get("order") or 0, "legacy_organisation_count": i.get("organisationsCount")}
            for i in items
        ]
    if kind == "accreditation":
        return [
            {"id": i["id"], "label_nl": clean_label(i["labelNl"]), "label_fr": clean_label(i["labelFr"]),
             "authority_id": i.get("agreementPowerId") or (i.get("agreementPower") or {}).get("id"),
             "legislation_url": i.get("legislationUrl")}
            for i in items
        ]
    if kind == "language":
        return [{"id": i["id"], "name_nl": clean_label(i["nameNl"]), "name_fr": clean_label(i["nameFr"])} for i in items]
    if kind == "action_zone":
        return [
            {"id": i["id"], "label_nl": clean_label(i["labelNl"]), "label_fr": clean_label(i["labelFr"]),
             "parent_id": (i.get("parents") or [None])[0] if isinstance(i.get("parents"), list) else i.get("parents")}
            for i in items
        ]
    return [{"id": i["id"], "label_nl": clean_label(i["labelNl"]), "label_fr": clean_label(i["labelFr"])} for i in items]


def _upsert(conn: Connection, table: str, rows: list[dict], key: str = "id") -> None:
    if not rows:
        return
    columns = list(rows[0])
    cols = ", ".join(columns)
    values = ", ".join(f":{c}" for c in columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != key)
    changed = " OR ".join(f"{table}.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in columns if c != key)
    conn.execute(
        text(f"INSERT INTO {table} ({cols}) VALUES ({values}) ON CONFLICT ({key}) DO UPDATE SET {updates} WHERE {changed}"),
        rows,
    )


def _parents_first(rows: list[dict]) -> list[dict]:
    """Order zones so that every parent is written before its children."""
    by_id = {r["id"]: r for r in rows}
    ordered: list[dict] = []
    done: set[int] = set()

    def visit(row: dict, path: frozenset) -> None:
        if row["id"] in done or row["id"] in path:
            return
        parent = by_id.get(row["parent_id"])
        if parent is not None:
            visit(parent, path | {row["id"]})
        done.add(row["id"])
        ordered.append(row)

    for row in rows:
        visit(row, frozenset())
    return ordered


def _find(directory: Path, names: Iterable[str]) -> Path | None:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    return None


def load_lookups(conn: Connection, directory: Path) -> dict[str, int]:
    """Load every lookup list present in ``directory``; returns counts per table."""
    counts: dict[str, int] = {}
    parsed: dict[str, list[dict]] = {}
    problems: list[Problem] = []
    for kind, names in LOOKUP_FILES.items():
        path = _find(directory, names)
        if path is None:
            continue
        try:
            items = orjson.loads(path.read_bytes())
            parsed[kind] = _lookup_rows(kind, items)
        except orjson.JSONDecodeError as exc:
            problems.append(Problem(path.name, "-", "-", None, f"invalid JSON: {exc}"))
        except (KeyError, TypeError) as exc:
            problems.append(Problem(path.name, "-", str(exc), None, "missing or malformed field"))
    if problems:
        raise LoadError(problems)

    for kind in ("authority", "sector", "category", "legal_status", "language", "offer_type"):
        if kind in parsed:
            _upsert(conn, kind, parsed[kind])
    if "accreditation" in parsed:
        known = {r[0] for r in conn.execute(text("SELECT id FROM authority"))}
        for row in parsed["accreditation"]:
            if row["authority_id"] is not None and row["authority_id"] not in known:
                problems.append(Problem("accreditations.json", str(row["id"]), "agreementPowerId", row["authority_id"], "unknown authority"))
        if problems:
            raise LoadError(problems)
        _upsert(conn, "accreditation", parsed["accreditation"])
    if "action_zone" in parsed:
        _upsert(conn, "action_zone", _parents_first(parsed["action_zone"]))
        enrich_action_zones(conn)
    if "sector" in parsed and "category" in parsed:
        load_category_tree(conn, directory)
    if "category" in parsed:
        conn.execute(text("REFRESH MATERIALIZED VIEW suggest_entry"))
    if parsed:
        documents.drop_all(conn)  # labels may have changed: rebuilt by the next load or refresh
    for kind in parsed:
        counts[kind] = conn.execute(text(f"SELECT count(*) FROM {kind}")).scalar_one()
    return counts


def load_category_tree(conn: Connection, directory: Path) -> None:
    """Use ``category-tree.json`` when present, else infer the tree (see app.taxonomy_tree)."""
    path = directory / "category-tree.json"
    if path.is_file():
        rows = [
            {"sector_id": r["sectorId"], "category_id": r["categoryId"], "parent_category_id": r.get("parentCategoryId"),
             "position": r.get("order", 0), "inferred": False}
            for r in orjson.loads(path.read_bytes())
        ]
    else:
        sectors = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM sector"))]
        categories = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM category"))]
        rows = infer_tree(sectors, categories)
    temp_table(conn, "_tree", "(LIKE category_tree)")
    columns = ["sector_id", "category_id", "parent_category_id", "position", "inferred"]
    copy_rows(conn, "_tree", columns, ([r[c] for c in columns] for r in rows))
    conn.execute(
        text(
            "DELETE FROM category_tree t WHERE NOT EXISTS "
            "(SELECT 1 FROM _tree n WHERE n.sector_id = t.sector_id AND n.category_id = t.category_id)"
        )
    )
    conn.execute(
        text(
            "INSERT INTO category_tree SELECT * FROM _tree ON CONFLICT (sector_id, category_id) DO UPDATE SET "
            "parent_category_id = EXCLUDED.parent_category_id, position = EXCLUDED.position, inferred = EXCLUDED.inferred "
            "WHERE (category_tree.parent_category_id, category_tree.position, category_tree.inferred) IS DISTINCT FROM "
            "(EXCLUDED.parent_category_id, EXCLUDED.position, EXCLUDED.inferred)"
        )
    )


def enrich_action_zones(conn: Connection) -> None:
    """Classify action zones and attach geometry from the reference layers when one matches.

    region: the union of the communes; commune: a commune of the same (accent-folded) name;
    commune-part ("Bruxelles - Haren"): parent commune, no polygon; quartier: the monitoring
    quartier whose name is most similar (trigram similarity ≥ 0.5), with its polygon.
    """
    if not conn.execute(text("SELECT EXISTS (SELECT 1 FROM commune)")).scalar():
        return
    conn.execute(
        text(
            """
            WITH c AS (SELECT nis_code, bruso_normalise(name_fr) AS n, geom FROM commune),
            classified AS (
              SELECT z.id,
                CASE WHEN z.quartier_code IS NOT NULL THEN 'quartier'
                     WHEN bruso_normalise(z.label_fr) IN ('region bruxelloise', 'region de bruxelles-capitale') THEN 'region'
                     WHEN EXISTS (SELECT 1 FROM c WHERE c.n = bruso_normalise(z.label_fr)) THEN 'commune'
                     WHEN EXISTS (SELECT 1 FROM c WHERE bruso_normalise(z.label_fr) LIKE c.n || ' - %') THEN 'commune-part'
                     ELSE 'area' END AS kind
              FROM action_zone z)
            UPDATE action_zone z SET kind = k.kind FROM classified k WHERE k.id = z.id AND z.kind IS DISTINCT FROM k.kind
            """
        )
    )
    conn.execute(
        text(
            """
            UPDATE action_zone z SET commune_nis = c.nis_code, geom = c.geom
            FROM commune c WHERE z.kind = 'commune' AND bruso_normalise(c.name_fr) = bruso_normalise(z.label_fr)
              AND (z.commune_nis IS DISTINCT FROM c.nis_code OR z.geom IS NULL);
            UPDATE action_zone z SET geom = (SELECT ST_Multi(ST_Union(geom)) FROM commune)
            WHERE z.kind = 'region' AND z.geom IS NULL;
            UPDATE action_zone z SET commune_nis = c.nis_code,
                   parent_id = coalesce(z.parent_id, (SELECT p.id FROM action_zone p WHERE p.kind = 'commune' AND p.commune_nis = c.nis_code LIMIT 1))
            FROM commune c WHERE z.kind = 'commune-part' AND bruso_normalise(z.label_fr) LIKE bruso_normalise(c.name_fr) || ' - %';
            UPDATE action_zone z SET kind = 'quartier', quartier_code = m.code, geom = m.geom,
                   commune_nis = m.commune_nis,
                   parent_id = coalesce(z.parent_id, (SELECT p.id FROM action_zone p WHERE p.kind = 'commune' AND p.commune_nis = m.commune_nis LIMIT 1))
            FROM (
              SELECT DISTINCT ON (z2.id) z2.id AS zone_id, q.code, q.geom,
                     (SELECT c.nis_code FROM commune c WHERE ST_Contains(c.geom, ST_PointOnSurface(q.geom)) LIMIT 1) AS commune_nis
              FROM action_zone z2 JOIN quartier q
                ON similarity(bruso_normalise(q.name_fr), bruso_normalise(z2.label_fr)) >= 0.5
              WHERE z2.kind IN ('area', 'quartier')
              ORDER BY z2.id, similarity(bruso_normalise(q.name_fr), bruso_normalise(z2.label_fr)) DESC, q.code
            ) m
            WHERE z.id = m.zone_id;
            """
        )
    )


# ---------------------------------------------------------------- organisations

# Columns written from a legacy record, in table order (see Organisation).
# what a record says; search_text and category_ids are derived from it and its links (SEARCH_TEXT_SQL)
DERIVED = ("search_text", "category_ids")
ORG_COLUMNS = [c.name for c in Organisation.__table__.columns
               if c.name not in (*DERIVED, "created_at", "updated_at") and c.computed is None]


def _copy_type(column) -> str:
    """The PostgreSQL type COPY dumps a column's Python values as (the point goes as EWKT text)."""
    if column.name == "geom":
        return "text"
    kind = column.type.__class__.__name__
    if kind == "ARRAY":
        return "text[]"
    return {"Integer": "int4", "Uuid": "uuid", "Text": "text", "Boolean": "bool", "Date": "date", "Float": "float8"}[kind]


# psycopg dumps each column as told instead of guessing every value's type (twice as fast).
ORG_TYPES = [_copy_type(Organisation.__table__.c[c]) for c in ORG_COLUMNS]
LINK_TYPES = ["text", "int4", "int4", "int4"]

# legacy key → column, for plain values and lists that map one to one
_PLAIN = {
    "nameOfficialFr": "name_official_fr", "nameOfficialNl": "name_official_nl",
    "descriptionFr": "description_fr", "descriptionNl": "description_nl",
    "activitiesFr": "activities_fr", "activitiesNl": "activities_nl",
    "publicFr": "public_fr", "publicNl": "public_nl",
    "permanencyFr": "permanency_fr", "permanencyNl": "permanency_nl",
    "remarkFr": "remark_fr", "remarkNl": "remark_nl",
}
_LISTS = {
    "nameAlternativeFr": "name_alternative_fr", "nameAlternativeNl": "name_alternative_nl",
    "nameFormerFr": "name_former_fr", "nameFormerNl": "name_former_nl",
    "nameServiceFr": "name_service_fr", "nameServiceNl": "name_service_nl",
    "accessFr": "access_fr", "accessNl": "access_nl",
    "publicationFr": "publication_fr", "publicationNl": "publication_nl",
    "otherAgreementFr": "other_accreditation_fr", "otherAgreementNl": "other_accreditation_nl",
    "subventionFr": "subsidy_fr", "subventionNl": "subsidy_nl",
    "telFr": "phone_fr", "telNl": "phone_nl", "faxFr": "fax_fr", "faxNl": "fax_nl",
    "emailFr": "email_fr", "emailNl": "email_nl",
    "websiteOfficialFr": "website_official_fr", "websiteOfficialNl": "website_official_nl",
    "websiteUnofficialFr": "website_unofficial_fr", "websiteUnofficialNl": "website_unofficial_nl",
    "websiteInfoFr": "website_info_fr", "websiteInfoNl": "website_info_nl",
}
_ADDRESS = {
    "streetFr": "street_fr", "streetNl": "street_nl", "number": "number", "numberBuilding": "number_building",
    "postalBox": "postal_box", "municipalityFr": "commune_fr", "municipalityNl": "commune_nl",
    "districtFr": "quartier_fr", "districtNl": "quartier_nl", "districtCode": "quartier_code",
    "statisticsCode": "statistical_sector_code", "statisticsNameFr": "statistical_sector_fr",
    "statisticsNameNl": "statistical_sector_nl", "remarkFr": "address_remark_fr", "remarkNl": "address_remark_nl",
}
# link kind → the record keys that may carry it (objects with an id, or bare ids)
_LINK_KEYS = {
    "category": ("categoriesObject", "categories"),
    "accreditation": ("agreements",),
    "language": ("languagesOffer",),
    "offer_type": ("offerTypes",),
    "action_zone": ("actionZones",),
}


def parse_legacy_date(value: str | None) -> dt.date | None:
    """``'28/08/20'`` (the legacy dd/mm/yy) or ``dd/mm/yyyy`` or ISO ``yyyy-mm-dd``."""
    if value in (None, ""):
        return None
    for fmt in ("%d/%m/%y", "%d/%m/%Y", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(value, fmt).date()
        except (TypeError, ValueError):
            continue
    raise ValueError(f"not a date (dd/mm/yy expected): {value!r}")


@dataclass
class Known:
    """Ids that exist, for validating references (filled from the database)."""

    ids: dict[str, set[int]] = field(default_factory=dict)
    postcodes: set[int] = field(default_factory=set)

    @classmethod
    def from_db(cls, conn: Connection) -> Known:
        ids = {kind: {r[0] for r in conn.execute(text(f"SELECT id FROM {kind}"))} for kind in [*LINKS, "legal_status"]}
        postcodes = {r[0] for r in conn.execute(text("SELECT postcode FROM postcode"))}
        return cls(ids, postcodes)


def _strings(value, key: str, record: str, problems: list[Problem], source: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(Problem(source, record, key, value, "expected a list of strings"))
        return []
    return [v.strip() for v in value if v.strip()]


# a fresh row starts as a copy of this (the lists that check_row and the flags replace are set anew)
_ROW_TEMPLATE = {c: None for c in ORG_COLUMNS} | {"geocode_status": "source", "quality_score": None}
_PLAIN_ITEMS = tuple(_PLAIN.items())
_LISTS_ITEMS = tuple(_LISTS.items())
_ADDRESS_ITEMS = tuple(_ADDRESS.items())
_LINK_ITEMS = tuple(_LINK_KEYS.items())
_NO_IDS: frozenset[int] = frozenset()
_DATES: dict[str, dt.date | None] = {}  # parse_legacy_date answers per text (a directory has few distinct dates)


def _date(value) -> dt.date | None:
    if value.__class__ is not str:
        return parse_legacy_date(value)
    found = _DATES.get(value)
    if found is None:
        found = parse_legacy_date(value)  # raises for a bad date, which is never kept
        if len(_DATES) >= 50_000:
            _DATES.clear()
        _DATES[value] = found
    return found


def record_to_row(rec: dict, known: Known, source: str) -> tuple[dict, dict[str, list[int]], list[Problem]]:
    """Validate one legacy record; returns (organisation row, links, problems)."""
    problems: list[Problem] = []
    rid = rec.get("id")
    record = str(rid)
    if not isinstance(rid, int) or isinstance(rid, bool) or rid <= 0:
        return {}, {}, [Problem(source, record, "id", rid, "must be a positive integer")]

    def bad(fieldname: str, value, reason: str) -> None:
        problems.append(Problem(source, record, fieldname, value, reason))

    get = rec.get
    row: dict = _ROW_TEMPLATE.copy()
    row["quality_flags"] = []
    row["phones_e164"] = []
    row["id"] = rid
    row["uuid"] = organisation_uuid(rid)
    for key, col in _PLAIN_ITEMS:
        value = get(key)
        if value is None:
            continue  # the template's None
        if isinstance(value, str):
            row[col] = value.strip() or None
        else:
            bad(key, value, "expected a string")
    for key, col in _LISTS_ITEMS:
        value = get(key)
        if value.__class__ is list:
            for v in value:
                if v.__class__ is not str:
                    break
            else:  # the usual case: a list of str
                row[col] = [s for v in value if (s := v.strip())]
                continue
        row[col] = _strings(value, key, record, problems, source)
    if not (row["name_official_fr"] or row["name_official_nl"]):
        bad("nameOfficialFr/nameOfficialNl", None, "an organisation needs an official name in at least one language")

    state = get("publicationState", "published")
    if state not in PUBLICATION_STATES:
        bad("publicationState", state, f"must be one of {', '.join(PUBLICATION_STATES)}")
    row["publication_state"] = state

    lang_status = get("langStatus")
    if lang_status is not None and lang_status not in LANG_STATUSES:
        bad("langStatus", lang_status, "must be FR, NL or FR-NL")
    row["lang_status"] = lang_status
    interpreting = get("isInterpreting")
    if interpreting is not None and not isinstance(interpreting, bool):
        bad("isInterpreting", interpreting, "expected true or false")
    row["is_interpreting"] = bool(interpreting)
    legacy_type = get("type")
    row["legacy_type"] = None if legacy_type is None else str(legacy_type)
    for key, col in (("lastUpdate", "last_update"), ("startDate", "start_date")):
        value = get(key)
        if value in (None, ""):
            continue  # the template's None
        try:
            row[col] = _date(value)
        except ValueError as exc:
            bad(key, value, str(exc))

    numbers = []
    for value in get("pmRp") or []:
        try:
            numbers.append(normalise_enterprise_number(value))
        except InvalidEnterpriseNumber as exc:
            bad("pmRp", value, str(exc))
    row["enterprise_numbers"] = numbers

    legal = get("legalStatus")
    if legal is not None:
        legal_id = legal.get("id") if isinstance(legal, dict) else legal
        if legal_id not in known.ids.get("legal_status", _NO_IDS):
            bad("legalStatus.id", legal_id, "unknown legal status")
        else:
            row["legal_status_id"] = legal_id

    _address(get("address") or {}, row, known, bad)

    links: dict[str, list[int]] = {}
    known_ids = known.ids
    for kind, keys in _LINK_ITEMS:
        ids: list[int] = []
        valid = known_ids.get(kind, _NO_IDS)
        for key in keys:
            for item in get(key) or []:
                item_id = item.get("id") if isinstance(item, dict) else item
                if not isinstance(item_id, int) or item_id not in valid:
                    bad(f"{key}[].id", item_id, f"unknown {kind.replace('_', ' ')} id")
                elif item_id not in ids:
                    ids.append(item_id)
        links[kind] = ids
    hard, flags = check_row(row, source)
    problems.extend(hard)
    row["quality_flags"] = flags
    return row, links, problems


def _address(addr: dict, row: dict, known: Known, bad) -> None:
    if not isinstance(addr, dict):
        bad("address", addr, "expected an object")
        return
    get = addr.get
    for key, col in _ADDRESS_ITEMS:
        value = get(key)
        if value is not None:
            row[col] = (value if value.__class__ is str else str(value)).strip() or None
    address_id = get("id")
    row["address_id"] = address_id if isinstance(address_id, int) else None
    zip_code = get("zipCode")
    if zip_code is not None:
        try:
            zip_code = int(zip_code)
        except (TypeError, ValueError):
            bad("address.zipCode", zip_code, "expected a 4-digit postcode")
            zip_code = None
        if zip_code is not None and known.postcodes and zip_code not in known.postcodes:
            bad("address.zipCode", zip_code, "not a Brussels-Capital Region postcode")
    row["postcode"] = zip_code
    x, y, lon, lat = get("x"), get("y"), get("lon"), get("lat")
    for key, value in (("x", x), ("y", y), ("lon", lon), ("lat", lat)):
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            bad(f"address.{key}", value, "expected a number")
            return
    row["x_31370"], row["y_31370"], row["lon"], row["lat"] = x, y, lon, lat
    if x is not None and y is not None:
        if not in_brussels_bbox_l72(x, y):
            bad("address.x/y", [x, y], "Lambert 72 coordinates outside the Brussels-Capital Region")
            return
        row["geom"] = f"SRID={SRID};POINT({x} {y})"
    elif lon is not None and lat is not None:
        if not in_brussels_bbox_wgs84(lon, lat):
            bad("address.lon/lat", [lon, lat], "WGS84 coordinates outside the Brussels-Capital Region")
            return
        px, py = to_lambert72(lon, lat)
        row["geom"] = f"SRID={SRID};POINT({px} {py})"


def iter_records(paths: Iterable[Path]) -> Iterator[tuple[str, dict | Problem]]:
    """Yield (source name, record) from organisation files; a Problem for unreadable input."""
    for path in paths:
        if path.suffix == ".ndjson":
            with path.open("rb") as fh:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        yield path.name, orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        yield path.name, Problem(path.name, f"line {n}", "-", None, f"invalid JSON: {exc}")
            continue
        try:
            data = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            yield path.name, Problem(path.name, "-", "-", None, f"invalid JSON: {exc}")
            continue
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict):
                yield path.name, item
            else:
                yield path.name, Problem(path.name, "-", "-", item, "expected an organisation object")


def organisation_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    lookups = {n for names in LOOKUP_FILES.values() for n in names} | {"category-tree.json"}
    files = sorted(p for p in source.glob("*.json") if p.name not in lookups)
    return files + sorted(source.glob("*.ndjson"))


@dataclass
class OrganisationReport:
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    rejected: int = 0
    pending: int = 0
    geocoded: int = 0


# (location, the record as read or staged, its problems) → kept aside by the caller (quarantine)
Reject = Callable[[str, dict | None, list[Problem]], None]
# mutates a batch of validated rows before they are staged (the importer's geocoder)
Prepare = Callable[[list[dict]], None]


def load_organisations(
    conn: Connection,
    records: Iterable[tuple[str, dict | Problem]],
    *,
    on_reject: Reject | None = None,
    prepare: Prepare | None = None,
    delete_missing: bool = False,
    progress: Callable[[int], None] | None = None,
) -> OrganisationReport:
    """Validate and upsert organisation records.

    Strict (``on_reject=None``, the loaders): any problem raises LoadError and nothing is kept.
    Lenient (the importer): a record with problems is handed to ``on_reject`` with every reason
    and left out; the others load. ``prepare`` sees each batch of valid rows before staging
    (geocoding). ``delete_missing`` treats the source as the whole directory: stored records it
    no longer contains are deleted (tombstoned), except those it rejected.

    A strict load into an empty directory (the first load of ``bruso load demo``/``legacy``) takes
    ``_load_first``: the same checks, enrichment and rows, written batch by batch as plain inserts.
    """
    known = Known.from_db(conn)
    _tune(conn)
    if on_reject is None and prepare is None and not delete_missing and _first_load(conn):
        return _load_first(conn, records, known, progress)
    temp_table(conn, "_org", "(LIKE organisation INCLUDING DEFAULTS)")
    temp_table(conn, "_links", "(kind text, organisation_id int, target_id int, position int)")
    _reset_hits(conn)
    problems: list[Problem] = []
    report = OrganisationReport()
    seen: set[int] = set()
    rejected_ids: set[int] = set()
    batch: list[dict] = []
    link_rows: list[tuple] = []

    def reject(where: str, rec: dict | None, found: list[Problem]) -> None:
        report.rejected += 1
        if isinstance(rec, dict) and isinstance(rec.get("id"), int):
            rejected_ids.add(rec["id"])
        if on_reject is None:
            problems.extend(found)
        else:
            on_reject(where, rec, found)

    def flush() -> None:
        _stage(conn, batch, prepare, report, progress)
        copy_rows(conn, "_links", ["kind", "organisation_id", "target_id", "position"], link_rows, LINK_TYPES)
        batch.clear()
        link_rows.clear()

    for source, rec in records:
        report.read += 1
        if isinstance(rec, Problem):
            reject(source, None, [rec])
            continue
        row, links, found = record_to_row(rec, known, source)
        if not found and row["id"] in seen:
            found = [Problem(source, str(row["id"]), "id", row["id"], "duplicate id in this load")]
        if found:
            reject(source, rec, found)
            continue
        seen.add(row["id"])
        if not problems:  # strict: once anything failed, only keep validating
            batch.append(row)
            link_rows.extend((kind, row["id"], tid, pos) for kind, ids in links.items() for pos, tid in enumerate(ids))
            if len(batch) >= BATCH:
                flush()
    if not problems:
        flush()
        _spatial_hits(conn)
        for where, rec, found in _outside_region(conn):
            reject(where, rec, found)
    if problems:
        raise LoadError(problems)
    _enrich_addresses(conn)
    _apply(conn, report)
    if delete_missing:
        report.deleted = delete_organisations(
            conn, "SELECT id FROM organisation WHERE id NOT IN (SELECT id FROM _org) AND NOT (id = ANY(:keep))",
            {"keep": sorted(rejected_ids)}, reason="absent from a complete import",
        )
    return report


def _tune(conn: Connection) -> None:
    """Settings of this transaction only: lz4 for the values TOAST compresses (the stored documents,
    long records; several times faster than pglz to write and to read, the values are the same),
    and a larger GIN pending list, so that the trigram index of search_text is merged in fewer,
    larger steps."""
    if conn.execute(text("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")).scalar():
        conn.execute(text("SET LOCAL default_toast_compression = 'lz4'"))  # (a server built without lz4 keeps pglz)
    conn.execute(text("SET LOCAL gin_pending_list_limit = '32MB'"))


def _first_load(conn: Connection) -> bool:
    """True when the directory is empty. The change-feed lock (taken by every writer to
    organisation, see migration 0004) is taken first, so no other writer is half-way."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CHANGE_FEED_LOCK})
    return not conn.execute(text("SELECT EXISTS (SELECT 1 FROM organisation)")).scalar()


CHANGE_FEED_LOCK = 4_205_171  # migrations 0004/0007: the advisory lock all writers to organisation share
FIRST_BATCH = 10_000  # records per batch of a first load (memory: about 60 MB of rows and documents)


def _load_first(conn: Connection, records: Iterable[tuple[str, dict | Problem]], known: Known,
                progress: Callable[[int], None] | None) -> OrganisationReport:
    """A strict load into an empty directory: every record is validated as by the general path,
    and each batch is staged, checked against the region, enriched (the same ``_ENRICHED`` select),
    then written with plain inserts: the organisations (search text included, so each row is
    written once), their links, their change events (the trigger) and their documents. Nothing to
    compare with, nothing to update. Any problem raises LoadError at the end (all problems of the
    source; points outside the region only when nothing else failed, as the general path does),
    and the transaction's rollback undoes the batches already written.

    The statements run on a worker thread (``_Pipeline``, the one connection, in order) while this
    thread validates the next batch and builds the documents of the previous one: Python and
    PostgreSQL work at the same time."""
    temp_table(conn, "_org", "(LIKE organisation INCLUDING DEFAULTS)")
    temp_table(conn, "_links", "(kind text, organisation_id int, target_id int, position int)")
    _reset_hits(conn)
    has_communes = conn.execute(text("SELECT EXISTS (SELECT 1 FROM commune)")).scalar()
    report = OrganisationReport()
    problems: list[Problem] = []
    outside: list[Problem] = []
    seen: set[int] = set()
    batch: list[dict] = []
    link_rows: list[tuple] = []
    writer = documents.BulkWriter(conn)
    org_format, link_format = RowFormatter(conn, ORG_TYPES), RowFormatter(conn, LINK_TYPES)
    insert = [f"INSERT INTO organisation ({', '.join(ORG_COLUMNS + list(DERIVED))}) "
              f"SELECT {', '.join(ORG_COLUMNS + list(DERIVED))} FROM ({_enriched(_STAGED_SEARCH_TEXT)}) e"]
    insert += [f"INSERT INTO {table.name} (organisation_id, {kind}_id, position) "
               f"SELECT organisation_id, target_id, position FROM _links WHERE kind = '{kind}'" for kind, table in LINKS.items()]
    insert.append("DELETE FROM organisation_tombstone WHERE id IN (SELECT id FROM _org)")  # back again
    pipe = _Pipeline(conn.connection.driver_connection)
    fetched = None  # future: the records of the last inserted batch, for its documents

    def stage(driver, org: bytearray, links: bytearray) -> list[Problem]:
        driver.execute("TRUNCATE _org, _links")
        copy_bytes(driver, "_org", ORG_COLUMNS, org)
        copy_bytes(driver, "_links", ["kind", "organisation_id", "target_id", "position"], links)
        driver.execute(HITS_PT_SQL)
        if driver.execute("SELECT EXISTS (SELECT 1 FROM _pt)").fetchone()[0]:
            driver.execute("CREATE INDEX ON _pt USING gist (geom)")
            driver.execute("ANALYZE _pt")
            driver.execute(HITS_SQL)
        driver.execute("DROP TABLE _pt")
        if not has_communes:
            return []
        rows = driver.execute(OUTSIDE_SQL).fetchall()
        if rows:
            driver.execute("DELETE FROM _links WHERE organisation_id = ANY(%s)", ([r[0] for r in rows],))
        return [p for r in rows for p in _outside_problems(*r)[2]]

    def write(driver) -> list:
        for sql in insert:
            driver.execute(sql)
        return writer.fetch(driver, "SELECT id FROM _org")

    def store(lines: list[bytes]) -> None:
        pipe.submit(lambda driver: documents.copy_documents(driver, lines))

    def flush() -> None:
        nonlocal fetched
        if not batch:
            return
        org = org_format.rows([row[c] for c in ORG_COLUMNS] for row in batch)
        links = link_format.rows(link_rows)
        count = len(batch)
        batch.clear()
        link_rows.clear()
        found = pipe.submit(lambda driver: stage(driver, org, links)).result()  # waits for the previous batch too
        if progress is not None:
            progress(count)
        outside.extend(found)
        previous, fetched = fetched, None
        if not outside:
            fetched = pipe.submit(write)
            report.created += count
        if previous is not None:  # its documents, built while this batch is written
            store(writer.lines(previous.result()))

    try:
        for source, rec in records:
            report.read += 1
            if isinstance(rec, Problem):
                report.rejected += 1
                problems.append(rec)
                continue
            row, links, found = record_to_row(rec, known, source)
            if not found and row["id"] in seen:
                found = [Problem(source, str(row["id"]), "id", row["id"], "duplicate id in this load")]
            if found:
                report.rejected += 1
                problems.extend(found)
                continue
            seen.add(row["id"])
            if not problems:  # once anything failed, only keep validating
                batch.append(row)
                link_rows.extend((kind, row["id"], tid, pos) for kind, ids in links.items() for pos, tid in enumerate(ids))
                if len(batch) >= FIRST_BATCH:
                    flush()
        if not problems:
            flush()
            if fetched is not None:
                store(writer.lines(fetched.result()))
                fetched = None
        pipe.drain()
    finally:
        pipe.close()
    if problems or outside:
        raise LoadError(problems or outside)
    if report.created:
        conn.execute(text("REFRESH MATERIALIZED VIEW search_word"))
        conn.execute(text("ANALYZE organisation, organisation_category, organisation_accreditation, "
                          "organisation_language, organisation_offer_type, organisation_action_zone, record_document"))
    report.unchanged = report.read - report.rejected - report.created
    return report


class _Pipeline:
    """Runs callables on the loader's psycopg connection, one after another, on one worker thread;
    the caller does Python work meanwhile (libpq waits release the GIL) and never touches the
    connection until ``drain``/``close``. After a failure the remaining calls are skipped and the
    failure is raised by ``drain`` (or by the future the caller waits on)."""

    def __init__(self, driver):
        from concurrent.futures import ThreadPoolExecutor

        self.driver = driver
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bruso-load")
        self.futures: list = []
        self.failed: BaseException | None = None

    def submit(self, fn):
        def run():
            if self.failed is not None:
                raise RuntimeError("an earlier statement of this load failed") from self.failed
            try:
                return fn(self.driver)
            except BaseException as exc:
                self.failed = exc
                raise
        future = self.executor.submit(run)
        self.futures = [f for f in self.futures if not f.done()] + [future]
        return future

    def drain(self) -> None:
        for future in self.futures:
            future.result()
        self.futures = []
        if self.failed is not None:
            raise self.failed

    def close(self) -> None:
        self.executor.shutdown(wait=True)  # the connection is the caller's again


def _stage(conn: Connection, batch: list[dict], prepare: Prepare | None, report: OrganisationReport,
           progress: Callable[[int], None] | None) -> None:
    """One batch of valid rows: through ``prepare`` (the geocoder), counted, copied into ``_org``."""
    if prepare is not None and batch:
        prepare(batch)
    report.pending += sum(1 for row in batch if row["geocode_status"] == "pending")
    report.geocoded += sum(1 for row in batch if row["geocode_status"] == "ok")
    copy_rows(conn, "_org", ORG_COLUMNS, ([row[c] for c in ORG_COLUMNS] for row in batch), ORG_TYPES)
    if progress is not None:
        progress(len(batch))


def reprocess(conn: Connection, where_sql: str, prepare: Prepare, *, progress: Callable[[int], None] | None = None) -> OrganisationReport:
    """Run stored records (``WHERE where_sql``) through ``prepare`` (the geocoder) and the
    enrichment again, keeping their links; only what changed is written."""
    temp_table(conn, "_org", "(LIKE organisation INCLUDING DEFAULTS)")
    temp_table(conn, "_links", "(kind text, organisation_id int, target_id int, position int)")
    _reset_hits(conn)
    columns = ", ".join("ST_AsEWKT(geom) AS geom" if c == "geom" else c for c in ORG_COLUMNS)
    rows = [dict(r) for r in conn.execute(
        text(f"SELECT {columns} FROM organisation WHERE {where_sql} ORDER BY id FOR UPDATE")).mappings()]
    report = OrganisationReport(read=len(rows))
    for start in range(0, len(rows), BATCH):
        _stage(conn, rows[start:start + BATCH], prepare, report, progress)
    for kind, table in LINKS.items():
        conn.execute(text(
            f"INSERT INTO _links SELECT :kind, organisation_id, {kind}_id, position FROM {table.name} "
            "WHERE organisation_id IN (SELECT id FROM _org)"), {"kind": kind})
    _enrich_addresses(conn)
    _apply(conn, report)
    return report


def delete_organisations(conn: Connection, select_ids: str, params: dict, *, reason: str, merged_into: int | None = None) -> int:
    """Delete the organisations ``select_ids`` returns, leaving tombstones (410 Gone) behind;
    the change-feed trigger records a deleted event for each published one."""
    gone = conn.execute(
        text(
            f"WITH doomed AS (DELETE FROM organisation WHERE id IN ({select_ids}) RETURNING id, uuid) "
            "INSERT INTO organisation_tombstone (id, uuid, merged_into, reason) "
            "SELECT id, uuid, :merged_into, :reason FROM doomed "
            "ON CONFLICT (id) DO UPDATE SET deleted_at = now(), merged_into = EXCLUDED.merged_into, reason = EXCLUDED.reason "
            "RETURNING id"
        ),
        {**params, "merged_into": merged_into, "reason": reason},
    ).scalars().all()
    return len(gone)


# ---------------------------------------------------------------- enrichment (set-based)

def _reset_hits(conn: Connection) -> None:
    """``_hit``: what the reference layers say of each distinct staged point (kept for the whole
    load: a directory repeats its addresses, and a point is looked up once)."""
    temp_table(conn, "_hit", "(k bytea PRIMARY KEY, communes text[], quartiers text[], sectors text[], "
                             "lon float8, lat float8, x float8, y float8, near boolean)")


# One spatial join per layer, the polygons outside and the new points (GiST-indexed) inside, so each
# polygon is read (detoasted, prepared) once per batch rather than once per point. Each point gets
# the codes of every polygon it intersects, in code order: [1] is what "ORDER BY code LIMIT 1" gave.
_HITS_SQL = """
INSERT INTO _hit (k, communes, quartiers, sectors, lon, lat, x, y, near)
SELECT p.k, coalesce(c.codes, '{{}}'), coalesce(q.codes, '{{}}'), coalesce(s.codes, '{{}}'),
       ST_X(ST_Transform(p.geom, 4326)), ST_Y(ST_Transform(p.geom, 4326)), ST_X(p.geom), ST_Y(p.geom),
       c.codes IS NOT NULL OR EXISTS (SELECT 1 FROM commune n WHERE ST_DWithin(n.geom, p.geom, 100))
  FROM _pt p
  LEFT JOIN ({communes}) c ON c.k = p.k
  LEFT JOIN ({quartiers}) q ON q.k = p.k
  LEFT JOIN ({sectors}) s ON s.k = p.k
"""
_LAYER_SQL = ("SELECT p.k, array_agg(l.{code} ORDER BY l.{code}) AS codes "
              "FROM (SELECT {code}, ST_SetSRID(geom, ST_SRID(geom)) AS geom FROM {table} OFFSET 0) l "
              "JOIN _pt p ON ST_Intersects(l.geom, p.geom) GROUP BY p.k")
HITS_SQL = _HITS_SQL.format(communes=_LAYER_SQL.format(code="nis_code", table="commune"),
                            quartiers=_LAYER_SQL.format(code="code", table="quartier"),
                            sectors=_LAYER_SQL.format(code="code", table="statistical_sector"))


HITS_PT_SQL = ("CREATE TEMP TABLE _pt ON COMMIT DROP AS SELECT n.k, n.k::geometry AS geom "
               "FROM (SELECT DISTINCT geom::bytea AS k FROM _org WHERE geom IS NOT NULL) n "
               "WHERE NOT EXISTS (SELECT 1 FROM _hit h WHERE h.k = n.k)")
OUTSIDE_SQL = ("DELETE FROM _org o USING _hit h WHERE o.geom IS NOT NULL AND h.k = o.geom::bytea AND NOT h.near "
               "RETURNING o.id, o.x_31370, o.y_31370, o.lon, o.lat, to_jsonb(o) - 'geom' AS staged")


def _spatial_hits(conn: Connection) -> None:
    """Look up the staged points not yet in ``_hit``."""
    conn.execute(text("DROP TABLE IF EXISTS pg_temp._pt"))
    conn.execute(text(HITS_PT_SQL))
    if conn.execute(text("SELECT EXISTS (SELECT 1 FROM _pt)")).scalar():
        conn.execute(text("CREATE INDEX ON _pt USING gist (geom)"))
        conn.execute(text("ANALYZE _pt"))
        conn.execute(text(HITS_SQL))
    conn.execute(text("DROP TABLE _pt"))


def _outside_problems(oid, x, y, lon, lat, staged) -> tuple[str, dict | None, list[Problem]]:
    return ("-", {**staged, "id": oid}, [Problem("-", str(oid), "address.x/y" if x is not None else "address.lon/lat",
                                                 [x, y] if x is not None else [lon, lat],
                                                 "point outside the Brussels-Capital Region")])


def _outside_region(conn: Connection) -> list[tuple[str, dict | None, list[Problem]]]:
    """Staged points farther than 100 m from every commune (only when the communes are loaded);
    they are taken out of the staging tables and reported. Needs ``_spatial_hits`` first."""
    if not conn.execute(text("SELECT EXISTS (SELECT 1 FROM commune)")).scalar():
        return []
    rows = conn.execute(text(OUTSIDE_SQL)).all()
    if rows:
        conn.execute(text("DELETE FROM _links WHERE organisation_id = ANY(:ids)"), {"ids": [r.id for r in rows]})
    return [_outside_problems(*r) for r in rows]


def _flag_costs() -> str:
    from ..importer.checks import FLAG_COST

    return ", ".join(f"('{flag}', {cost})" for flag, cost in FLAG_COST.items())


# The staged rows as stored: what the point tells and the source left empty (commune NIS code and
# names, quartier, statistical sector, the WGS84/Lambert 72 pair; source values are kept as given),
# then the flags of what disagrees and the quality score (see app.importer.checks.quality). In steps:
#   a  fill codes and coordinates (the commune from the point, else from the postcode);
#   b  a point URBIS just gave decides the statistical sector (a source's code only fills a gap):
#      the first intersecting sector that differs, and its names are looked up again;
#   c  names of the commune, quartier and sector where the source left them empty;
#   d  flags (no point; postcode of another commune; sector unverified or not the point's), merged
#      with the record's own (sorted, distinct), and the score.
_ENRICHED = """
WITH a AS (
  SELECT o.*, h.communes, h.sectors, p.postcode AS p_postcode, p.commune_nis AS p_nis, p.commune_nis_codes AS p_nis_codes,
         coalesce(o.commune_nis, h.communes[1], p.commune_nis) AS a_commune_nis,
         coalesce(o.quartier_code, h.quartiers[1]) AS a_quartier_code,
         coalesce(o.statistical_sector_code, h.sectors[1]) AS a_sector_code,
         coalesce(o.lon, h.lon) AS a_lon, coalesce(o.lat, h.lat) AS a_lat,
         coalesce(o.x_31370, h.x) AS a_x, coalesce(o.y_31370, h.y) AS a_y
    FROM _org o
    LEFT JOIN _hit h ON h.k = o.geom::bytea
    LEFT JOIN postcode p ON p.postcode = o.postcode
), b AS (
  SELECT a.*, CASE WHEN a.geocode_status = 'ok' THEN
           (SELECT u.code FROM unnest(a.sectors) WITH ORDINALITY u(code, n)
             WHERE u.code IS DISTINCT FROM a.a_sector_code ORDER BY u.n LIMIT 1) END AS b_sector
    FROM a
), c AS (
  SELECT b.*,
         CASE WHEN b.b_sector IS NULL THEN b.a_sector_code ELSE b.b_sector END AS c_sector_code,
         CASE WHEN b.b_sector IS NULL THEN b.statistical_sector_nl END AS c_sector_nl,
         CASE WHEN b.b_sector IS NULL THEN b.statistical_sector_fr END AS c_sector_fr
    FROM b
), d AS (
  SELECT c.*,
         coalesce(c.commune_nl, nullif(cn.name_nl, '')) AS d_commune_nl,
         coalesce(c.commune_fr, nullif(cn.name_fr, '')) AS d_commune_fr,
         coalesce(c.quartier_nl, nullif(qn.name_nl, '')) AS d_quartier_nl,
         coalesce(c.quartier_fr, nullif(qn.name_fr, '')) AS d_quartier_fr,
         coalesce(c.c_sector_nl, nullif(sn.name_nl, '')) AS d_sector_nl,
         coalesce(c.c_sector_fr, nullif(sn.name_fr, '')) AS d_sector_fr,
         array_remove(ARRAY[
           CASE WHEN c.geom IS NULL THEN 'no-point' END,
           CASE WHEN c.postcode IS NOT NULL AND c.p_postcode IS NOT NULL AND c.communes[1] IS NOT NULL
                 AND NOT (c.communes[1] = ANY(c.p_nis_codes) OR c.communes[1] = c.p_nis)
                THEN 'postcode-commune-mismatch' END,
           CASE WHEN c.c_sector_code IS NULL THEN NULL
                WHEN NOT EXISTS (SELECT 1 FROM statistical_sector) OR c.geom IS NULL THEN 'statistical-sector-unverified'
                WHEN c.sectors[1] IS DISTINCT FROM c.c_sector_code THEN 'statistical-sector-mismatch' END], NULL) AS d_extra
    FROM c
    LEFT JOIN commune cn ON cn.nis_code = c.a_commune_nis
    LEFT JOIN quartier qn ON qn.code = c.a_quartier_code
    LEFT JOIN statistical_sector sn ON sn.code = c.c_sector_code
), f AS (
  SELECT d.*, ARRAY(SELECT DISTINCT x.flag COLLATE "C" FROM unnest(coalesce(d.quality_flags, '{{}}') || d.d_extra) x(flag)
                    ORDER BY 1) AS f_flags
    FROM d
  OFFSET 0  -- f_flags once per row (it is read twice below)
)
SELECT {columns}{extra} FROM f{joins}
"""
_REPLACED = {
    "commune_nis": "a_commune_nis", "commune_nl": "d_commune_nl", "commune_fr": "d_commune_fr",
    "quartier_code": "a_quartier_code", "quartier_nl": "d_quartier_nl", "quartier_fr": "d_quartier_fr",
    "statistical_sector_code": "c_sector_code", "statistical_sector_nl": "d_sector_nl", "statistical_sector_fr": "d_sector_fr",
    "lon": "a_lon", "lat": "a_lat", "x_31370": "a_x", "y_31370": "a_y", "quality_flags": "f_flags",
    "quality_score": "greatest(0, 100 - (SELECT coalesce(sum(coalesce(fc.cost, 10)), 0) FROM unnest(f_flags) x(flag) "
                     "LEFT JOIN (VALUES {costs}) fc(flag, cost) ON fc.flag = x.flag))::int",
}
_ENRICHED_COLUMNS = ", ".join(f"{_REPLACED[c]} AS {c}" if c in _REPLACED else f"f.{c}" for c in ORG_COLUMNS)
# the derived columns (see SEARCH_TEXT_SQL), from the staged links: the row is written once
_STAGED_SEARCH_TEXT = (""", bruso_normalise(concat_ws(' ',
    f.name_official_nl, f.name_official_fr,
    array_to_string(f.name_alternative_nl, ' '), array_to_string(f.name_alternative_fr, ' '),
    array_to_string(f.name_former_nl, ' '), array_to_string(f.name_former_fr, ' '),
    array_to_string(f.name_service_nl, ' '), array_to_string(f.name_service_fr, ' '),
    f.activities_nl, f.activities_fr, st.categories)) AS search_text,
    coalesce(st.category_ids, '{}') AS category_ids""", """
  LEFT JOIN (SELECT l.organisation_id,
                    string_agg(concat_ws(' ', c.title_nl, c.title_fr, array_to_string(c.keywords_nl, ' '),
                                         array_to_string(c.keywords_fr, ' ')), ' ' ORDER BY l.position) AS categories,
                    array_agg(l.target_id ORDER BY l.target_id) AS category_ids
               FROM _links l JOIN category c ON c.id = l.target_id WHERE l.kind = 'category'
              GROUP BY l.organisation_id) st ON st.organisation_id = f.id""")


def _enriched(extra: tuple[str, str] = ("", "")) -> str:
    return _ENRICHED.format(columns=_ENRICHED_COLUMNS.replace("{costs}", _flag_costs()), extra=extra[0], joins=extra[1])



def _enrich_addresses(conn: Connection) -> None:
    """Fill what the point tells and the source left empty, flag what disagrees and score each
    record (``_ENRICHED``): ``_org`` is rebuilt in one pass."""
    _spatial_hits(conn)
    temp_table(conn, "_org_enriched", f"AS {_enriched()}")
    conn.execute(text("DROP TABLE _org"))
    conn.execute(text("ALTER TABLE _org_enriched RENAME TO _org"))
    conn.execute(text("ANALYZE _org"))


def _apply(conn: Connection, report: OrganisationReport) -> None:
    cols = ", ".join(ORG_COLUMNS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in ORG_COLUMNS if c != "id")
    old = ", ".join(f"organisation.{c}" for c in ORG_COLUMNS if c != "id")
    new = ", ".join(f"EXCLUDED.{c}" for c in ORG_COLUMNS if c != "id")
    written = conn.execute(
        text(
            f"INSERT INTO organisation ({cols}) SELECT {cols} FROM _org "
            f"ON CONFLICT (id) DO UPDATE SET {updates}, updated_at = now() WHERE ({old}) IS DISTINCT FROM ({new}) "
            "RETURNING id, (xmax = 0) AS inserted"
        )
    ).all()
    created = {r.id for r in written if r.inserted}
    changed = {r.id for r in written}
    for kind, table in LINKS.items():
        fk = f"{kind}_id"
        gone = conn.execute(
            text(
                f"DELETE FROM {table.name} l USING _org o WHERE l.organisation_id = o.id AND NOT EXISTS "
                f"(SELECT 1 FROM _links n WHERE n.kind = :kind AND n.organisation_id = l.organisation_id "
                f"AND n.target_id = l.{fk} AND n.position = l.position) RETURNING l.organisation_id"
            ),
            {"kind": kind},
        ).scalars()
        added = conn.execute(
            text(
                f"INSERT INTO {table.name} (organisation_id, {fk}, position) "
                f"SELECT organisation_id, target_id, position FROM _links WHERE kind = :kind "
                f"ON CONFLICT (organisation_id, {fk}) DO UPDATE SET position = EXCLUDED.position "
                f"WHERE {table.name}.position IS DISTINCT FROM EXCLUDED.position RETURNING organisation_id"
            ),
            {"kind": kind},
        ).scalars()
        changed.update(gone)
        changed.update(added)
    link_only = changed - {r.id for r in written}
    if link_only:
        conn.execute(text("UPDATE organisation SET updated_at = now() WHERE id = ANY(:ids)"), {"ids": list(link_only)})
    conn.execute(text("DELETE FROM organisation_tombstone WHERE id IN (SELECT id FROM _org)"))  # back again
    if changed:
        refresh_search_text(conn, list(changed))
        conn.execute(text("REFRESH MATERIALIZED VIEW search_word"))
        conn.execute(text("ANALYZE organisation, organisation_category, organisation_accreditation, "
                          "organisation_language, organisation_offer_type, organisation_action_zone"))
    documents.refresh(conn)  # the changed records, and any a lookup-list load left without
    report.created = len(created)
    report.updated = len(changed - created)
    report.unchanged = report.read - report.rejected - report.created - report.updated


SEARCH_TEXT_SQL = """
UPDATE organisation o SET search_text = bruso_normalise(concat_ws(' ',
    o.name_official_nl, o.name_official_fr,
    array_to_string(o.name_alternative_nl, ' '), array_to_string(o.name_alternative_fr, ' '),
    array_to_string(o.name_former_nl, ' '), array_to_string(o.name_former_fr, ' '),
    array_to_string(o.name_service_nl, ' '), array_to_string(o.name_service_fr, ' '),
    o.activities_nl, o.activities_fr,
    (SELECT string_agg(concat_ws(' ', c.title_nl, c.title_fr, array_to_string(c.keywords_nl, ' '),
                                 array_to_string(c.keywords_fr, ' ')), ' ' ORDER BY oc.position)
       FROM organisation_category oc JOIN category c ON c.id = oc.category_id WHERE oc.organisation_id = o.id))),
  category_ids = ARRAY(SELECT category_id FROM organisation_category WHERE organisation_id = o.id ORDER BY category_id)
WHERE o.id = ANY(:ids)
"""


def refresh_search_text(conn: Connection, ids: list[int]) -> None:
    """Rebuild the derived columns of the given organisations: the folded search text (names,
    activities, categories in the record's order) and the sorted category ids."""
    conn.execute(text(SEARCH_TEXT_SQL), {"ids": ids})


def load_legacy(conn: Connection, source: Path) -> dict:
    """Lookup lists and organisation records from a directory (or one organisation file)."""
    counts: dict = {}
    if source.is_dir():
        counts.update(load_lookups(conn, source))
    report = load_organisations(conn, iter_records(organisation_files(source)))
    counts["organisations"] = report.__dict__
    return counts
