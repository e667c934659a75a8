"""Fault tests: PostgreSQL stopped and started again under load, restarted while the pool is
idle, a table locked, backends terminated, SIGTERM with requests in flight.

They run on a throwaway cluster of their own (``own_cluster``: initdb as postgres in a temporary
directory, a free port, sockets in /tmp; ≈ 1–2 s) — the shared cluster on 5433 is never stopped
(``test_engine_replaces_connections_ended_by_the_server`` only terminates its own backends there).
"""

from __future__ import annotations

import collections
import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import httpx
import psycopg
import pytest
from alembic import command
from sqlalchemy import create_engine, text

from app.settings import Settings
from tests.conftest import (
    LEGACY_DIR,
    REFERENCE_DIR,
    ROOT,
    alembic_config,
    free_port,
    serve_in_thread,
)

PG_BIN = Path(max(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)))


def _as_postgres(*args: str, **kw) -> subprocess.CompletedProcess:
    cmd = list(args)
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


@dataclass
class Cluster:
    """A private PostgreSQL cluster: ``start()``, ``stop()``, ``url(db)``."""

    root: Path
    port: int
    options: str = ""
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.data = self.root / "data"
        self.log = self.root / "server.log"

    def init(self) -> None:
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                     "--locale=C.UTF-8", "--no-sync")

    def start(self) -> None:
        opts = (f"-p {self.port} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                f"-c full_page_writes=off -c jit=off -c shared_buffers=32MB -c max_connections=60 {self.options}")
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def running(self) -> bool:
        cmd = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, check=False).returncode == 0

    def admin_url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def url(self, db: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def own_cluster(**kw) -> Iterator[Cluster]:
    """A throwaway cluster (initdb + start ≈ 1–2 s), stopped and deleted afterwards."""
    root = Path(tempfile.mkdtemp(prefix="bruso-pg-", dir="/tmp"))
    pg = pwd.getpwnam("postgres")
    if os.geteuid() == 0:
        os.chown(root, pg.pw_uid, pg.pw_gid)
    cluster = Cluster(root, free_port(), **kw)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            if cluster.running():
                cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def demo_records(count: int, seed: int = 5) -> list[dict]:
    from app.demo import iter_records

    return [r for r in iter_records(count + 1, seed, REFERENCE_DIR) if r["id"] != 13219][:count]


def load_directory(url: str, count: int) -> list[int]:
    """Migrate, load the reference layers, the 2019 lookups and ``count`` demo records; returns the
    published ids."""
    from app.loaders.legacy import load_lookups, load_organisations
    from app.loaders.reference import load_reference

    command.upgrade(alembic_config(url), "head")
    records = demo_records(count)
    eng = create_engine(url)
    try:
        with eng.begin() as conn:
            load_reference(conn, REFERENCE_DIR)
            load_lookups(conn, LEGACY_DIR)
            load_organisations(conn, (("demo", r) for r in records))
            published = conn.execute(text("SELECT id FROM organisation WHERE publication_state = 'published' ORDER BY id"))
            return [row[0] for row in published]
    finally:
        eng.dispose()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with own_cluster() as c:
        yield c


# ---------------------------------------------------------------- PostgreSQL outage under load


@dataclass
class Shot:
    t: float  # monotonic start
    latency: float
    status: int  # 0 = transport error
    path: str
    content_type: str = ""
    retry_after: str | None = None
    error: str = ""


class Load:
    """``workers`` threads, each with its own httpx client, firing requests back to back."""

    def __init__(self, base: str, ids: list[int], workers: int = 3, timeout: float = 10.0):
        self.base, self.ids, self.workers, self.timeout = base, ids, workers, timeout
        self.shots: list[Shot] = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def _run(self, n: int) -> None:
        with httpx.Client(base_url=self.base, timeout=self.timeout) as client:
            i = n
            while not self.stop_event.is_set():
                i += 1
                path = ("/v1/organisations?limit=5&commune=21015" if i % 3 == 0 else
                        "/v1/organisations?limit=10" if i % 3 == 1 else f"/v1/organisations/{self.ids[i % len(self.ids)]}")
                t0 = time.monotonic()
                try:
                    r = client.get(path)
                    shot = Shot(t0, time.monotonic() - t0, r.status_code, path, r.headers.get("content-type", ""),
                                r.headers.get("retry-after"))
                except httpx.HTTPError as exc:
                    shot = Shot(t0, time.monotonic() - t0, 0, path, error=repr(exc))
                with self.lock:
                    self.shots.append(shot)
                time.sleep(0.01)  # be gentle with the 2 shared cores

    def __enter__(self) -> Self:
        for n in range(self.workers):
            t = threading.Thread(target=self._run, args=(n,), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(15)

    def between(self, start: float, end: float = float("inf")) -> list[Shot]:
        with self.lock:
            return [s for s in self.shots if start <= s.t < end]


@dataclass
class Served:
    cluster: Cluster
    base: str
    ids: list[int]


@pytest.fixture(scope="module")
def served(cluster: Cluster) -> Iterator[Served]:
    """The real app (uvicorn in a thread) on the private cluster: migrated, reference layers,
    2019 lookups and 50 demo records."""
    from app.main import create_app

    url = cluster.create_database("bruso_outage")
    ids = load_directory(url, 50)
    settings = Settings(BRUSO_DATABASE_URL=url, reference_dir=REFERENCE_DIR, public_base_url="http://testserver",
                        pool_size=4, rate_limit_per_minute=0, log_level="ERROR")
    with serve_in_thread(create_app(settings)) as base:
        yield Served(cluster, base, ids)


def test_postgres_outage_fails_fast_with_503_and_recovers_without_restart(served: Served, capsys):
    """3 clients fire back to back at /v1/organisations and /v1/organisations/{id}; PostgreSQL is
    stopped (fast: sessions killed mid-query) for 3 s, then started again."""
    cluster, base, ids = served.cluster, served.base, served.ids
    with httpx.Client(base_url=base, timeout=10) as probe:
        assert probe.get("/readyz").status_code == 200
        with Load(base, ids) as load:
            time.sleep(1.5)
            t_stop = time.monotonic()
            cluster.stop("fast")
            t_stopped = time.monotonic()
            time.sleep(3.0)
            ready = probe.get("/readyz")
            health = probe.get("/healthz")
            t_start = time.monotonic()
            cluster.start()
            t_started = time.monotonic()

            deadline = t_started + 20
            first_ok = None
            while first_ok is None and time.monotonic() < deadline:
                oks = [s for s in load.between(t_started) if s.status == 200]
                first_ok = min((s.t + s.latency for s in oks), default=None)
                time.sleep(0.05)
            assert first_ok is not None, "the service did not recover within 20 s"
            settled = time.monotonic() + 1.0  # a short settle window, then 2 s that must be all 200
            time.sleep(3.0)
            after = load.between(settled)
            ready_after = probe.get("/readyz")

    shots = load.between(0)
    before = [s for s in shots if s.t + s.latency < t_stop]
    during = [s for s in shots if t_stopped <= s.t < t_start]  # issued while PostgreSQL was down
    transition = [s for s in shots if s.t < t_stopped and s.t + s.latency > t_stop]  # in flight at the stop
    overlapping = [s for s in shots if s.t < t_start and s.t + s.latency > t_stop]
    max_latency = max(s.latency for s in overlapping)
    recovery = first_ok - t_started
    with capsys.disabled():
        print(f"\n[outage] {len(before)} requests before; in flight at the stop {len(transition)} "
              f"{sorted(collections.Counter(s.status for s in transition).items())}; {len(during)} during the outage "
              f"{sorted(collections.Counter(s.status for s in during).items())}, max latency "
              f"{max_latency * 1000:.0f} ms (p50 {sorted(s.latency for s in during)[len(during) // 2] * 1000:.0f} ms); "
              f"pg_ctl stop {(t_stopped - t_stop) * 1000:.0f} ms, start {(t_started - t_start) * 1000:.0f} ms; "
              f"first 200 {recovery * 1000:.0f} ms after the restart; after settling {len(after)} requests "
              f"{sorted(collections.Counter(s.status for s in after).items())}")

    assert before and all(s.status == 200 for s in before), {(s.status, s.path, s.error) for s in before if s.status != 200}
    assert during, "no request was issued during the outage"
    assert all(s.status == 503 for s in during), [(s.status, s.path, s.error) for s in during if s.status != 503][:5]
    assert all(s.content_type == "application/problem+json" and s.retry_after for s in during)
    # killed mid-query: answered (200 or 503), never a reset connection or a 500
    assert all(s.status in (200, 503) for s in transition), [(s.status, s.path, s.error) for s in transition]
    assert max_latency <= 1.0, f"slowest request during the outage took {max_latency:.2f} s"
    assert ready.status_code == 503 and ready.headers["content-type"] == "application/problem+json"
    assert "retry-after" in ready.headers
    assert health.status_code == 200
    assert after and all(s.status == 200 for s in after), sorted({(s.status, s.path, s.error) for s in after if s.status != 200})[:5]
    assert ready_after.status_code == 200
    assert recovery < 5.0


def _concurrently(base: str, paths: list[str]) -> list[tuple[int | str, float]]:
    out: list = [None] * len(paths)

    def one(i: int, path: str) -> None:
        t0 = time.monotonic()
        try:
            out[i] = (httpx.get(base + path, timeout=10).status_code, time.monotonic() - t0)
        except httpx.HTTPError as exc:
            out[i] = (repr(exc), time.monotonic() - t0)

    threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return out


def test_restart_while_idle_costs_no_request(served: Served, capsys):
    """Pooled connections killed by a restart while no request ran: the next requests must not
    be the ones that discover it (no 503 after the database is back)."""
    paths = [f"/v1/organisations/{i}" for i in served.ids[:4]] + ["/v1/organisations?limit=3"] * 4
    warm = _concurrently(served.base, paths)  # fills the pool with several connections
    assert all(s == 200 for s, _ in warm), warm
    served.cluster.stop("fast")
    served.cluster.start()
    after = _concurrently(served.base, paths)
    sequential = [httpx.get(served.base + p, timeout=10).status_code for p in paths]
    with capsys.disabled():
        print(f"\n[idle restart] concurrent after restart: {[s for s, _ in after]} "
              f"(max {max(t for _, t in after) * 1000:.0f} ms); then sequential {sequential}")
    assert all(s == 200 for s, _ in after), after
    assert all(s == 200 for s in sequential), sequential


def test_locked_table_sheds_load_with_503_not_a_pile_up(served: Served, capsys):
    """A table locked (a long migration, a stuck transaction): requests end with 503 after the
    statement timeout or the pool timeout, never queue for ever, and the service is back when the
    lock goes."""
    from app.main import create_app

    settings = Settings(BRUSO_DATABASE_URL=served.cluster.url("bruso_outage"), reference_dir=REFERENCE_DIR,
                        pool_size=1, pool_timeout_s=0.5, statement_timeout_ms=1000, rate_limit_per_minute=0,
                        log_level="ERROR")
    paths = [f"/v1/organisations/{i}" for i in served.ids[:6]]
    with serve_in_thread(create_app(settings)) as base:
        assert httpx.get(base + paths[0], timeout=10).status_code == 200
        with psycopg.connect(served.cluster.admin_url("bruso_outage")) as locker:
            locker.execute("LOCK TABLE organisation IN ACCESS EXCLUSIVE MODE")
            shots: list = [None] * len(paths)

            def one(i: int) -> None:
                t0 = time.monotonic()
                r = httpx.get(base + paths[i], timeout=20)
                shots[i] = (r.status_code, r.headers.get("content-type"), r.headers.get("retry-after"),
                            r.json().get("detail"), time.monotonic() - t0)

            threads = [threading.Thread(target=one, args=(i,)) for i in range(len(paths))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            locker.rollback()
        after = [httpx.get(base + p, timeout=10).status_code for p in paths]
    with capsys.disabled():
        print(f"\n[locked] {[(s[0], s[3], round(s[4], 2)) for s in shots]}; after the lock: {after}")
    assert all(s[0] == 503 and s[1] == "application/problem+json" and s[2] for s in shots), shots
    assert {s[3] for s in shots} <= {"the query took too long", "the service is busy; retry shortly"}
    assert "the query took too long" in {s[3] for s in shots}
    assert max(s[4] for s in shots) < 5.0
    assert after == [200] * len(paths)


def test_engine_replaces_connections_ended_by_the_server():
    """The two guards of app/db.py, deterministically (shared cluster, only our own backends):
    releasing a connection whose backend was terminated raises nothing, and a pooled connection
    ended while idle is replaced at checkout instead of failing the next query."""
    import asyncio

    from app.db import _lost, make_async_engine
    from tests.conftest import ADMIN_URL

    settings = Settings(BRUSO_DATABASE_URL=ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=2)

    def terminate(pid: int) -> None:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        time.sleep(0.1)  # the FATAL message and EOF reach the client socket

    async def scenario() -> dict:
        engine = make_async_engine(settings)
        try:
            # 1. terminated while checked out, after its last query: leaving the block is not an error
            async with engine.connect() as conn:
                pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                terminate(pid)
            # 2. the dead connection went back to the pool; the next checkout gets a live one
            async with engine.connect() as conn:
                pid2 = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                raw = await conn.get_raw_connection()
                alive_check = _lost(raw.dbapi_connection)
            # 3. terminated while idle in the pool: replaced at checkout, the query succeeds
            terminate(pid2)
            async with engine.connect() as conn:
                pid3 = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            # cost of the check on a live connection
            async with engine.connect() as conn:
                raw = (await conn.get_raw_connection()).dbapi_connection
                t0 = time.perf_counter()
                for _ in range(10_000):
                    _lost(raw)
                cost = (time.perf_counter() - t0) / 10_000
            return {"pids": (pid, pid2, pid3), "lost_on_live": alive_check, "cost_us": cost * 1e6}
        finally:
            await engine.dispose()

    out = asyncio.run(scenario())
    pid, pid2, pid3 = out["pids"]
    assert pid2 != pid and pid3 != pid2
    assert out["lost_on_live"] is False
    print(f"\n[engine] liveness check at checkout: {out['cost_us']:.1f} µs")
    assert out["cost_us"] < 100


# ---------------------------------------------------------------- SIGTERM under load


def test_sigterm_lets_in_flight_requests_finish(served: Served, capsys):
    """8 requests in flight (3 slow XLSX exports of every record), SIGTERM: every one completes with
    200, new connections are refused, the process ends after a complete graceful shutdown.

    uvicorn ≥ 0.29 re-raises the captured SIGTERM once its graceful shutdown is complete, so the
    exit status is -SIGTERM (143 in a shell), not 0: accepted here when uvicorn logged the end of
    its shutdown ("Application shutdown complete", "Finished server process")."""
    from app.loaders.legacy import load_organisations

    url = served.cluster.url("bruso_outage")  # the module's directory, grown to 300 records
    eng = create_engine(url)
    with eng.begin() as conn:
        load_organisations(conn, (("demo", r) for r in demo_records(300)))
    eng.dispose()
    port = free_port()
    env = {**os.environ, "BRUSO_DATABASE_URL": url, "BRUSO_REFERENCE_DIR": str(REFERENCE_DIR),
           "BRUSO_RATE_LIMIT_PER_MINUTE": "0", "BRUSO_LOG_LEVEL": "WARNING",
           "BRUSO_RESPONSE_CACHE_MB": "0"}  # the exports must really run again while SIGTERM arrives
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port),
         "--timeout-graceful-shutdown", "20", "--log-level", "info", "--no-access-log"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() is not None else "no start"
            time.sleep(0.1)
        slow = "/v1/organisations?limit=1000&f=xlsx"
        paths = [slow, slow, slow, "/v1/organisations?limit=1000&f=csv", "/v1/organisations?limit=1000",
                 "/v1/organisations?limit=200&f=geojson", "/rest/sectors", "/v1/organisations?q=ocmw"]
        # one export alone, and how long it blocks the event loop (/healthz answered meanwhile)
        with httpx.Client(base_url=base, timeout=30) as c1, httpx.Client(base_url=base, timeout=30) as c2:
            c2.get("/healthz")
            box: dict = {}
            t_slow = time.monotonic()
            lone = threading.Thread(target=lambda: box.update(r=c1.get(slow)))
            lone.start()
            healthz_during_export = 0.0
            while lone.is_alive():  # the slowest /healthz answer while the export runs
                t_h = time.monotonic()
                c2.get("/healthz")
                healthz_during_export = max(healthz_during_export, time.monotonic() - t_h)
                time.sleep(0.02)
            lone.join(30)
            slow_time = time.monotonic() - t_slow
        results: list = [None] * len(paths)
        started = threading.Barrier(len(paths) + 1)

        def fire(i: int, path: str) -> None:
            with httpx.Client(base_url=base, timeout=60) as c:
                c.get("/healthz")  # connected beforehand: the request itself is one send
                started.wait()
                t0 = time.monotonic()
                try:
                    r = c.get(path)
                    results[i] = (r.status_code, len(r.content), time.monotonic() - t0)
                except httpx.HTTPError as exc:
                    results[i] = ("error", repr(exc), time.monotonic() - t0)

        threads = [threading.Thread(target=fire, args=(i, p)) for i, p in enumerate(paths)]
        for t in threads:
            t.start()
        started.wait()
        time.sleep(0.5)  # every request received; the exports still being answered
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        exit_time = time.monotonic() - t_term
        for t in threads:
            t.join(30)
        with pytest.raises(httpx.ConnectError):  # the listening socket is gone
            httpx.get(f"{base}/healthz", timeout=1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = proc.stdout.read()
    with capsys.disabled():
        print(f"\n[sigterm] one 300-row XLSX alone {slow_time * 1000:.0f} ms, slowest /healthz meanwhile "
              f"{healthz_during_export * 1000:.0f} ms; exit status {code} {exit_time * 1000:.0f} ms after SIGTERM; "
              "in flight: " + ", ".join(f"{p.split('/')[-1][:30]}→{r[0]} ({r[2] * 1000:.0f} ms)" for p, r in zip(paths, results)))
    assert box["r"].status_code == 200
    assert all(r is not None and r[0] == 200 for r in results), (results, output)
    assert max(r[2] for r in results) > 0.5, "no request was still in flight at SIGTERM"
    assert code in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output and "Finished server process" in output, output
    assert exit_time < 20
