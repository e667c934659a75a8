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
from .sql import copy_rows, temp_table

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
ORG_COLUMNS = [c.name for c in Organisation.__table__.columns if c.name not in ("search_text", "created_at", "updated_at") and c.computed is None]

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


def record_to_row(rec: dict, known: Known, source: str) -> tuple[dict, dict[str, list[int]], list[Problem]]:
    """Validate one legacy record; returns (organisation row, links, problems)."""
    problems: list[Problem] = []
    rid = rec.get("id")
    record = str(rid)
    if not isinstance(rid, int) or isinstance(rid, bool) or rid <= 0:
        return {}, {}, [Problem(source, record, "id", rid, "must be a positive integer")]

    def bad(fieldname: str, value, reason: str) -> None:
        problems.append(Problem(source, record, fieldname, value, reason))

    row: dict = {c: None for c in ORG_COLUMNS}
    row.update(geocode_status="source", quality_flags=[], phones_e164=[], quality_score=None)
    row["id"] = rid
    row["uuid"] = organisation_uuid(rid)
    for key, col in _PLAIN.items():
        value = rec.get(key)
        if value is not None and not isinstance(value, str):
            bad(key, value, "expected a string")
            value = None
        row[col] = value.strip() or None if isinstance(value, str) else None
    for key, col in _LISTS.items():
        row[col] = _strings(rec.get(key), key, record, problems, source)
    if not (row["name_official_fr"] or row["name_official_nl"]):
        bad("nameOfficialFr/nameOfficialNl", None, "an organisation needs an official name in at least one language")

    state = rec.get("publicationState", "published")
    if state not in PUBLICATION_STATES:
        bad("publicationState", state, f"must be one of {', '.join(PUBLICATION_STATES)}")
    row["publication_state"] = state

    lang_status = rec.get("langStatus")
    if lang_status is not None and lang_status not in LANG_STATUSES:
        bad("langStatus", lang_status, "must be FR, NL or FR-NL")
    row["lang_status"] = lang_status
    interpreting = rec.get("isInterpreting")
    if interpreting is not None and not isinstance(interpreting, bool):
        bad("isInterpreting", interpreting, "expected true or false")
    row["is_interpreting"] = bool(interpreting)
    row["legacy_type"] = None if rec.get("type") is None else str(rec.get("type"))
    for key, col in (("lastUpdate", "last_update"), ("startDate", "start_date")):
        try:
            row[col] = parse_legacy_date(rec.get(key))
        except ValueError as exc:
            bad(key, rec.get(key), str(exc))

    numbers = []
    for value in rec.get("pmRp") or []:
        try:
            numbers.append(normalise_enterprise_number(value))
        except InvalidEnterpriseNumber as exc:
            bad("pmRp", value, str(exc))
    row["enterprise_numbers"] = numbers

    legal = rec.get("legalStatus")
    if legal is not None:
        legal_id = legal.get("id") if isinstance(legal, dict) else legal
        if legal_id not in known.ids.get("legal_status", set()):
            bad("legalStatus.id", legal_id, "unknown legal status")
        else:
            row["legal_status_id"] = legal_id

    _address(rec.get("address") or {}, row, known, bad)

    links: dict[str, list[int]] = {}
    for kind, keys in _LINK_KEYS.items():
        ids: list[int] = []
        for key in keys:
            for item in rec.get(key) or []:
                item_id = item.get("id") if isinstance(item, dict) else item
                if not isinstance(item_id, int) or item_id not in known.ids.get(kind, set()):
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
    for key, col in _ADDRESS.items():
        value = addr.get(key)
        row[col] = str(value).strip() or None if value is not None else None
    row["address_id"] = addr.get("id") if isinstance(addr.get("id"), int) else None
    zip_code = addr.get("zipCode")
    if zip_code is not None:
        try:
            zip_code = int(zip_code)
        except (TypeError, ValueError):
            bad("address.zipCode", zip_code, "expected a 4-digit postcode")
            zip_code = None
        if zip_code is not None and known.postcodes and zip_code not in known.postcodes:
            bad("address.zipCode", zip_code, "not a Brussels-Capital Region postcode")
    row["postcode"] = zip_code
    x, y, lon, lat = (addr.get(k) for k in ("x", "y", "lon", "lat"))
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
    """
    known = Known.from_db(conn)
    temp_table(conn, "_org", "(LIKE organisation INCLUDING DEFAULTS)")
    temp_table(conn, "_links", "(kind text, organisation_id int, target_id int, position int)")
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
        copy_rows(conn, "_links", ["kind", "organisation_id", "target_id", "position"], link_rows)
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


def _stage(conn: Connection, batch: list[dict], prepare: Prepare | None, report: OrganisationReport,
           progress: Callable[[int], None] | None) -> None:
    """One batch of valid rows: through ``prepare`` (the geocoder), counted, copied into ``_org``."""
    if prepare is not None and batch:
        prepare(batch)
    report.pending += sum(1 for row in batch if row["geocode_status"] == "pending")
    report.geocoded += sum(1 for row in batch if row["geocode_status"] == "ok")
    copy_rows(conn, "_org", ORG_COLUMNS, ([row[c] for c in ORG_COLUMNS] for row in batch))
    if progress is not None:
        progress(len(batch))


def reprocess(conn: Connection, where_sql: str, prepare: Prepare, *, progress: Callable[[int], None] | None = None) -> OrganisationReport:
    """Run stored records (``WHERE where_sql``) through ``prepare`` (the geocoder) and the
    enrichment again, keeping their links; only what changed is written."""
    temp_table(conn, "_org", "(LIKE organisation INCLUDING DEFAULTS)")
    temp_table(conn, "_links", "(kind text, organisation_id int, target_id int, position int)")
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


def _outside_region(conn: Connection) -> list[tuple[str, dict | None, list[Problem]]]:
    """Staged points farther than 100 m from every commune (only when the communes are loaded);
    they are taken out of the staging tables and reported."""
    if not conn.execute(text("SELECT EXISTS (SELECT 1 FROM commune)")).scalar():
        return []
    rows = conn.execute(
        text(
            "DELETE FROM _org o WHERE o.geom IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM commune c WHERE ST_DWithin(c.geom, o.geom, 100)) "
            "RETURNING o.id, o.x_31370, o.y_31370, o.lon, o.lat, to_jsonb(o) - 'geom' AS staged"
        )
    ).all()
    if rows:
        conn.execute(text("DELETE FROM _links WHERE organisation_id = ANY(:ids)"), {"ids": [r.id for r in rows]})
    return [
        ("-", {**r.staged, "id": r.id}, [Problem("-", str(r.id), "address.x/y" if r.x_31370 is not None else "address.lon/lat",
                  [r.x_31370, r.y_31370] if r.x_31370 is not None else [r.lon, r.lat],
                  "point outside the Brussels-Capital Region")])
        for r in rows
    ]


def _enrich_addresses(conn: Connection) -> None:
    """Fill what the point tells and the source left empty: commune NIS code and names, quartier,
    statistical sector, and the WGS84/Lambert 72 coordinate pair (source values are kept as
    given); then flag what disagrees and score each record (see app.importer.checks)."""
    conn.execute(
        text(
            """
            UPDATE _org o SET
              commune_nis = coalesce(o.commune_nis,
                  (SELECT c.nis_code FROM commune c WHERE ST_Intersects(c.geom, o.geom) ORDER BY c.nis_code LIMIT 1),
                  (SELECT p.commune_nis FROM postcode p WHERE p.postcode = o.postcode)),
              quartier_code = coalesce(o.quartier_code,
                  (SELECT q.code FROM quartier q WHERE ST_Intersects(q.geom, o.geom) ORDER BY q.code LIMIT 1)),
              statistical_sector_code = coalesce(o.statistical_sector_code,
                  (SELECT s.code FROM statistical_sector s WHERE ST_Intersects(s.geom, o.geom) ORDER BY s.code LIMIT 1)),
              lon = coalesce(o.lon, ST_X(ST_Transform(o.geom, 4326))),
              lat = coalesce(o.lat, ST_Y(ST_Transform(o.geom, 4326))),
              x_31370 = coalesce(o.x_31370, ST_X(o.geom)),
              y_31370 = coalesce(o.y_31370, ST_Y(o.geom))
            WHERE o.geom IS NOT NULL OR o.postcode IS NOT NULL
            """
        )
    )
    # a point URBIS just gave decides the statistical sector (a source's code only fills a gap)
    conn.execute(
        text(
            """
            UPDATE _org o SET statistical_sector_code = s.code, statistical_sector_nl = NULL, statistical_sector_fr = NULL
              FROM statistical_sector s
             WHERE o.geocode_status = 'ok' AND ST_Intersects(s.geom, o.geom)
               AND s.code IS DISTINCT FROM o.statistical_sector_code
            """
        )
    )
    conn.execute(
        text(
            """
            UPDATE _org o SET
              commune_nl = coalesce(o.commune_nl, nullif(c.name_nl, '')), commune_fr = coalesce(o.commune_fr, nullif(c.name_fr, ''))
            FROM commune c WHERE c.nis_code = o.commune_nis AND (o.commune_nl IS NULL OR o.commune_fr IS NULL)
            """
        )
    )
    conn.execute(
        text(
            """
            UPDATE _org o SET
              quartier_nl = coalesce(o.quartier_nl, nullif(q.name_nl, '')), quartier_fr = coalesce(o.quartier_fr, nullif(q.name_fr, ''))
            FROM quartier q WHERE q.code = o.quartier_code AND (o.quartier_nl IS NULL OR o.quartier_fr IS NULL)
            """
        )
    )
    conn.execute(
        text(
            """
            UPDATE _org o SET
              statistical_sector_nl = coalesce(o.statistical_sector_nl, nullif(s.name_nl, '')),
              statistical_sector_fr = coalesce(o.statistical_sector_fr, nullif(s.name_fr, ''))
            FROM statistical_sector s
            WHERE s.code = o.statistical_sector_code AND (o.statistical_sector_nl IS NULL OR o.statistical_sector_fr IS NULL)
            """
        )
    )
    flags = conn.execute(
        text(
            """
            WITH found AS (
              SELECT o.id,
                CASE WHEN o.geom IS NULL THEN 'no-point' END AS no_point,
                CASE WHEN o.postcode IS NOT NULL AND p.postcode IS NOT NULL AND pc.nis_code IS NOT NULL
                      AND NOT (pc.nis_code = ANY(p.commune_nis_codes) OR pc.nis_code = p.commune_nis)
                     THEN 'postcode-commune-mismatch' END AS postcode_mismatch,
                CASE WHEN o.statistical_sector_code IS NULL THEN NULL
                     WHEN NOT EXISTS (SELECT 1 FROM statistical_sector) OR o.geom IS NULL THEN 'statistical-sector-unverified'
                     WHEN ps.code IS DISTINCT FROM o.statistical_sector_code THEN 'statistical-sector-mismatch' END AS sector_flag
                FROM _org o
                LEFT JOIN postcode p ON p.postcode = o.postcode
                LEFT JOIN LATERAL (SELECT c.nis_code FROM commune c WHERE ST_Intersects(c.geom, o.geom) LIMIT 1) pc ON true
                LEFT JOIN LATERAL (SELECT s.code FROM statistical_sector s WHERE ST_Intersects(s.geom, o.geom) LIMIT 1) ps ON true
            )
            SELECT id, array_remove(ARRAY[no_point, postcode_mismatch, sector_flag], NULL) AS extra FROM found
            """
        )
    ).all()
    from ..importer.checks import quality

    extra = {r.id: r.extra for r in flags if r.extra}
    rows = conn.execute(text("SELECT id, quality_flags FROM _org")).all()
    scored = []
    for r in rows:
        merged = sorted(set(r.quality_flags or []) | set(extra.get(r.id, [])))
        scored.append((r.id, merged, quality(merged)))
    temp_table(conn, "_quality", "(id int PRIMARY KEY, flags text[], score int)")
    copy_rows(conn, "_quality", ["id", "flags", "score"], scored)
    conn.execute(text("UPDATE _org o SET quality_flags = q.flags, quality_score = q.score FROM _quality q WHERE q.id = o.id"))


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
                                 array_to_string(c.keywords_fr, ' ')), ' ')
       FROM organisation_category oc JOIN category c ON c.id = oc.category_id WHERE oc.organisation_id = o.id)))
WHERE o.id = ANY(:ids)
"""


def refresh_search_text(conn: Connection, ids: list[int]) -> None:
    """Rebuild the folded search text of the given organisations (names, activities, categories)."""
    conn.execute(text(SEARCH_TEXT_SQL), {"ids": ids})


def load_legacy(conn: Connection, source: Path) -> dict:
    """Lookup lists and organisation records from a directory (or one organisation file)."""
    counts: dict = {}
    if source.is_dir():
        counts.update(load_lookups(conn, source))
    report = load_organisations(conn, iter_records(organisation_files(source)))
    counts["organisations"] = report.__dict__
    return counts
