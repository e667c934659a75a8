"""One import run: a source's records are checked, geocoded (optionally), enriched and loaded in
one transaction; rejected records go to the quarantine with every reason; the run is recorded in
``import_run`` whatever happens (running → succeeded | failed | dry-run).

Nothing is lost: the load is all-or-nothing at the transaction level (a crash or a kill leaves the
previous state, and the next run marks the interrupted one failed), and within a run a record is
either loaded or quarantined, never dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from sqlalchemy import Engine, text

from ..loaders import LoadError, Problem
from ..loaders.legacy import OrganisationReport, Prepare, load_lookups, load_organisations
from ..loaders.sql import copy_rows
from .sources import Source

IMPORT_LOCK = 4_205_172  # session advisory lock held by the running import (see mark_interrupted)


@dataclass
class Rejected:
    location: str
    record_id: str | None
    record: dict | None
    problems: list[Problem]


@dataclass
class ImportResult:
    run_id: int
    status: str
    report: OrganisationReport
    rejected: list[Rejected] = field(default_factory=list)
    lookups: dict = field(default_factory=dict)
    duration_s: float = 0.0
    error: str | None = None

    @property
    def records_per_s(self) -> float:
        return self.report.read / self.duration_s if self.duration_s else 0.0


def _jsonable(value):
    return orjson.loads(orjson.dumps(value, default=str))


def _problem_json(p: Problem) -> dict:
    return {"field": p.field, "value": _jsonable(p.value), "reason": p.reason, "source": p.source}


def run_import(
    engine: Engine,
    source: Source,
    *,
    prepare: Prepare | None = None,
    dry_run: bool = False,
    delete_missing: bool = False,
    actor: str | None = None,
    progress: Callable[[int], None] | None = None,
    after_commit: Callable[[], None] | None = None,
) -> ImportResult:
    """Run one import; returns its result (also recorded in import_run). Never raises for bad
    records (they are quarantined); raises only when the run itself failed (recorded as failed)."""
    started = time.monotonic()
    with engine.connect() as guard:
        guard.execute(text("SELECT pg_advisory_lock(:k)"), {"k": IMPORT_LOCK})  # one import at a time
        guard.commit()
        try:
            with engine.begin() as conn:
                conn.execute(text(
                    "UPDATE import_run SET status = 'failed', error = 'interrupted (the process ended mid-run)', "
                    "finished_at = now() WHERE status = 'running'"
                ))
                run_id = conn.execute(
                    text("INSERT INTO import_run (source, kind, actor, status) VALUES (:s, :k, :a, 'running') RETURNING id"),
                    {"s": source.name, "k": source.kind, "a": actor},
                ).scalar_one()
            rejected: list[Rejected] = []

            def on_reject(where: str, rec: dict | None, problems: list[Problem]) -> None:
                rid = rec.get("id") if isinstance(rec, dict) else None
                if rec is None and problems and problems[0].record not in ("-", ""):
                    where = f"{where}, {problems[0].record}"  # unreadable input: its line
                rejected.append(Rejected(where, None if rid is None else str(rid), rec, problems))

            lookups: dict = {}
            try:
                with engine.connect() as conn:
                    with conn.begin() as tx:
                        if source.lookups is not None:
                            lookups = load_lookups(conn, source.lookups)
                        report = load_organisations(conn, source.records, on_reject=on_reject, prepare=prepare,
                                                    delete_missing=delete_missing, progress=progress)
                        duration = time.monotonic() - started
                        if dry_run:
                            tx.rollback()
                        else:
                            _record(conn, run_id, "succeeded", report, duration, rejected)
                status = "dry-run" if dry_run else "succeeded"
                if dry_run:
                    with engine.begin() as conn:
                        _record(conn, run_id, "dry-run", report, duration, [])
            except LoadError as exc:  # lookup lists that cannot load: nothing written
                _fail(engine, run_id, str(exc), started)
                raise
            except BaseException as exc:
                _fail(engine, run_id, f"{type(exc).__name__}: {exc}", started)
                raise
        finally:
            guard.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": IMPORT_LOCK})
            guard.commit()
            for item in source.cleanup:
                item.cleanup()
    if status == "succeeded" and after_commit is not None:
        after_commit()
    return ImportResult(run_id, status, report, rejected, lookups, duration)


def _record(conn, run_id: int, status: str, report: OrganisationReport, duration: float, rejected: list[Rejected]) -> None:
    copy_rows(
        conn, "quarantine", ["run_id", "record_id", "location", "record", "problems"],
        ([run_id, r.record_id, r.location,
          None if r.record is None else orjson.dumps(_jsonable(r.record)).decode(),
          orjson.dumps([_problem_json(p) for p in r.problems]).decode()] for r in rejected),
    )
    conn.execute(
        text(
            "UPDATE import_run SET status = :status, finished_at = now(), duration_s = :d, read = :read, "
            "created = :created, updated = :updated, unchanged = :unchanged, deleted = :deleted, "
            "rejected = :rejected, pending = :pending, geocoded = :geocoded WHERE id = :id"
        ),
        {"status": status, "d": duration, "id": run_id, **report.__dict__},
    )


def _fail(engine: Engine, run_id: int, error: str, started: float) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE import_run SET status = 'failed', error = :e, finished_at = now(), duration_s = :d WHERE id = :id"),
            {"e": error[:4000], "d": time.monotonic() - started, "id": run_id},
        )


def refresh_downloads(engine: Engine) -> None:
    """Rebuild the precomputed bulk downloads after the data changed (never on the request path)."""
    from ..downloads import build_downloads

    build_downloads(engine)
