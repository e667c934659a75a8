"""The bulk loader's fast paths give exactly what the general path gives.

* A strict load into an empty directory (``legacy._load_first``: batches, plain inserts, documents
  built set-based while the next batch is validated) and the general path (staging, upsert with
  IS DISTINCT FROM, search text refresh, ``documents.refresh``) store the same organisations,
  links, search texts, quality flags and scores, change events and documents.
* The set-based document builder (``documents.BulkWriter``) and RECORD_SQL + ``build`` agree.
* The fast path of the phone check answers as phonenumbers does.
"""

from __future__ import annotations

import random

import orjson
import pytest
from sqlalchemy import create_engine, text

from app.demo import iter_records
from app.importer import checks
from app.loaders import LoadError
from app.loaders import legacy
from app.loaders.legacy import load_organisations
from app.search import RECORD_SQL, documents
from tests.conftest import REFERENCE_DIR, scratch_database

COUNT = 700  # records: with a small FIRST_BATCH, several batches of the fast path


def _records(count: int = COUNT, seed: int = 11):
    return [("demo", r) for r in iter_records(count, seed, REFERENCE_DIR)]


def _variants(records):
    """A few records the generator does not make: a point given as lon/lat only, no point at all,
    a postcode of another commune, a source's sector code that the point contradicts."""
    out = [(s, orjson.loads(orjson.dumps(r))) for s, r in records]
    a = out[3][1]["address"]
    a["x"] = a["y"] = None
    b = out[4][1]["address"]
    b["x"] = b["y"] = b["lon"] = b["lat"] = None
    out[5][1]["address"]["zipCode"] = 1020 if out[5][1]["address"]["zipCode"] != 1020 else 1000
    out[6][1]["address"]["statisticsCode"] = "21004A00-"
    out[7][1]["address"]["municipalityFr"] = None
    return out


ORG_SQL = "SELECT to_jsonb(o) - 'created_at' - 'updated_at' AS row FROM organisation o ORDER BY id"
LINKS_SQL = " UNION ALL ".join(
    f"SELECT '{k}' AS kind, organisation_id, {k}_id AS target, position FROM organisation_{k}"
    for k in ("category", "accreditation", "language", "offer_type", "action_zone")) + " ORDER BY 1, 2, 3"


def _documents(conn) -> dict[int, tuple]:
    """Stored documents without their time stamps (each load has its own)."""
    out = {}
    for oid, v1, ogc in conn.execute(text("SELECT organisation_id, v1, ogc FROM record_document ORDER BY 1")):
        v1, ogc = orjson.loads(v1), orjson.loads(ogc)
        for doc in (v1, ogc):
            doc.pop("created_at", None)
            doc.pop("updated_at", None)
        out[oid] = (v1, ogc)
    return out


def _state(url: str) -> dict:
    engine = create_engine(url)
    with engine.connect() as conn:
        state = {
            "organisations": [r.row for r in conn.execute(text(ORG_SQL))],
            "links": [tuple(r) for r in conn.execute(text(LINKS_SQL))],
            "events": sorted(tuple(r) for r in conn.execute(text("SELECT organisation_id, uuid, kind FROM change_event"))),
            "documents": _documents(conn),
            "stale": list(conn.execute(text(documents.STALE_SQL)).scalars()),
            "words": list(conn.execute(text("SELECT word FROM search_word ORDER BY word")).scalars()),
            "fresh": _shaped_equals_stored(conn),
        }
    engine.dispose()
    return state


def _shaped_equals_stored(conn) -> bool:
    """Every stored document is byte for byte what RECORD_SQL + build make now."""
    ids = list(conn.execute(text("SELECT id FROM organisation ORDER BY id")).scalars())
    stored = {r[0]: (r[1], r[2]) for r in conn.execute(text("SELECT organisation_id, v1, ogc FROM record_document"))}
    rows = conn.execute(text(RECORD_SQL.format(public="")), {"ids": ids}).mappings()
    return all(stored.get(r["id"]) == documents.build(r) for r in rows)


@pytest.fixture(scope="module")
def fast_and_general(monkeypatch_module):
    monkeypatch_module.setattr(legacy, "FIRST_BATCH", 150)
    monkeypatch_module.setattr(documents, "BATCH", 100)
    records = _variants(_records())
    states = {}
    with scratch_database() as url:  # empty: the whole source through _load_first
        engine = create_engine(url)
        with engine.begin() as conn:
            report = load_organisations(conn, records)
        engine.dispose()
        states["fast"] = (report, _state(url))
    with scratch_database() as url:  # one record first: the rest through the general path
        engine = create_engine(url)
        with engine.begin() as conn:
            load_organisations(conn, records[:1])
        with engine.begin() as conn:
            report = load_organisations(conn, records)
        engine.dispose()
        states["general"] = (report, _state(url))
    return states


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_fast_path_report(fast_and_general):
    report, _ = fast_and_general["fast"]
    assert (report.read, report.created, report.updated, report.unchanged, report.rejected) == (COUNT, COUNT, 0, 0, 0)
    report, _ = fast_and_general["general"]
    assert (report.read, report.created, report.updated, report.unchanged) == (COUNT, COUNT - 1, 0, 1)


