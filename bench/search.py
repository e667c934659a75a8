"""Benchmark of the v1 search scenario "radius 1 km + one category, limit 50".

Usage (the database must be migrated and loaded, e.g. with `bruso load demo --count N`):

    .venv/bin/python bench/search.py --database-url postgresql+psycopg://postgres@127.0.0.1:5433/bruso \
        --connections 8 --duration 15 --label 5k

Starts uvicorn on a loopback port against that database, warms up, drives it with wrk (Debian
package `wrk`, installed when missing) cycling through 200 real points, and reports req/s, p50,
p99 and errors, plus PostgreSQL-side execution time (EXPLAIN ANALYZE) of the same query. Writes
bench/results/<date>-<git sha>-search-<label>.json and prints a Markdown table. Exits 1 on any
non-2xx response.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() != 0:
        sys.exit("wrk is missing: sudo apt-get install -y wrk")
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return shutil.which("wrk") or sys.exit("wrk not installed")


def scenario_paths(url: str, n: int = 200) -> tuple[list[str], int, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        category = conn.execute(text(
            "SELECT oc.category_id FROM organisation_category oc GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")).scalar()
        points = conn.execute(text(
            "SELECT lat, lon FROM organisation WHERE lat IS NOT NULL AND publication_state = 'published' "
            "ORDER BY md5(id::text) LIMIT :n"), {"n": n}).all()
        total = conn.execute(text("SELECT count(*) FROM organisation")).scalar()
    engine.dispose()
    paths = [f"/v1/organisations?near={lat:.5f},{lon:.5f}&radius=1000&category={category}&limit=50" for lat, lon in points]
    return paths, category, total


def postgres_time(url: str, path: str) -> float:
    """Median EXPLAIN ANALYZE execution time (ms) of the statements the search core runs for path."""
    from urllib.parse import parse_qs, urlsplit

    from app.db import make_async_engine
    from app.search.criteria import parse_criteria
    from app.search.explain import explain_search
    from app.settings import Settings

    params = {k: v for k, v in parse_qs(urlsplit(path).query).items() if k != "limit"}

    async def run() -> float:
        engine = make_async_engine(Settings(BRUSO_DATABASE_URL=url))  # the API's own connection settings
        times = []
        async with engine.connect() as conn:
            for _ in range(5):
                _, explained = await explain_search(conn, parse_criteria(params, 50_000), analyze=True)
                times.append(sum(e.execution_ms for e in explained))
        await engine.dispose()
        return statistics.median(times)

    return asyncio.run(run())


def start_server(url: str, port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "BRUSO_DATABASE_URL": url}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "uvicorn"), "app.main:app", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), "--no-access-log", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    sys.exit("server did not become ready")


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(wrk: str, port: int, paths: list[str], connections: int, seconds: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write("local paths = {" + ",".join(json.dumps(p) for p in paths) + "}\n")
        lua.write("local i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format('GET', paths[i])\nend\n")
    out = subprocess.run(
        [wrk, "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", lua.name,
         f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=seconds + 60,
    ).stdout
    os.unlink(lua.name)
    latency = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", out, re.M))
    if not {"50", "99"} <= latency.keys():
        sys.exit(f"wrk reported no latency distribution:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _ms(latency["50"]),
        "p99_ms": _ms(latency["99"]),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "errors": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, socket.groups())) if socket else 0),
        "raw": out,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, default=8077)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--connections", type=int, nargs="+", default=[8])
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--label", default="")
    args = parser.parse_args()

    wrk = ensure_wrk()
    paths, category, total = scenario_paths(args.database_url)
    pg_ms = postgres_time(args.database_url, paths[0])
    server = start_server(args.database_url, args.port, args.workers)
    results = []
    try:
        run_wrk(wrk, args.port, paths, max(args.connections), 3)  # warm-up
        for connections in args.connections:
            result = run_wrk(wrk, args.port, paths, connections, args.duration)
            result["connections"] = connections
            results.append(result)
    finally:
        server.terminate()
        server.wait(timeout=30)

    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    record = {
        "scenario": "v1 search: radius 1 km + one category, limit 50",
        "records": total, "category": category, "workers": args.workers, "duration_s": args.duration,
        "postgres_execution_ms_median": round(pg_ms, 2), "git_sha": sha,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
        "runs": [{k: v for k, v in r.items() if k != "raw"} for r in results],
    }
    name = f"{dt.date.today().isoformat()}-{sha}-search{('-' + args.label) if args.label else ''}.json"
    (ROOT / "bench" / "results" / name).write_text(json.dumps(record, indent=2) + "\n")
    print(f"\n{record['scenario']} — {total} records, {args.workers} worker(s), PostgreSQL {pg_ms:.2f} ms/query\n")
    print("| connections | req/s | p50 ms | p99 ms | requests | errors |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['connections']} | {r['requests_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['requests']} | {r['errors']} |")
    print(f"\nwritten bench/results/{name}")
    if any(r["errors"] for r in results):
        sys.exit("non-2xx responses or socket errors: see above")


if __name__ == "__main__":
    main()
