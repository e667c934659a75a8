"""The importer (issue 4): bad records quarantined with precise reasons, nothing lost, reruns
change nothing, dry runs write nothing, tables round-trip, harvests load, kills leave no trace."""

from __future__ import annotations

import copy
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openpyxl
from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from app.cli import app as cli
from app.demo import iter_records
from app.importer import sources
from app.importer.run import run_import
from app.main import create_app
from app.settings import Settings
from tests.conftest import LEGACY_DIR, REFERENCE_DIR, ROOT, scratch_database, scratch_fixtures, serve_in_thread

GOOD = 100


def demo(count: int, seed: int = 11) -> list[dict]:
    return [r for r in iter_records(count + 1, seed, REFERENCE_DIR) if r["id"] != 13219][:count]


def bad_records(good: list[dict]) -> list[tuple[dict | str, str, str]]:
    """Ten broken records (or lines), each with the field and a word of the reason expected."""
    base = good[0]
    out = []

    def variant(new_id: int, change) -> dict:
        rec = copy.deepcopy(base)
        rec["id"] = new_id
        change(rec)
        return rec

    out.append((variant(990001, lambda r: r.update(pmRp=["0212.347.946"])), "pmRp", "mod-97"))
    out.append((variant(990002, lambda r: r.update(emailFr=["info@@example"])), "email_fr", "e-mail"))
    out.append((variant(990003, lambda r: r.update(telNl=["02/12"])), "phone_nl", "phone"))
    out.append((variant(990004, lambda r: r.update(websiteOfficialFr=["javascript:alert(1)"])), "website_official_fr", "web"))
    out.append((variant(990005, lambda r: r["address"].update(zipCode=9999)), "address.zipCode", "Brussels"))
    out.append((variant(990006, lambda r: r.update(langStatus="DE")), "langStatus", "FR, NL"))
    out.append((variant(990007, lambda r: r.update(categories=[999999], categoriesObject=None)), "categories[].id", "unknown category"))
    out.append((variant(990008, lambda r: r.update(nameOfficialFr=None, nameOfficialNl=None)), "nameOfficialFr/nameOfficialNl", "official name"))
    out.append((variant(990009, lambda r: r["address"].update(x=40000.0, y=40000.0, lon=None, lat=None)), "address.x/y", "outside"))
    out.append(("{not json", "-", "invalid JSON"))
    return out


def write_ndjson(path: Path, records: list) -> Path:
    with path.open("w") as fh:
        for rec in records:
            fh.write((rec if isinstance(rec, str) else json.dumps(rec, ensure_ascii=False)) + "\n")
    return path


db, engine = scratch_fixtures()  # module-scoped: a writable database of its own


def invoke(db: str, *args: str):
    env = {"BRUSO_DATABASE_URL": db, "BRUSO_REFERENCE_DIR": str(REFERENCE_DIR)}
    from app.settings import get_settings

    get_settings.cache_clear()
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


def counts(engine) -> dict:
    with engine.connect() as conn:
        return {
            "organisations": conn.execute(text("SELECT count(*) FROM organisation")).scalar_one(),
            "digest": conn.execute(text("SELECT md5(string_agg(o::text, '|' ORDER BY id)) FROM organisation o")).scalar_one(),
            "links": conn.execute(text("SELECT count(*) FROM organisation_category")).scalar_one(),
        }


