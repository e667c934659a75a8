"""Bruso side by side with tipg: the benchmark harness of issue 7 (see bench/README.md).

    .venv/bin/python bench/run.py                                   # 5k, 1 and 2 workers, 1/8/32 connections, 15 s runs
    .venv/bin/python bench/run.py --sizes 5000,100000,1000000 --duration 15 --rounds 2
    .venv/bin/python bench/run.py --duration 3 --connections 1,8 --rounds 1 --workers 1 --label smoke

For every dataset size: builds (or reuses) the database ``bruso_bench_<size>`` with the demo
generator, refreshes the precomputed downloads, creates the tipg view (bench/tipg/view.sql);
measures PostgreSQL-side time of every scenario (EXPLAIN ANALYZE of each statement one request
sends) and looks for sequential scans; then, for each worker count, starts Bruso, tipg (its own
venv, bench/.venv-tipg) and the raw ceiling (bench/ceiling.py) and drives them with wrk
(bench/lua/paths.lua) on loopback, alternating Bruso / tipg / ceiling runs after a warm-up. Then
measures import throughput with and without geocoding through the local URBIS twin. Writes
bench/results/<date>-<git sha>[-label].json and prints Markdown tables.

Scenarios whose endpoint does not answer 200 yet are reported as "not available"; any non-2xx
answer (or socket error) during a measured run makes the harness exit 1 at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gzip
import hashlib
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

VENV_BIN = Path(sys.executable).parent  # the Bruso venv (run this script with .venv/bin/python)
TIPG_VENV = BENCH / ".venv-tipg"
TIPG_REQUIREMENTS = BENCH / "tipg" / "requirements.txt"
TIPG_VIEW = BENCH / "tipg" / "view.sql"
TIPG_COLLECTION = "bench_tipg.organisations"
LUA = BENCH / "lua" / "paths.lua"
DB_PREFIX = "bruso_bench_"
GENERIC_TIMEOUT_MS = 10_000  # a generic plan slower than this is reported as this
SMALL_TABLE = 1000  # rows: a sequential scan of a smaller table (lookup lists) is not reported as a problem

# Full-text queries of scenario (4): real words of the directory, both languages, one typo.
QUERIES = ["ocmw", "cpas", "creche", "kinderdagverblijf", "sante mentale", "geestelijke gezondheid",
           "schuldbemiddeling", "mediation de dettes", "aide juridique", "maison medicale", "thuiszorg",
           "jeunesse", "kinderdagverblif", "logement"]

log_file = sys.stderr


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=log_file, flush=True)


# ---------------------------------------------------------------- small helpers


def git_sha() -> str:
    """The checked-out commit, read from .git (no git command)."""
    git = ROOT / ".git"
    if git.is_file():  # a worktree: "gitdir: PATH"
        git = Path(git.read_text().split(":", 1)[1].strip())
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head[:7]
        ref = head.split(":", 1)[1].strip()
        for base in (git, Path(str(git).split("/worktrees/")[0])):
            if (base / ref).is_file():
                return (base / ref).read_text().strip()[:7]
            packed = base / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line[:7]
    except OSError:
        pass
    return "nogit"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_db(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


def plain_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def run_timed(cmd: list[str], env: dict | None = None, cwd: Path = ROOT, timeout: float | None = None) -> dict:
    """Run a command; wall time, peak RSS (ru_maxrss of the child), exit code and output."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline and time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read()
    return {"seconds": round(time.perf_counter() - started, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "returncode": proc.returncode, "output": output}


def http_get(url: str, headers: dict | None = None, timeout: float = 60, sink=None) -> tuple[int, bytes, dict]:
    """GET; the body is returned, or streamed into ``sink`` (a binary file) when given."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            if sink is not None and r.status == 200:
                shutil.copyfileobj(r, sink, 1 << 20)
                return r.status, b"", {k.lower(): v for k, v in r.headers.items()}
            return r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, e.read(), {k.lower(): v for k, v in (e.headers or {}).items()}
    except OSError as e:
        return 0, str(e).encode(), {}


def tree_pids(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        p = stack.pop()
        found.append(p)
        stack.extend(children.get(p, []))
    return found


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn's workers), from /proc."""
    total = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


# ---------------------------------------------------------------- tools


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() != 0:
        sys.exit("wrk is missing: sudo apt-get install -y wrk")
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return shutil.which("wrk") or sys.exit("wrk not installed")


def ensure_tipg() -> str:
    """bench/.venv-tipg with the pinned tipg + uvicorn (re-installed when requirements.txt changes)."""
    marker = TIPG_VENV / ".requirements.sha256"
    wanted = hashlib.sha256(TIPG_REQUIREMENTS.read_bytes()).hexdigest()
    python = TIPG_VENV / "bin" / "python"
    if not python.exists() or not marker.exists() or marker.read_text() != wanted:
        say(f"installing tipg into {TIPG_VENV.relative_to(ROOT)}")
        base = shutil.which("python3") or sys.executable
        subprocess.run([base, "-m", "venv", str(TIPG_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(TIPG_REQUIREMENTS)], check=True)
        marker.write_text(wanted)
    return subprocess.run([str(python), "-c", "import tipg; print(tipg.__version__)"], capture_output=True, text=True,
                          check=True).stdout.strip()


# ---------------------------------------------------------------- datasets


def admin_connect(url: str):
    import psycopg

    return psycopg.connect(plain_url(with_db(url, "postgres")), autocommit=True)


def bruso(*args: str, url: str, timeout: float | None = None) -> dict:
    env = {**os.environ, "BRUSO_DATABASE_URL": url, "COLUMNS": "250"}
    return run_timed([str(VENV_BIN / "bruso"), *args], env=env, timeout=timeout)


def check(result: dict, what: str) -> dict:
    if result["returncode"] != 0:
        sys.exit(f"{what} failed (exit {result['returncode']}):\n{result['output'][-3000:]}")
    return result


def ensure_dataset(base_url: str, size: int, seed: int, reload: bool) -> dict:
    """The database bruso_bench_<size>: migrated, ``size`` demo records (reused when already there)."""
    import psycopg

    name = f"{DB_PREFIX}{size}"
    url = with_db(base_url, name)
    info: dict = {"database": name, "records": size, "seed": seed}
    with admin_connect(base_url) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
        if exists and not reload:
            try:
                with psycopg.connect(plain_url(url)) as conn:
                    count = conn.execute("SELECT count(*) FROM organisation").fetchone()[0]
            except psycopg.Error:
                count = -1
            if count == size:
                check(bruso("db", "upgrade", url=url), f"migrating {name}")
                say(f"{name}: reusing ({count} records)")
                info["load"] = "reused"
                return {**info, "url": url}
        if exists:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    check(bruso("db", "upgrade", url=url), f"migrating {name}")
    say(f"{name}: loading {size} demo records (seed {seed})")
    result = check(bruso("load", "demo", "--count", str(size), "--seed", str(seed), url=url), f"loading {name}")
    info["load"] = {"seconds": result["seconds"], "peak_rss_mb": result["peak_rss_mb"],
                    "records_per_s": round(size / result["seconds"], 1)}
    say(f"{name}: loaded in {result['seconds']} s, loader peak RSS {result['peak_rss_mb']} MB")
    with psycopg.connect(plain_url(url), autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        info["vacuum_analyze_s"] = round(time.perf_counter() - started, 2)
    return {**info, "url": url}


def build_downloads(url: str) -> dict:
    """Refresh the precomputed downloads (what an import does after commit); time and peak RSS."""
    code = ("import sys\n"
            "try:\n    from app.downloads import build_downloads\nexcept ImportError as e:\n"
            "    print('UNAVAILABLE', e); sys.exit(3)\n"
            "from app.db import make_sync_engine\nfrom app.settings import Settings\n"
            "engine = make_sync_engine(Settings(BRUSO_DATABASE_URL=sys.argv[1]))\n"
            "print('REPORT', build_downloads(engine))\n")
    result = run_timed([sys.executable, "-c", code, url], env={**os.environ, "BRUSO_DATABASE_URL": url})
    if result["returncode"] == 3:
        return {"available": False, "reason": result["output"].strip()[-300:]}
    if result["returncode"] != 0:
        return {"available": False, "reason": "build failed: " + result["output"].strip()[-1500:]}
    report = next((line[7:] for line in result["output"].splitlines() if line.startswith("REPORT ")), "")
    return {"available": True, "seconds": result["seconds"], "peak_rss_mb": result["peak_rss_mb"], "report": report[:2000]}


def apply_tipg_view(url: str) -> None:
    import psycopg

    with psycopg.connect(plain_url(url), autocommit=True) as conn:
        conn.execute(TIPG_VIEW.read_text())


# ---------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    key: str
    title: str
    paths: list[str]  # Bruso
    tipg_paths: list[str] | None = None
    ceiling: bool = False
    headers: list[str] = field(default_factory=list)
    heavy: bool = False  # one request moves the whole directory
    available: bool = False  # set by the probe of the running server
    reason: str = ""


def scenarios(url: str, sample: int) -> tuple[list[Scenario], dict]:
    import psycopg

    with psycopg.connect(plain_url(url)) as conn:
        q = lambda sql, *a: conn.execute(sql, a).fetchall()  # noqa: E731
        published = q("SELECT count(*) FROM organisation WHERE publication_state = 'published'")[0][0]
        category = q("SELECT oc.category_id FROM organisation_category oc JOIN organisation o ON o.id = oc.organisation_id "
                     "WHERE o.publication_state = 'published' GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")[0][0]
        sectors = [r[0] for r in q(
            "SELECT ct.sector_id FROM organisation_category oc JOIN category_tree ct ON ct.category_id = oc.category_id "
            "GROUP BY 1 ORDER BY count(DISTINCT oc.organisation_id) DESC, 1 LIMIT 3")]
        points = q("SELECT lat, lon FROM organisation WHERE lat IS NOT NULL AND publication_state = 'published' "
                   "ORDER BY md5(id::text) LIMIT %s", sample)
        ids = [r[0] for r in q("SELECT id FROM organisation WHERE publication_state = 'published' "
                               "ORDER BY md5(id::text) LIMIT %s", sample)]
        communes = q("SELECT nis_code, ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b) FROM "
                     "(SELECT nis_code, ST_Extent(ST_Transform(geom, 4326))::geometry AS b FROM commune GROUP BY 1) c ORDER BY 1")
    offsets = sorted({(i * 7919 * 100) % max(published - 100, 1) // 100 * 100 for i in range(min(sample, max(published // 100, 1)))})
    pages = max(1, math.ceil(published / 50))
    hsds_pages = sorted({1 + (i * 7919) % pages for i in range(min(sample, pages))})
    boxes = [(nis, f"{x0:.6f},{y0:.6f},{x1:.6f},{y1:.6f}") for nis, x0, y0, x1, y1 in communes]
    tipg_items = f"/collections/{TIPG_COLLECTION}/items"

    def cql(sector: int) -> str:
        return quote(f"A_CONTAINS(sector_ids,({sector}))", safe="")

    found = [
        Scenario("1-radius", "radius 1 km + one category, limit 50",
                 [f"/v1/organisations?near={lat:.5f},{lon:.5f}&radius=1000&category={category}&limit=50" for lat, lon in points]),
        Scenario("2-bbox-sector", "bbox of one commune + sector, limit 100",
                 [f"/v1/organisations?bbox={box}&sector={s}&limit=100" for s in sectors for _, box in boxes],
                 [f"{tipg_items}?bbox={box}&filter={cql(s)}&filter-lang=cql2-text&limit=100&f=geojson" for s in sectors for _, box in boxes]),
        Scenario("3-by-id", "one record by id",
                 [f"/v1/organisations/{i}" for i in ids],
                 [f"{tipg_items}/{i}?f=geojson" for i in ids], ceiling=True),
        Scenario("4-q-commune", "full text q + commune",
                 [f"/v1/organisations?{urlencode({'q': text, 'commune': nis})}" for text in QUERIES for nis, _ in boxes]),
        Scenario("5-ogc-page", "OGC items page of 100 (offset)",
                 [f"/ogc/collections/organisations/items?limit=100&offset={k}" for k in offsets],
                 [f"{tipg_items}?limit=100&offset={k}&f=geojson" for k in offsets]),
        Scenario("6-download", "full GeoJSON download (gzip)",
                 ["/downloads/organisations.geojson"],
                 [f"{tipg_items}?limit={published}&f=geojson"], ceiling=True, headers=["Accept-Encoding: gzip"], heavy=True),
        Scenario("7-legacy", "legacy /rest/organisation/{id}", [f"/rest/organisation/{i}" for i in ids]),
        Scenario("8-hsds", "HSDS /hsds/fr/services?page=", [f"/hsds/fr/services?page={p}" for p in hsds_pages]),
    ]
    inputs = {"published": published, "category": category, "sectors": sectors, "points": len(points), "ids": len(ids),
              "communes": len(boxes), "offsets": len(offsets), "hsds_pages": len(hsds_pages)}
    return found, inputs


# ---------------------------------------------------------------- PostgreSQL side (EXPLAIN ANALYZE)


def explain_scenarios(url: str, found: list[Scenario], per_scenario: int) -> dict:
    """Serve a few paths of each scenario in process (httpx → the ASGI app), capture every statement
    a request sends to PostgreSQL, EXPLAIN ANALYZE each one: time per request (median over paths),
    statements per request, sequential scans (relation names)."""
    import httpx
    from sqlalchemy import create_engine, event

    from app.main import create_app
    from app.settings import Settings

    # every request must reach the database here: the answer cache off
    settings = Settings(BRUSO_DATABASE_URL=url, rate_limit_per_minute=0, log_level="WARNING", response_cache_mb=0)
    application = create_app(settings)
    explain_engine = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"prepare_threshold": None})
    results: dict = {}

    async def serve_all() -> None:
        async with application.router.lifespan_context(application):
            captured: list = []

            def record(conn, cursor, statement, parameters, context, executemany):
                captured.append((statement, parameters))

            event.listen(application.state.engine.sync_engine, "before_cursor_execute", record)
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                for sc in found:
                    per_request = []
                    status = None
                    for path in sc.paths[: 1 if sc.heavy else per_scenario]:
                        captured.clear()
                        headers = dict(h.split(": ", 1) for h in sc.headers)
                        response = await client.get(path, headers=headers)
                        status = response.status_code
                        if status != 200:
                            break
                        per_request.append(list(captured))
                    results[sc.key] = {"status": status, "requests": per_request}
            event.remove(application.state.engine.sync_engine, "before_cursor_execute", record)

    asyncio.run(serve_all())
    report: dict = {}
    with explain_engine.connect() as conn:
        for key, got in results.items():
            if got["status"] != 200:
                report[key] = {"available": False, "status": got["status"]}
                continue
            totals, seq, statements = [], set(), []
            generic_totals: list[float] = []
            for captured in got["requests"]:
                total = generic_total = 0.0
                for statement, parameters in captured:
                    if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
                        continue
                    try:
                        plan = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters).scalar()[0]
                    except Exception as exc:  # noqa: BLE001 - report, do not stop the benchmark
                        statements.append({"sql": statement[:200], "error": str(exc).splitlines()[0]})
                        continue
                    total += plan["Execution Time"]
                    found_seq = _seq_scans(plan["Plan"])
                    seq.update(found_seq)
                    generic_ms = generic_plan_ms(conn, statement, parameters) if parameters else None
                    generic_total += plan["Execution Time"] if generic_ms is None else generic_ms
                    if captured is got["requests"][0]:
                        statements.append({"sql": " ".join(statement.split())[:160], "ms": round(plan["Execution Time"], 3),
                                           "generic_plan_ms": None if generic_ms is None else round(generic_ms, 3),
                                           "seq_scans": sorted(found_seq)})
                totals.append(total)
                generic_totals.append(generic_total)
            sizes = table_rows(conn)
            report[key] = {
                "available": True,
                "postgres_ms_per_request": round(statistics.median(totals), 3) if totals else None,
                # psycopg prepares a statement after 5 executions on a connection; PostgreSQL may then
                # switch to a generic plan (parameters unknown): its time is what a busy server pays
                "postgres_ms_per_request_generic_plans": round(statistics.median(generic_totals), 3) if generic_totals else None,
                "statements_per_request": round(statistics.mean(len(c) for c in got["requests"]), 1) if got["requests"] else None,
                # lookup tables of a few hundred rows are read whole on purpose; what matters are the big ones
                "seq_scans": sorted(t for t in seq if sizes.get(t, 0) >= SMALL_TABLE),
                "seq_scans_small_tables": sorted(t for t in seq if sizes.get(t, 0) < SMALL_TABLE),
                "statements": statements,
            }
    explain_engine.dispose()
    return report


_GENERIC_TIMED_OUT: set[str] = set()


def generic_plan_ms(conn, statement: str, parameters) -> float | None:
    """Execution time of the statement's generic plan (PREPARE + plan_cache_mode=force_generic_plan),
    the plan PostgreSQL may settle on once psycopg has prepared a statement (after 5 executions
    on one connection). None when the statement cannot be prepared this way."""
    import psycopg

    names: list[str] = []

    def placeholder(match: re.Match) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    if not isinstance(parameters, dict):
        return None
    if statement in _GENERIC_TIMED_OUT:  # do not wait again for the same statement
        return float(GENERIC_TIMEOUT_MS)
    sql = re.sub(r"%\((\w+)\)s", placeholder, statement).replace("%%", "%")
    raw = conn.connection.driver_connection
    prepared = False
    try:
        raw.execute(f"PREPARE bench_generic AS {sql}")
        prepared = True
        raw.execute("SET plan_cache_mode = force_generic_plan")
        raw.execute(f"SET statement_timeout = {GENERIC_TIMEOUT_MS}")
        call = psycopg.ClientCursor(raw).mogrify(
            "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE bench_generic(" + ", ".join(["%s"] * len(names)) + ")",
            [parameters[n] for n in names]) if names else "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE bench_generic"
        plan = raw.execute(call).fetchone()[0]
        return plan[0]["Execution Time"]
    except psycopg.errors.QueryCanceled:
        _GENERIC_TIMED_OUT.add(statement)
        return float(GENERIC_TIMEOUT_MS)  # at least that
    except psycopg.Error:
        return None
    finally:
        raw.execute("RESET plan_cache_mode")
        raw.execute("RESET statement_timeout")
        if prepared:
            raw.execute("DEALLOCATE bench_generic")


def _seq_scans(plan: dict) -> set[str]:
    found, stack = set(), [plan]
    while stack:
        node = stack.pop()
        if node.get("Node Type") == "Seq Scan":
            found.add(node.get("Relation Name") or "?")
        stack.extend(node.get("Plans", []))
    return found


def table_rows(conn) -> dict[str, int]:
    rows = conn.exec_driver_sql("SELECT c.relname, c.reltuples::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                "WHERE c.relkind = 'r' AND n.nspname = 'public'").all()
    return {name: max(int(n), 0) for name, n in rows}


# ---------------------------------------------------------------- servers


class Server:
    def __init__(self, name: str, cmd: list[str], env: dict, cwd: Path, ready_path: str, port: int, workdir: Path):
        self.name, self.port = name, port
        self.log = open(workdir / f"{name}-{port}.log", "w")
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            status, _, _ = http_get(self.base + ready_path, timeout=2)
            if status == 200:
                time.sleep(0.5)  # every worker up
                self.rss_start = rss_mb(self.proc.pid)
                return
            time.sleep(0.3)
        self.stop()
        sys.exit(f"{name} did not become ready; log {self.log.name}:\n{Path(self.log.name).read_text()[-3000:]}")

    def rss(self) -> float:
        return rss_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own process group (start_new_session)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def start_bruso(url: str, workers: int, workdir: Path, log_level: str, response_cache_mb: float | None = None) -> Server:
    port = free_port()
    env = {**os.environ, "BRUSO_DATABASE_URL": url, "BRUSO_RATE_LIMIT_PER_MINUTE": "0", "BRUSO_LOG_LEVEL": log_level}
    if response_cache_mb is not None:
        env["BRUSO_RESPONSE_CACHE_MB"] = str(response_cache_mb)
    cmd = [str(VENV_BIN / "uvicorn"), "app.main:app", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
           "--no-access-log", "--log-level", "warning"]
    return Server("bruso", cmd, env, ROOT, "/readyz", port, workdir)


def start_tipg(url: str, workers: int, workdir: Path, published: int) -> Server:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": plain_url(url),
        "TIPG_DB_SCHEMAS": '["bench_tipg"]',
        "TIPG_DB_SPATIAL_EXTENT": "false",
        "TIPG_DB_DATETIME_EXTENT": "false",
        "TIPG_MAX_FEATURES_PER_QUERY": str(max(10_000, published)),
    }
    cmd = [str(TIPG_VENV / "bin" / "uvicorn"), "tipg.main:app", "--host", "127.0.0.1", "--port", str(port), "--workers",
           str(workers), "--no-access-log", "--log-level", "warning"]
    server = Server("tipg", cmd, env, workdir, "/healthz", port, workdir)
    status, body, _ = http_get(f"{server.base}/collections/{TIPG_COLLECTION}")
    if status != 200:
        server.stop()
        sys.exit(f"tipg does not list {TIPG_COLLECTION} ({status}): {body[:500]!r}")
    return server


def start_ceiling(workers: int, workdir: Path, bodies: Path, probe: str) -> Server:
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "BENCH_CEILING_DIR": str(bodies)}
    cmd = [str(VENV_BIN / "uvicorn"), "ceiling:app", "--app-dir", str(BENCH), "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    return Server("ceiling", cmd, env, workdir, probe, port, workdir)


def ceiling_bodies(bruso_base: str, found: list[Scenario], directory: Path) -> str | None:
    """Fetch from Bruso, once, the bytes of the ceiling scenarios' paths (identity, and gzip for the
    download); the ceiling serves exactly these. Returns a path to probe, None if nothing applies."""
    directory.mkdir(parents=True, exist_ok=True)
    index = {}
    for sc in found:
        if not sc.ceiling or not sc.available:
            continue
        wants_gzip = any(h.lower().startswith("accept-encoding") and "gzip" in h for h in sc.headers)
        for n, path in enumerate(sc.paths):
            # only the encoding the scenario's clients ask for (at 1M the identity GeoJSON is gigabytes)
            target = directory / f"{sc.key}-{n}"
            with open(target, "wb") as out:
                status, _, headers = http_get(bruso_base + path, {"Accept-Encoding": "gzip" if wants_gzip else "identity"},
                                              timeout=3600, sink=out)
            if status != 200:
                continue
            if wants_gzip and headers.get("content-encoding") != "gzip":
                target.write_bytes(gzip.compress(target.read_bytes(), 6))
            index[path] = {"file": target.name, "content_type": headers.get("content-type", "application/octet-stream"),
                           "encoding": "gzip" if wants_gzip else None}
    if not index:
        return None
    (directory / "index.json").write_text(json.dumps(index))
    return next(iter(index))


# ---------------------------------------------------------------- wrk


def _duration_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}[unit]


def _bytes(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([KMGT]?B)", value).groups()
    return float(number) * {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}[unit]


def run_wrk(wrk: str, base: str, paths_file: Path, headers: list[str], connections: int, seconds: float,
            timeout_s: float) -> dict:
    cmd = [wrk, "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
           "--timeout", f"{max(1, round(timeout_s))}s",
           "--latency", "-s", str(LUA), base, "--", str(paths_file), *headers]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + timeout_s + 60)
    out = proc.stdout
    done = re.search(r"(\d+) requests in ([\d.]+\w+), ([\d.]+\w+) read", out)
    if proc.returncode != 0 or not done:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr[-1000:]}\n{out[-1000:]}")
    requests = int(done.group(1))
    latency = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    connect, read, write, timeouts = map(int, sock.groups()) if sock else (0, 0, 0, 0)
    return {
        "requests": requests,
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _duration_ms(latency["50"]) if requests and "50" in latency else None,
        "p99_ms": _duration_ms(latency["99"]) if requests and "99" in latency else None,
        "bytes_per_response": round(_bytes(done.group(3)) / requests) if requests else None,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": connect + read + write,
        "timeouts": timeouts,
    }


