"""Legacy loader: 2019 lookup counts, idempotence, record 13219 round trip, all-or-nothing rejects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from app.loaders import LoadError
from app.loaders.legacy import load_legacy, load_organisations, iter_records
from app.serialize.legacy import organisation as legacy_shape
from tests.conftest import LEGACY_DIR
from tests.test_reference import table_digest

ALL_TABLES = (
    "organisation", "organisation_category", "organisation_accreditation", "organisation_language",
    "organisation_offer_type", "organisation_action_zone", "sector", "category", "category_tree", "authority",
    "accreditation", "legal_status", "language", "offer_type", "action_zone",
)
RECORD_13219 = json.loads((LEGACY_DIR / "organisation-13219.json").read_text(encoding="utf-8"))


def digests(engine) -> dict:
    with engine.connect() as conn:
        return {t: table_digest(conn, t) for t in ALL_TABLES}


def test_2019_lookup_counts(loaded):
    expected = {
        "category": 658, "sector": 21, "accreditation": 233, "authority": 14, "legal_status": 26,
        "language": 112, "offer_type": 6, "action_zone": 169,
    }
    with loaded.connect() as conn:
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in expected}
    assert counts == expected


def test_loading_twice_changes_nothing(loaded):
    before = digests(loaded)
    with loaded.begin() as conn:
        report = load_legacy(conn, LEGACY_DIR)
    assert {k: report["organisations"][k] for k in ("read", "created", "updated", "unchanged", "rejected")} == {"read": 1, "created": 0, "updated": 0, "unchanged": 1, "rejected": 0}
    assert digests(loaded) == before


def test_every_category_sits_in_the_tree_and_trees_are_acyclic(loaded):
    with loaded.connect() as conn:
        orphans = conn.execute(text("SELECT count(*) FROM category c WHERE NOT EXISTS (SELECT 1 FROM category_tree t WHERE t.category_id = c.id)")).scalar()
        cycles = conn.execute(
            text(
                """WITH RECURSIVE up(sector_id, start, node, depth) AS (
                     SELECT sector_id, category_id, parent_category_id, 1 FROM category_tree WHERE parent_category_id IS NOT NULL
                     UNION ALL
                     SELECT u.sector_id, u.start, t.parent_category_id, u.depth + 1 FROM up u
                       JOIN category_tree t ON t.sector_id = u.sector_id AND t.category_id = u.node
                      WHERE t.parent_category_id IS NOT NULL AND u.depth < 50)
                   SELECT count(*) FROM up WHERE node = start OR depth >= 50"""
            )
        ).scalar()
    assert orphans == 0
    assert cycles == 0


def test_action_zones_are_classified_with_geometry(loaded):
    with loaded.connect() as conn:
        kinds = dict(conn.execute(text("SELECT kind, count(*) FROM action_zone GROUP BY kind")).all())
        region = conn.execute(text("SELECT kind, geom IS NOT NULL FROM action_zone WHERE id = 268")).one()
        schaerbeek = conn.execute(text("SELECT kind, commune_nis FROM action_zone WHERE id = 434")).one()
        reyers = conn.execute(text("SELECT kind, quartier_code FROM action_zone WHERE id = 448")).one()
    assert kinds["commune"] == 19
    assert kinds["quartier"] >= 140
    assert tuple(region) == ("region", True)
    assert tuple(schaerbeek) == ("commune", "21015")
    assert tuple(reyers) == ("quartier", "87")


def test_record_13219_round_trips(loaded):
    """Every field of the legacy record is stored and read back identically (keys, order, values)."""
    from app import search

    import asyncio
    from sqlalchemy.ext.asyncio import create_async_engine

    async def fetch():
        eng = create_async_engine(loaded.url)
        async with eng.connect() as conn:
            rows = await search.fetch_records(conn, [13219])
        await eng.dispose()
        return rows

    rows = asyncio.run(fetch())
    assert len(rows) == 1
    shaped = legacy_shape(rows[0])
    assert list(shaped) == list(RECORD_13219)
    assert list(shaped["address"]) == list(RECORD_13219["address"])
    assert shaped == RECORD_13219
    assert rows[0]["commune_nis"] == "21015"


# ---------------------------------------------------------------- rejects: nothing changes


def _bad(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def _record(**changes) -> dict:
    rec = json.loads(json.dumps(RECORD_13219))
    rec["id"] = 990001
    for key, value in changes.items():
        if key.startswith("address_"):
            rec["address"][key.removeprefix("address_")] = value
        else:
            rec[key] = value
    return rec


@pytest.mark.parametrize(
    ("content", "record", "field", "reason"),
    [
        ("{not json", "line 2", "-", "invalid JSON"),
        (json.dumps(_record(categoriesObject=[{"id": 99999}])), "990001", "categoriesObject[].id", "unknown category"),
        (json.dumps(_record(pmRp=["0212.347.946"])), "990001", "pmRp", "mod-97"),
        (json.dumps(_record(address_x=95000, address_y=120000)), "990001", "address.x/y", "outside"),
        (json.dumps(_record(address_x=None, address_y=None, address_lon=4.30, address_lat=50.95)), "990001", "address.lon/lat", "outside"),
        (json.dumps(_record(langStatus="EN")), "990001", "langStatus", "FR, NL or FR-NL"),
        (json.dumps(_record(lastUpdate="2020-31-31")), "990001", "lastUpdate", "not a date"),
        (json.dumps(_record(address_zipCode=9000)), "990001", "address.zipCode", "Brussels"),
    ],
    ids=["invalid-json", "unknown-category", "bad-enterprise-number", "outside-lambert", "outside-wgs84", "lang-status", "date", "postcode"],
)
def test_malformed_input_is_rejected_naming_record_and_field(loaded, tmp_path, content, record, field, reason):
    good = json.dumps(_record() | {"id": 990002})
    path = _bad(tmp_path, "batch.ndjson", f"{good}\n{content}\n")
    before = digests(loaded)
    with pytest.raises(LoadError) as exc:
        with loaded.begin() as conn:
            load_organisations(conn, iter_records([path]))
    problems = exc.value.problems
    assert any(p.record == record and p.field == field and reason in p.reason for p in problems), problems
    assert "nothing loaded" in str(exc.value) and field in str(exc.value)
    assert digests(loaded) == before  # the good record of the same file was not kept either


def test_a_point_in_the_bbox_but_outside_the_region_is_rejected(loaded, tmp_path):
    # Inside the cheap bounding box, but in Flemish Brabant (Zaventem), far from every commune.
    path = _bad(tmp_path, "zaventem.json", json.dumps(_record(address_x=160500, address_y=174500, address_lon=None, address_lat=None)))
    with pytest.raises(LoadError) as exc:
        with loaded.begin() as conn:
            load_organisations(conn, iter_records([path]))
    assert [(p.record, p.field) for p in exc.value.problems] == [("990001", "address.x/y")]
