"""The importer geocodes through URBIS over real HTTP (the local twin, `bruso urbis serve`):
bilingual streets, enrichment from the point, and no record lost when URBIS stops mid-run."""

from __future__ import annotations

import time

from sqlalchemy import text

from app.geo.urbis_server import create_urbis_app
from app.importer import sources
from app.importer.geocoding import Geocoder, geocode_pending
from app.importer.run import run_import
from app.settings import Settings
from tests.conftest import REFERENCE_DIR, free_port, scratch_fixtures, serve_in_thread
from tests.test_import import demo, invoke, write_ndjson

COUNT = 300


db, engine = scratch_fixtures()  # module-scoped: a writable database of its own


def test_import_geocodes_every_address_through_urbis_over_http(db, engine, tmp_path):
    records = demo(COUNT, seed=31)
    path = write_ndjson(tmp_path / "demo.ndjson", records)
    port = free_port()  # the cache is per service (base URL): the rerun asks the same one
    with serve_in_thread(create_urbis_app(db), port) as urbis:
        started = time.perf_counter()
        result = invoke(db, "import", "legacy", str(path), "--geocode", "all", "--urbis", urbis)
        seconds = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    print(f"\nimport with bilingual geocoding: {COUNT} records in {seconds:.1f} s = {COUNT / seconds:.0f} records/s")
    with engine.connect() as conn:
        run = conn.execute(text("SELECT * FROM import_run ORDER BY id DESC LIMIT 1")).mappings().one()
        status = dict(conn.execute(text("SELECT geocode_status, count(*) FROM organisation GROUP BY 1")).all())
        rows = conn.execute(text(
            "SELECT o.id, o.street_nl, o.street_fr, o.commune_nis, o.quartier_code, o.statistical_sector_code, "
            "o.statistical_sector_nl, o.x_31370, o.y_31370, o.lon, o.lat, o.quality_score, "
            "ST_Intersects(c.geom, o.geom) AS in_commune "
            "FROM organisation o JOIN commune c ON c.nis_code = o.commune_nis WHERE o.geocode_status = 'ok'")).mappings().all()
    assert run["created"] == COUNT and run["geocoded"] == status.get("ok", 0)
    assert status.get("ok", 0) >= 0.95 * COUNT, status  # demo addresses come from the address points
    assert status.get("pending", 0) == 0
    for row in rows:
        assert row["street_nl"] and row["street_fr"]
        assert row["in_commune"] and row["quartier_code"] and row["statistical_sector_code"]
        assert 0 <= row["quality_score"] <= 100
    # a re-import with the same addresses asks URBIS nothing: every answer is cached
    with serve_in_thread(create_urbis_app(db), port) as urbis:
        geocoder = Geocoder(urbis, engine, "all")
        try:
            stats_before = geocoder.client.stats.requests
            rerun = run_import(engine, sources.legacy_path(path), prepare=geocoder)
            assert geocoder.client.stats.requests == stats_before == 0
        finally:
            geocoder.close()
    assert (rerun.report.created, rerun.report.updated) == (0, 0)


def test_urbis_stopping_mid_run_leaves_pending_records_that_geocode_later(db, engine, tmp_path):
    records = demo(COUNT, seed=32)
    for i, rec in enumerate(records):  # new ids, new addresses' cache keys are those of seed 32
        rec["id"] = 700000 + i
    path = write_ndjson(tmp_path / "second.ndjson", records)
    urbis_app = create_urbis_app(db)
    served = {"n": 0}
    holder = {}

    @urbis_app.middleware("http")
    async def stop_after_some(request, call_next):
        served["n"] += 1
        if served["n"] == 80:  # URBIS goes away mid-run: the server shuts down
            holder["server"].should_exit = True
        return await call_next(request)

    with serve_in_thread(urbis_app, expose=holder) as urbis:
        geocoder = Geocoder(urbis, engine, "all", timeout=1.0)
        try:
            result = run_import(engine, sources.legacy_path(path), prepare=geocoder)
        finally:
            geocoder.close()
    assert result.status == "succeeded" and result.report.created == COUNT
    assert result.report.pending > 0
    with engine.connect() as conn:
        pending = conn.execute(text("SELECT count(*) FROM organisation WHERE id >= 700000 AND geocode_status = 'pending'")).scalar_one()
        total = conn.execute(text("SELECT count(*) FROM organisation WHERE id >= 700000")).scalar_one()
    assert total == COUNT and pending == result.report.pending

    settings = Settings(BRUSO_DATABASE_URL=db, reference_dir=REFERENCE_DIR)
    with serve_in_thread(create_urbis_app(db)) as urbis:
        report = geocode_pending(engine, settings, urbis)
    assert report.read == pending and report.pending == 0
    with engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM organisation WHERE geocode_status = 'pending'")).scalar_one()
        total = conn.execute(text("SELECT count(*) FROM organisation WHERE id >= 700000")).scalar_one()
    assert left == 0 and total == COUNT


def test_geocoder_loop_is_uvloop_when_installed(engine):
    import pytest

    uvloop = pytest.importorskip("uvloop")
    geocoder = Geocoder("http://127.0.0.1:9", engine, "all")
    try:
        assert isinstance(geocoder.loop, uvloop.Loop)
        assert geocoder.client._pool is not None  # plain http: the keep-alive pool, not httpx
    finally:
        geocoder.close()