def summarise(runs: list[dict]) -> dict:
    """Median over the alternating rounds."""
    def med(key):
        values = [r[key] for r in runs if r.get(key) is not None]
        return round(statistics.median(values), 2) if values else None
    return {
        "requests_per_s": med("requests_per_s"), "p50_ms": med("p50_ms"), "p99_ms": med("p99_ms"),
        "bytes_per_response": med("bytes_per_response"),
        "errors": sum(r["non2xx"] + r["socket_errors"] for r in runs), "timeouts": sum(r["timeouts"] for r in runs),
        "rounds": runs,
    }


# ---------------------------------------------------------------- import throughput


def import_throughput(base_url: str, count: int, seed: int, workdir: Path) -> dict:
    """``bruso import legacy`` of ``count`` generated records into an empty directory, once without
    geocoding and once geocoding every record through the local URBIS twin (cache emptied first)."""
    import psycopg

    name = f"{DB_PREFIX}import"
    url = with_db(base_url, name)
    with admin_connect(base_url) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            admin.execute(f'CREATE DATABASE "{name}"')
    check(bruso("db", "upgrade", url=url), f"migrating {name}")
    with psycopg.connect(plain_url(url)) as conn:
        has_reference = conn.execute("SELECT count(*) FROM address_point").fetchone()[0] > 0
    if not has_reference:
        say(f"{name}: loading the reference layers and lookup lists")
        check(bruso("load", "demo", "--count", "1", url=url), f"loading reference into {name}")
    source = workdir / f"import-{count}.ndjson"
    check(bruso("demo", "generate", "--count", str(count), "--seed", str(seed), "--out", str(source), url=url), "generating")
    report: dict = {"records": count}
    urbis = None
    try:
        for mode in ("none", "all"):
            with psycopg.connect(plain_url(url), autocommit=True) as conn:
                conn.execute("TRUNCATE organisation, geocode_cache CASCADE")
            args = ["import", "legacy", str(source), "--geocode", mode]
            if mode == "all":
                port = free_port()
                urbis = start_urbis(url, port, workdir)
                args += ["--urbis", f"http://127.0.0.1:{port}"]
            say(f"import of {count} records, geocoding {mode}")
            result = bruso(*args, url=url)
            out = result["output"]
            rate = re.search(r"import run \d+: (\S+) in ([\d.]+) s \(([\d,]+) records/s\)", out)
            entry = {"wall_s": result["seconds"], "peak_rss_mb": result["peak_rss_mb"], "exit": result["returncode"]}
            if rate:
                entry.update(status=rate.group(1), import_s=float(rate.group(2)), records_per_s=float(rate.group(3).replace(",", "")))
            else:
                entry["output"] = out[-1500:]
            stats = re.search(r"URBIS: (.*)", out)
            if stats:
                entry["urbis"] = stats.group(1).strip()
            report[f"geocode_{mode}"] = entry
    finally:
        if urbis is not None:
            urbis.stop()
    return report