def test_hundred_good_ten_bad_quarantined_with_reasons_and_rerun_changes_nothing(db, engine, tmp_path):
    good = demo(GOOD)
    bad = bad_records(good)
    lines = good[:50] + [b[0] for b in bad] + good[50:]
    path = write_ndjson(tmp_path / "mixed.ndjson", lines)

    result = invoke(db, "import", "legacy", str(path), "--geocode", "none")
    assert result.exit_code == 1, result.output
    with engine.connect() as conn:
        run = conn.execute(text("SELECT * FROM import_run ORDER BY id DESC LIMIT 1")).mappings().one()
        assert (run["status"], run["read"], run["created"], run["rejected"]) == ("succeeded", 110, GOOD, 10)
        ids = set(conn.execute(text("SELECT id FROM organisation")).scalars())
        assert ids == {r["id"] for r in good}
        quarantined = conn.execute(text("SELECT record_id, problems, record FROM quarantine WHERE run_id = :r"), {"r": run["id"]}).all()
    assert len(quarantined) == 10
    by_id = {q.record_id: q for q in quarantined}
    for rec, fieldname, reason in bad:
        key = str(rec["id"]) if isinstance(rec, dict) else None
        entry = by_id[key]
        assert any(p["field"] == fieldname and reason.lower() in p["reason"].lower() for p in entry.problems), (fieldname, entry.problems)
        if isinstance(rec, dict):
            assert entry.record["id"] == rec["id"]  # the whole record is kept

    before = counts(engine)
    again = invoke(db, "import", "legacy", str(path), "--geocode", "none")
    assert again.exit_code == 1
    with engine.connect() as conn:
        run = conn.execute(text("SELECT * FROM import_run ORDER BY id DESC LIMIT 1")).mappings().one()
    assert (run["created"], run["updated"], run["unchanged"], run["rejected"]) == (0, 0, GOOD, 10)
    assert counts(engine) == before


def test_normalised_phones_and_quality(engine):
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT phone_nl, phone_fr, phones_e164, quality_score, quality_flags FROM organisation "
            "WHERE cardinality(phone_fr) > 0 ORDER BY id LIMIT 1")).mappings().one()
    assert row["phones_e164"] and all(p.startswith("+32") for p in row["phones_e164"])
    assert 0 <= row["quality_score"] <= 100


def test_dry_run_writes_only_the_run_record(db, engine, tmp_path):
    extra = demo(5, seed=12)
    for i, rec in enumerate(extra):
        rec["id"] = 995000 + i
    path = write_ndjson(tmp_path / "dry.ndjson", extra)
    before = counts(engine)
    result = invoke(db, "import", "legacy", str(path), "--geocode", "none", "--dry-run")
    assert result.exit_code == 0, result.output
    assert counts(engine) == before
    with engine.connect() as conn:
        run = conn.execute(text("SELECT * FROM import_run ORDER BY id DESC LIMIT 1")).mappings().one()
        assert (run["status"], run["created"]) == ("dry-run", 5)
        assert conn.execute(text("SELECT count(*) FROM quarantine WHERE run_id = :r"), {"r": run["id"]}).scalar_one() == 0


def test_runs_are_listed_read_only(db, engine):
    with TestClient(create_app(Settings(BRUSO_DATABASE_URL=db, reference_dir=REFERENCE_DIR))) as client:
        body = client.get("/v1/meta/imports").json()
        assert body["items"][0]["status"] in ("dry-run", "succeeded")
        assert {"read", "created", "updated", "unchanged", "rejected", "pending", "duration_s"} <= set(body["items"][0])
        assert client.post("/v1/meta/imports").status_code == 405
        assert client.get("/v1/meta/imports?bogus=1").status_code == 400


