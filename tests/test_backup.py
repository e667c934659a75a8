"""Backups round-trip: after real imports (runs, quarantine, change feed, tombstones), a backup
restored into a new database has every table identical, row for row, the sequences where they
were, and the schema at the migrations' head. A broken archive restores nothing; a failed backup
leaves no file."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from app.backup import BackupError, backup, libpq_url, restore, user_tables
from app.importer import sources
from app.importer.run import run_import
from app.main import migration_head
from tests.conftest import (
    REFERENCE_DIR,
    _sqlalchemy_url,
    create_database,
    drop_database,
    scratch_database,
)


def demo(count: int, seed: int = 23) -> list[dict]:
    from app.demo import iter_records

    return [r for r in iter_records(count + 1, seed, REFERENCE_DIR) if r["id"] != 13219][:count]


def write_ndjson(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records))
    return path


def table_digests(url: str) -> dict[str, tuple[int, str | None]]:
    """Row count and md5 of the ordered rows of every table in the public schema."""
    conninfo, _ = libpq_url(url)
    with psycopg.connect(conninfo) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").fetchall()]
        out = {}
        for name in tables:
            out[name] = conn.execute(
                f'SELECT count(*), md5(string_agg(t::text, chr(10) ORDER BY t::text)) FROM public."{name}" t'
            ).fetchone()
        return out


def sequence_states(url: str) -> dict[str, tuple]:
    conninfo, _ = libpq_url(url)
    with psycopg.connect(conninfo) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1").fetchall()]
        return {n: conn.execute(f'SELECT last_value, is_called FROM public."{n}"').fetchone() for n in names}


@pytest.fixture(scope="module")
def source_db(tmp_path_factory) -> str:
    """A directory after two imports: 40 records (one rejected → quarantine), then 34 of them
    with delete_missing (→ tombstones and deletion events)."""
    tmp = tmp_path_factory.mktemp("imports")
    records = demo(40)
    broken = dict(records[-1], id=990001, emailFr=["info@@example"])
    with scratch_database() as url:
        engine = create_engine(url)
        try:
            first = run_import(engine, sources.legacy_path(write_ndjson(tmp / "first.ndjson", [*records, broken])))
            assert (first.status, first.report.created, first.report.rejected) == ("succeeded", 40, 1)
            second = run_import(engine, sources.legacy_path(write_ndjson(tmp / "second.ndjson", records[:34])),
                                delete_missing=True)
            assert second.status == "succeeded" and second.report.deleted == 6
        finally:
            engine.dispose()
        yield url


def test_backup_restore_round_trip_is_identical(source_db, tmp_path):
    before = table_digests(source_db)
    for table in ("organisation", "organisation_category", "import_run", "change_event", "quarantine",
                  "organisation_tombstone", "commune", "street", "address_point", "category", "alembic_version"):
        assert before.get(table, (0,))[0] > 0, f"{table} should hold rows for a meaningful round trip"

    t0 = time.monotonic()
    archive = backup(source_db, tmp_path / "bruso.dump")
    backup_s = time.monotonic() - t0
    assert archive.stat().st_size > 100_000
    assert not list(tmp_path.glob(".*.part"))

    target = create_database("bruso_restored")
    try:
        url = _sqlalchemy_url(target)
        t0 = time.monotonic()
        restore(url, archive)
        restore_s = time.monotonic() - t0
        after = table_digests(url)
        assert set(after) == set(before)
        different = {t: (before[t], after[t]) for t in before if before[t] != after[t]}
        assert not different, different
        assert sequence_states(url) == sequence_states(source_db)
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                assert MigrationContext.configure(conn).get_current_revision() == migration_head()
                # the restored database works: the change feed goes on after the last event
                before_max = conn.execute(text("SELECT max(seq) FROM change_event")).scalar_one()
        finally:
            engine.dispose()
        from fastapi.testclient import TestClient

        from app.main import create_app
        from app.settings import Settings

        answers = []
        for db in (source_db, url):
            with TestClient(create_app(Settings(BRUSO_DATABASE_URL=db, rate_limit_per_minute=0))) as c:
                assert c.get("/readyz").status_code == 200
                page = c.get("/v1/organisations", params={"limit": 5, "fields": "name"})
                assert page.status_code == 200
                answers.append((page.json()["numberMatched"], page.json()["items"], c.get("/v1/changes").json()["events"]))
        assert answers[0] == answers[1]  # the restored database serves the same answers
        print(f"\n[backup] {len(before)} tables, {sum(c for c, _ in before.values())} rows, "
              f"archive {archive.stat().st_size / 1e6:.1f} MB; backup {backup_s:.1f} s, restore {restore_s:.1f} s; "
              f"change feed at seq {before_max}")
    finally:
        drop_database(target)


def test_restore_refuses_a_database_that_is_not_empty(source_db, tmp_path):
    archive = backup(source_db, tmp_path / "bruso.dump")
    with pytest.raises(BackupError, match="not empty"):
        restore(source_db, archive)


def test_broken_archive_restores_nothing(source_db, tmp_path):
    archive = backup(source_db, tmp_path / "bruso.dump")
    data = archive.read_bytes()
    broken = tmp_path / "broken.dump"
    broken.write_bytes(data[: len(data) * 2 // 3])  # cut mid-way, as a full disk would
    target = create_database("bruso_restored")
    try:
        url = _sqlalchemy_url(target)
        with pytest.raises(BackupError, match="pg_restore failed"):
            restore(url, broken)
        assert user_tables(url) == []  # one transaction: nothing left behind
    finally:
        drop_database(target)


def test_failed_backup_leaves_no_file(tmp_path, monkeypatch):
    import app.backup as backups

    target = tmp_path / "never.dump"
    with pytest.raises(BackupError, match="cannot connect"):
        backup(_sqlalchemy_url("bruso_no_such_database"), target)
    # pg_dump dying half-way (here: a pg_dump that writes a partial file and fails)
    fake = tmp_path / "bin" / "pg_dump"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nfor a; do case "$a" in --file=*) printf PGDMP > "${a#--file=}";; esac; done\n'
                    'echo "pg_dump: error: out of disk space" >&2; exit 1\n')
    fake.chmod(0o755)
    monkeypatch.setattr(backups, "client_tool", lambda name, major: fake)
    with pytest.raises(BackupError, match="out of disk space"):
        backup(_sqlalchemy_url("postgres"), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin"]  # neither the backup nor a partial file


def test_libpq_url_keeps_the_password_off_the_command_line():
    conninfo, env = libpq_url("postgresql+psycopg://bruso:s3cr%40t@db.example:6543/bruso?sslmode=require")
    assert conninfo == "postgresql://bruso@db.example:6543/bruso?sslmode=require"
    assert env == {"PGPASSWORD": "s3cr@t"}
    assert libpq_url("postgresql+psycopg://postgres@127.0.0.1:5433/bruso") == ("postgresql://postgres@127.0.0.1:5433/bruso", {})