def start_urbis(url: str, port: int, workdir: Path) -> Server:
    probe = "/Rest/Localize/getaddresses?language=fr&address=Rue+de+la+Loi+16+1000+Bruxelles&spatialReference=31370"
    return Server("urbis", [str(VENV_BIN / "bruso"), "urbis", "serve", "--port", str(port)],
                  {**os.environ, "BRUSO_DATABASE_URL": url}, ROOT, probe, port, workdir)


# ---------------------------------------------------------------- the run


def probe(base: str, paths: list[str], headers: list[str], timeout: float = 600) -> tuple[bool, str, float]:
    """Do the first paths answer 200? Also the slowest answer's time (seconds)."""
    hdrs = dict(h.split(": ", 1) for h in headers)
    slowest = 0.0
    for path in paths[:3]:
        started = time.perf_counter()
        with open(os.devnull, "wb") as devnull:
            status, body, _ = http_get(base + path, hdrs, timeout=timeout, sink=devnull)
        slowest = max(slowest, time.perf_counter() - started)
        if status != 200:
            return False, f"{path} → {status} {body[:200].decode('utf-8', 'replace')}", slowest
    return True, "", slowest


def measure_block(args, wrk: str, dataset: dict, found: list[Scenario], workers: int, workdir: Path, failures: list) -> dict:
    url, published = dataset["url"], dataset["inputs"]["published"]
    say(f"{dataset['database']}: starting Bruso, tipg ({workers} worker(s) each)")
    servers = {"bruso": start_bruso(url, workers, workdir, args.log_level, args.response_cache_mb)}
    if not args.no_tipg:
        servers["tipg"] = start_tipg(url, workers, workdir, published)
    block: dict = {"workers": workers, "scenarios": {}}
    try:
        for sc in found:
            if sc.key not in args.scenario_keys:
                sc.available = False
                continue
            sc.available, sc.reason, _ = probe(servers["bruso"].base, sc.paths, sc.headers)
        bodies_probe = ceiling_bodies(servers["bruso"].base, found, workdir / f"ceiling-{dataset['database']}-{workers}")
        if bodies_probe and not args.no_ceiling:
            servers["ceiling"] = start_ceiling(workers, workdir, workdir / f"ceiling-{dataset['database']}-{workers}", bodies_probe)
        block["rss_start_mb"] = {k: s.rss_start for k, s in servers.items()}

        for sc in found:
            if sc.key not in args.scenario_keys:
                continue
            entry: dict = {"title": sc.title}
            block["scenarios"][sc.key] = entry
            if not sc.available:
                entry["available"] = False
                entry["reason"] = sc.reason
                say(f"  ({sc.key}) not available: {sc.reason}")
                continue
            targets = {"bruso": sc.paths}
            # Heavy scenario (the whole directory per request): runs last long enough for a few
            # answers of the slowest server; tipg builds the whole collection in memory, so above
            # --tipg-full-max records it is not asked at all.
            slowest = {"bruso": 0.0}
            if sc.tipg_paths and "tipg" in servers:
                if sc.heavy and published > args.tipg_full_max:
                    entry["tipg_unavailable"] = f"not run above --tipg-full-max={args.tipg_full_max} records"
                else:
                    ok, reason, slowest["tipg"] = probe(servers["tipg"].base, sc.tipg_paths, sc.headers,
                                                        timeout=args.heavy_max_s if sc.heavy else 60)
                    if ok and sc.heavy and slowest["tipg"] * 3 > args.heavy_max_s:
                        entry["tipg_unavailable"] = f"one request takes {slowest['tipg']:.0f} s (> --heavy-max-s / 3)"
                    elif ok:
                        targets["tipg"] = sc.tipg_paths
                    else:
                        entry["tipg_unavailable"] = reason
                        failures.append(f"{dataset['database']} w{workers} {sc.key} tipg probe: {reason}")
            if sc.ceiling and "ceiling" in servers:
                targets["ceiling"] = sc.paths
            files = {}
            for target, paths in targets.items():
                files[target] = workdir / f"paths-{sc.key}-{target}.txt"
                files[target].write_text("\n".join(paths) + "\n")
            worst = max(slowest.get(t, 0.0) for t in targets)
            duration = max(args.duration, math.ceil(worst * 3)) if sc.heavy else args.duration
            timeout_s = max(10.0, worst * 3, duration) if sc.heavy else 10.0
            entry["duration_s"] = duration
            for target in targets:  # warm-up, not recorded
                run_wrk(wrk, servers[target].base, files[target], sc.headers, max(args.connections),
                        max(args.warmup, math.ceil(worst * 2)) if sc.heavy else args.warmup, timeout_s)
            entry["available"] = True
            entry["runs"] = {}
            for connections in args.connections:
                rounds: dict[str, list] = {t: [] for t in targets}
                for r in range(args.rounds):
                    for target in targets:  # A/B(/C) alternation: Bruso, tipg, ceiling, Bruso, ...
                        result = run_wrk(wrk, servers[target].base, files[target], sc.headers, connections, duration, timeout_s)
                        result["rss_mb"] = servers[target].rss()
                        rounds[target].append(result)
                        bad = result["non2xx"] + result["socket_errors"]  # timeouts are reported, not failures
                        if bad:
                            statuses = _statuses(servers[target].base, files[target], sc.headers)
                            failures.append(f"{dataset['database']} w{workers} {sc.key} {target} c{connections}: "
                                            f"{result['non2xx']} non-2xx, {result['socket_errors']} socket errors, "
                                            f"{result['timeouts']} timeouts; sample statuses {statuses}")
                            say(f"  !!! {failures[-1]}")
                summary = {t: summarise(v) for t, v in rounds.items()}
                b = summary["bruso"]["requests_per_s"]
                if "tipg" in summary and summary["tipg"]["requests_per_s"]:
                    summary["bruso_over_tipg"] = round(b / summary["tipg"]["requests_per_s"], 2)
                if "ceiling" in summary and summary["ceiling"]["requests_per_s"]:
                    summary["bruso_over_ceiling"] = round(b / summary["ceiling"]["requests_per_s"], 3)
                entry["runs"][str(connections)] = summary
                say(f"  ({sc.key}) c={connections}: " + ", ".join(
                    f"{t} {s['requests_per_s']} req/s p50 {s['p50_ms']} p99 {s['p99_ms']}" for t, s in summary.items()
                    if isinstance(s, dict)))
        block["rss_end_mb"] = {k: s.rss() for k, s in servers.items()}
    finally:
        for server in servers.values():
            server.stop()
    return block