def test_xlsx_round_trip_updates_exactly_one_record_and_the_feed_shows_it(db, engine, tmp_path):
    with TestClient(create_app(Settings(BRUSO_DATABASE_URL=db, reference_dir=REFERENCE_DIR))) as client:
        start = client.get("/v1/changes", params={"since": "2000-01-01T00:00:00Z", "limit": 1000})
        token = start.json()["next"]
        while True:  # to the end of the feed
            page = client.get("/v1/changes", params={"since": token, "limit": 1000}).json()
            if not page["events"]:
                break
            token = page["next"]
        exported = client.get("/v1/organisations", params={"f": "xlsx", "limit": 1000})
        assert exported.status_code == 200
        book = openpyxl.load_workbook(io.BytesIO(exported.content))
        sheet = book.active
        header = [c.value for c in sheet[1]]
        phone_col = next(i for i, h in enumerate(header) if str(h).startswith("phone_fr"))
        id_col = next(i for i, h in enumerate(header) if str(h).startswith("id "))
        row = sheet[2]
        changed_id = int(row[id_col].value)
        row[phone_col].value = "02 508 12 11"
        path = tmp_path / "edited.xlsx"
        book.save(path)

        result = invoke(db, "import", "table", str(path), "--geocode", "none")
        assert result.exit_code == 0, result.output
        with engine.connect() as conn:
            run = conn.execute(text("SELECT * FROM import_run ORDER BY id DESC LIMIT 1")).mappings().one()
            phones = conn.execute(text("SELECT phone_fr, phones_e164 FROM organisation WHERE id = :i"), {"i": changed_id}).one()
        assert (run["created"], run["updated"], run["rejected"]) == (0, 1, 0)
        with engine.connect() as conn:
            published = conn.execute(text("SELECT count(*) FROM organisation WHERE publication_state = 'published'")).scalar_one()
        assert run["read"] == published and run["unchanged"] == published - 1
        assert phones.phone_fr == ["02 508 12 11"] and "+3225081211" in phones.phones_e164

        events = client.get("/v1/changes", params={"since": token}).json()["events"]
        assert [(e["id"], e["type"]) for e in events] == [(changed_id, "updated")]


def test_harvest_from_a_legacy_api_loads_lists_and_records():
    record = json.loads((LEGACY_DIR / "organisation-13219.json").read_text())
    legacy = FastAPI()
    files = {path: LEGACY_DIR / name for path, name in sources.HARVEST_LISTS.items()}

    @legacy.get("/rest/{path:path}")
    async def serve(path: str, activity: str | None = None):
        key = f"{path}?activity={activity}" if activity else path
        if key in files:
            return FileResponse(files[key], media_type="application/json")
        if path == "search/organisation/*":
            return JSONResponse([record])
        if path == "organisation/13219":
            return JSONResponse(record)
        return JSONResponse({"error": "not found"}, status_code=404)

    with scratch_database(lookups=False) as url, serve_in_thread(legacy) as base:
        result = invoke(url, "import", "legacy", f"{base}/rest", "--geocode", "none")
        assert result.exit_code == 0, result.output
        eng = create_engine(url)
        with eng.connect() as conn:
            got = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                   for t in ("category", "sector", "accreditation", "authority", "legal_status", "language", "offer_type", "action_zone")}
            org = conn.execute(text("SELECT id, name_official_fr, commune_nis FROM organisation")).all()
        eng.dispose()
    assert got == {"category": 658, "sector": 21, "accreditation": 233, "authority": 14, "legal_status": 26,
                   "language": 112, "offer_type": 6, "action_zone": 169}
    assert [(o.id, o.commune_nis) for o in org] == [(13219, "21015")]


KILLED_IMPORT = """
import sys, time
from sqlalchemy import create_engine
from app.importer import sources
from app.importer.run import run_import

def slow(rows):
    time.sleep(120)  # killed while staged, before commit

engine = create_engine(sys.argv[1])
run_import(engine, sources.legacy_path(__import__('pathlib').Path(sys.argv[2])), prepare=slow)
"""


def test_a_killed_import_leaves_the_previous_state_and_is_marked_failed(db, engine, tmp_path):
    changed = demo(GOOD)[:20]
    for rec in changed:
        rec["nameOfficialFr"] = "RENAMED " + (rec.get("nameOfficialFr") or "")
    path = write_ndjson(tmp_path / "killed.ndjson", changed)
    before = counts(engine)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_IMPORT, db, str(path)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            with engine.connect() as conn:
                running = conn.execute(text("SELECT id FROM import_run WHERE status = 'running'")).scalar()
            if running:
                break
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert counts(engine) == before
    result = run_import(engine, sources.legacy_path(write_ndjson(tmp_path / "none.ndjson", [])))
    assert result.status == "succeeded"
    with engine.connect() as conn:
        status, error = conn.execute(text("SELECT status, error FROM import_run WHERE id = :i"), {"i": running}).one()
    assert status == "failed" and "interrupted" in error