@pytest.mark.parametrize("part", ["organisations", "links", "events", "documents", "words"])
def test_first_load_equals_general_path(fast_and_general, part):
    fast, general = fast_and_general["fast"][1][part], fast_and_general["general"][1][part]
    assert len(fast) > 0
    assert fast == general


def test_every_document_is_fresh_and_equals_the_shaped_record(fast_and_general):
    for _report, state in fast_and_general.values():
        assert state["stale"] == []
        assert state["fresh"] is True
        assert len(state["documents"]) == len(state["organisations"])


def test_the_variants_were_enriched_and_flagged(fast_and_general):
    rows = {r["id"]: r for r in fast_and_general["fast"][1]["organisations"]}
    lonlat_only, no_point = rows[100002], rows[100003]
    assert lonlat_only["x_31370"] is not None and lonlat_only["commune_nis"] is not None
    assert "no-point" in no_point["quality_flags"] and no_point["quality_score"] <= 50
    assert any("postcode-commune-mismatch" in r["quality_flags"] for r in rows.values())
    assert any("statistical-sector-mismatch" in r["quality_flags"] for r in rows.values())
    assert all(r["quality_flags"] == sorted(set(r["quality_flags"])) for r in rows.values())
    assert all(r["search_text"] for r in rows.values())


def test_bulk_documents_equal_record_sql(monkeypatch):
    """refresh() with many stale documents takes the set-based builder: same texts."""
    monkeypatch.setattr(documents, "BULK", 10)
    with scratch_database() as url:
        engine = create_engine(url)
        with engine.begin() as conn:
            load_organisations(conn, _records(60, 5))
            conn.execute(text("DELETE FROM record_document WHERE organisation_id % 3 = 0"))
            conn.execute(text("UPDATE organisation SET updated_at = now() + interval '1 second' WHERE id % 3 = 1"))
            assert documents.refresh(conn) >= 10
            assert list(conn.execute(text(documents.STALE_SQL)).scalars()) == []
            assert _shaped_equals_stored(conn)
        engine.dispose()


def test_a_first_load_rejects_all_or_nothing():
    records = _records(40, 3)
    bad_point = orjson.loads(orjson.dumps(records[5][1]))
    bad_point["address"].update(x=139000, y=161000)  # in the bounding box, outside the Region
    bad_phone = orjson.loads(orjson.dumps(records[7][1]))
    bad_phone["telFr"] = ["not a phone"]
    with scratch_database() as url:
        engine = create_engine(url)
        for source, reasons in (
            ([*records[:5], ("demo", bad_point), *records[6:]], {"point outside the Brussels-Capital Region"}),
            # a record that fails validation hides the point outside the Region, as the general path does
            ([*records[:5], ("demo", bad_point), ("demo", bad_phone), *records[8:]], {"not a phone number"}),
        ):
            with pytest.raises(LoadError) as failed, engine.begin() as conn:
                load_organisations(conn, source)
            assert {p.reason.split(":")[0] for p in failed.value.problems} == reasons
            with engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM organisation")).scalar() == 0
                assert conn.execute(text("SELECT count(*) FROM change_event")).scalar() == 0
        engine.dispose()


def _phone_strings(count: int, seed: int = 1):
    rnd = random.Random(seed)
    for _ in range(count):
        if rnd.random() < 0.5:  # the shape the fast path takes: "0", not "0", 7 or 8 digits, single separators
            digits = "0" + rnd.choice("123456789") + "".join(rnd.choice("0123456789") for _ in range(rnd.choice([7, 8])))
            yield digits[:2] + "".join(rnd.choice(["", "", "/", ".", " "]) + d for d in digits[2:])
            continue
        digits = "0" + rnd.choice("0123456789") + "".join(rnd.choice("0123456789") for _ in range(rnd.choice([6, 7, 8, 9, 10])))
        out = digits[:2]
        for d in digits[2:]:
            out += rnd.choice(["", "", "/", ".", " ", "-", "//"]) + d
        yield rnd.choice(["", "", "", "+32 ", "00"]) + (out[1:] if out.startswith("0") and rnd.random() < 0.1 else out)


def test_phone_fast_path_answers_as_phonenumbers():
    fast = 0
    for number in _phone_strings(20_000):
        try:
            expected = (checks.e164(number), None)
        except ValueError as exc:
            expected = (None, str(exc))
        fast += bool(checks._BE_NATIONAL.fullmatch(number))
        assert checks._e164_checked(number) == expected, number
    assert fast > 8_000