def _statuses(base: str, paths_file: Path, headers: list[str]) -> dict:
    counts: dict = {}
    for path in paths_file.read_text().split()[:20]:
        status, _, _ = http_get(base + path, dict(h.split(": ", 1) for h in headers), timeout=120)
        counts[status] = counts.get(status, 0) + 1
    return counts


def markdown(record: dict) -> str:
    lines = []
    fmt = lambda v, spec: "–" if v is None else format(v, spec)  # noqa: E731
    for ds in record["datasets"]:
        lines.append(f"\n### {ds['records']:,} records ({ds['inputs']['published']:,} published) — "
                     f"load: {ds['load'] if isinstance(ds['load'], str) else str(ds['load']['seconds']) + ' s'}")
        for block in ds["blocks"]:
            lines.append(f"\n**{block['workers']} worker(s)**, {record['duration_s']} s × {record['rounds']} round(s), "
                         f"RSS start/end MB: " + ", ".join(f"{k} {block['rss_start_mb'].get(k)}/{block.get('rss_end_mb', {}).get(k)}"
                                                            for k in block.get("rss_start_mb", {})) + "\n")
            lines.append("| scenario | conns | Bruso req/s | p50 ms | p99 ms | err | tipg req/s | p50 ms | p99 ms | err "
                         "| ceiling req/s | Bruso/tipg | Bruso/ceiling | KB/resp Bruso, tipg | PG ms/req custom / generic plans | seq scans |")
            lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
            notes = []
            for key, sc in block["scenarios"].items():
                pg = ds["explain"].get(key, {})
                pg_ms = pg.get("postgres_ms_per_request")
                pg_generic = pg.get("postgres_ms_per_request_generic_plans")
                seq = ",".join(pg.get("seq_scans", [])) or ("none" if pg.get("available") else "–")
                if not sc.get("available"):
                    lines.append(f"| ({key}) {sc['title']} | | not available | | | | | | | | | | | | | |")
                    notes.append(f"({key}) not available: {sc.get('reason', '')[:160]}")
                    continue
                if sc.get("tipg_unavailable"):
                    notes.append(f"({key}) tipg: {sc['tipg_unavailable'][:160]}")
                if sc.get("duration_s") != record["duration_s"]:
                    notes.append(f"({key}) runs of {sc.get('duration_s')} s (slow single requests)")
                for conns, run in sc["runs"].items():
                    b, t, c = run["bruso"], run.get("tipg"), run.get("ceiling")
                    kb = lambda x: "–" if not x or x.get("bytes_per_response") is None else f"{x['bytes_per_response'] / 1024:.1f}"  # noqa: E731
                    lines.append(
                        f"| ({key}) | {conns} | {fmt(b['requests_per_s'], '.0f')} | {fmt(b['p50_ms'], '.1f')} | {fmt(b['p99_ms'], '.1f')} "
                        f"| {b['errors']} | {fmt(t and t['requests_per_s'], '.1f')} | {fmt(t and t['p50_ms'], '.1f')} "
                        f"| {fmt(t and t['p99_ms'], '.1f')} | {'–' if not t else t['errors'] + t['timeouts']} "
                        f"| {fmt(c and c['requests_per_s'], '.0f')} | {fmt(run.get('bruso_over_tipg'), '.2f')} "
                        f"| {fmt(run.get('bruso_over_ceiling'), '.1%')} | {kb(b)}, {kb(t)} | {fmt(pg_ms, '.2f')} / {fmt(pg_generic, '.2f')} | {seq} |")
            if notes:
                lines.append("\n" + "\n".join(f"* {n}" for n in notes))
    imp = record.get("import")
    if imp:
        lines.append(f"\n### Import of {imp['records']:,} generated records (`bruso import legacy`)\n")
        lines.append("| geocoding | records/s | import s | wall s (+ downloads) | peak RSS MB |")
        lines.append("|---|---:|---:|---:|---:|")
        for mode in ("none", "all"):
            e = imp.get(f"geocode_{mode}", {})
            lines.append(f"| {mode}{' (URBIS twin)' if mode == 'all' else ''} | {fmt(e.get('records_per_s'), '.0f')} "
                         f"| {fmt(e.get('import_s'), '.1f')} | {fmt(e.get('wall_s'), '.1f')} | {fmt(e.get('peak_rss_mb'), '.0f')} |")
    for ds in record["datasets"]:
        d = ds.get("downloads", {})
        if d.get("available"):
            lines.append(f"\nDownloads build at {ds['records']:,}: {d['seconds']} s, peak RSS {d['peak_rss_mb']} MB")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    parser.add_argument("--database-url", default=os.environ.get("BRUSO_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5433/postgres"),
                        help="server to use; bench databases bruso_bench_<size> are created there")
    parser.add_argument("--sizes", type=ints, default=[5000], help="dataset sizes, e.g. 5000,100000,1000000")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reload", action="store_true", help="rebuild the datasets even when present")
    parser.add_argument("--workers", type=ints, default=[1, 2])
    parser.add_argument("--connections", type=ints, default=[1, 8, 32])
    parser.add_argument("--duration", type=float, default=15, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per scenario and server")
    parser.add_argument("--rounds", type=int, default=2, help="alternating Bruso/tipg/ceiling rounds per point")
    parser.add_argument("--scenarios", default="1,2,3,4,5,6,7,8", help="scenario numbers to run")
    parser.add_argument("--sample", type=int, default=200, help="distinct points / ids / pages cycled per scenario")
    parser.add_argument("--explain-paths", type=int, default=5, help="paths per scenario EXPLAIN ANALYZEd")
    parser.add_argument("--import-count", type=int, default=2000, help="records imported for the throughput figure (0: skip)")
    parser.add_argument("--tipg-full-max", type=int, default=100_000,
                        help="scenario (6) on tipg only up to this many published records (it builds the whole answer in memory)")
    parser.add_argument("--heavy-max-s", type=float, default=300, help="longest single request accepted in scenario (6)")
    parser.add_argument("--explain-only", action="store_true", help="build the first dataset, print the EXPLAIN report, stop")
    parser.add_argument("--no-tipg", action="store_true")
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument("--log-level", default="INFO", help="BRUSO_LOG_LEVEL of the measured server (INFO: access log on, as deployed)")
    parser.add_argument("--response-cache-mb", type=float, default=None,
                        help="BRUSO_RESPONSE_CACHE_MB of the measured server (default: as deployed, 64; 0: every request "
                        "queries the database)")
    parser.add_argument("--label", default="", help="appended to the result file name")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    wanted = {s.strip() for s in args.scenarios.split(",")}
    args.scenario_keys = {k for k in ("1-radius", "2-bbox-sector", "3-by-id", "4-q-commune", "5-ogc-page", "6-download",
                                      "7-legacy", "8-hsds") if k.split("-")[0] in wanted}

    wrk = ensure_wrk()
    tipg_version = None if args.no_tipg else ensure_tipg()
    sha = git_sha()
    started = time.time()
    failures: list[str] = []
    record: dict = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "git_sha": sha, "label": args.label,
        "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(), "tipg": tipg_version,
        "duration_s": args.duration, "warmup_s": args.warmup, "rounds": args.rounds, "connections": args.connections,
        "workers": args.workers, "log_level": args.log_level, "response_cache_mb": args.response_cache_mb, "datasets": [],
    }
    workdir = Path(tempfile.mkdtemp(prefix="bruso-bench-"))
    try:
        for size in args.sizes:
            dataset = ensure_dataset(args.database_url, size, args.seed, args.reload)
            if "6-download" in args.scenario_keys:  # only (6) serves them (at 1M the build takes over 10 min)
                say(f"{dataset['database']}: refreshing the precomputed downloads")
                dataset["downloads"] = build_downloads(dataset["url"])
            else:
                dataset["downloads"] = {"available": False, "reason": "not built: scenario (6) not selected"}
            apply_tipg_view(dataset["url"])
            found, dataset["inputs"] = scenarios(dataset["url"], args.sample)
            found = [sc for sc in found if sc.key in args.scenario_keys]
            say(f"{dataset['database']}: EXPLAIN ANALYZE of every scenario")
            dataset["explain"] = explain_scenarios(dataset["url"], found, args.explain_paths)
            for key, e in dataset["explain"].items():
                if e.get("seq_scans"):
                    say(f"  ({key}) sequential scan on {', '.join(e['seq_scans'])}")
            if args.explain_only:
                print(json.dumps(dataset["explain"], indent=1))
                return
            dataset["blocks"] = [measure_block(args, wrk, dataset, found, w, workdir, failures) for w in args.workers]
            dataset.pop("url")
            record["datasets"].append(dataset)
        if args.import_count:
            record["import"] = import_throughput(args.database_url, args.import_count, args.seed + 1, workdir)
    finally:
        record["elapsed_s"] = round(time.time() - started)
        record["load_average_at_end"] = os.getloadavg()
        record["failures"] = failures
        args.out.mkdir(parents=True, exist_ok=True)
        stem = f"{dt.date.today().isoformat()}-{sha}{('-' + args.label) if args.label else ''}"
        path, n = args.out / f"{stem}.json", 1
        while path.exists():
            n += 1
            path = args.out / f"{stem}-{n}.json"
        path.write_text(json.dumps(record, indent=1, default=str) + "\n")
        shutil.rmtree(workdir, ignore_errors=True)
    print(markdown(record))
    print(f"\nwritten {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    if failures:
        print("\nFAILED — errors during measured runs:\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
