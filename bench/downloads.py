"""Benchmark: the precomputed GeoJSON download vs the dynamic GeoJSON search page.

    .venv/bin/python bench/downloads.py --database-url postgresql+psycopg://postgres@127.0.0.1:5433/bruso --duration 5
    .venv/bin/python bench/downloads.py --base-url http://127.0.0.1:8000 --duration 5     # a server already running

Scenarios (wrk, loopback, after a 2 s warm-up each, the server drained between runs):
  * ``/downloads/organisations.geojson`` raw, and with ``Accept-Encoding: gzip`` (the stored gzip);
  * ``/v1/organisations?f=geojson&limit=1000`` raw, and with ``Accept-Encoding: gzip`` (compressed per
    request by the middleware).
The two do not return the same amount: the download is the whole directory, the search page at most
1000 records, so records/s and MB/s are printed next to req/s.

With ``--database-url`` it builds the downloads when needed (``build_downloads``, never on the
request path) and starts uvicorn on a loopback port; with ``--base-url`` it only measures. ``--out
FILE`` writes the figures as JSON. Exits 1 on any non-2xx response.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_spec = importlib.util.spec_from_file_location("bench_search", ROOT / "bench" / "search.py")
bench_search = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_search)  # ensure_wrk, start_server, _ms

DOWNLOAD = "/downloads/organisations.geojson"
DYNAMIC = "/v1/organisations?f=geojson&limit=1000"


def run_wrk(wrk: str, base: str, path: str, headers: dict, connections: int, seconds: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(f"local headers = {{{', '.join(f'[{json.dumps(k)}] = {json.dumps(v)}' for k, v in headers.items())}}}\n")
        lua.write(f"request = function() return wrk.format('GET', {json.dumps(path)}, headers) end\n")
    out = subprocess.run(
        [wrk, "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "60s", "--latency",
         "-s", lua.name, base],
        capture_output=True, text=True, timeout=seconds + 60, check=False,
    ).stdout
    os.unlink(lua.name)
    latency = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", out, re.MULTILINE))
    if not {"50", "99"} <= latency.keys():
        sys.exit(f"wrk reported no latency distribution:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", out)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": bench_search._ms(latency["50"]),
        "p99_ms": bench_search._ms(latency["99"]),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "mb_per_s": float(transfer.group(1)) * {"B": 1 / 2**20, "KB": 1 / 2**10, "MB": 1, "GB": 2**10}[transfer.group(2)],
        "errors": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, socket.groups())) if socket else 0),
    }


def drain(base: str, timeout: float = 120) -> None:
    """Wait until the server answers /healthz quickly: the requests wrk left in flight are done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = time.monotonic()
        with urllib.request.urlopen(base + "/healthz", timeout=timeout) as r:
            r.read()
        if time.monotonic() - started < 0.05:
            return
        time.sleep(0.5)


def features(base: str, path: str) -> tuple[int, int]:
    """(features, bytes) of one raw response."""
    with urllib.request.urlopen(urllib.request.Request(base + path, headers={"Accept-Encoding": "identity"}), timeout=60) as r:
        body = r.read()
    return len(json.loads(body)["features"]), len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--database-url", help="start a server against this database (built first if needed)")
    where.add_argument("--base-url", help="measure a server that is already running")
    parser.add_argument("--port", type=int, default=8078)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--connections", type=int, default=4, help="wrk connections for the download")
    parser.add_argument("--dynamic-connections", type=int, default=1,
                        help="wrk connections for the search page (seconds of CPU per request: more only queue)")
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    wrk = bench_search.ensure_wrk()
    server = None
    base = args.base_url.rstrip("/") if args.base_url else f"http://127.0.0.1:{args.port}"
    if args.database_url:
        from sqlalchemy import create_engine

        from app.downloads import build_downloads
        from app.settings import Settings

        engine = create_engine(args.database_url)
        print(build_downloads(engine, settings=Settings(BRUSO_DATABASE_URL=args.database_url)))
        engine.dispose()
        server = bench_search.start_server(args.database_url, args.port, args.workers)
    runs = []
    try:
        sizes = {DOWNLOAD: features(base, DOWNLOAD), DYNAMIC: features(base, DYNAMIC)}
        for path, connections in ((DOWNLOAD, args.connections), (DYNAMIC, args.dynamic_connections)):
            for encoding in ("identity", "gzip"):
                headers = {"Accept-Encoding": encoding}
                run_wrk(wrk, base, path, headers, connections, 2)  # warm-up
                drain(base)
                result = run_wrk(wrk, base, path, headers, connections, args.duration)
                drain(base)
                result.update(path=path, encoding=encoding, connections=connections, features=sizes[path][0],
                              raw_bytes=sizes[path][1])
                result["features_per_s"] = round(result["requests_per_s"] * sizes[path][0])
                runs.append(result)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)

    record = {
        "scenario": "precomputed GeoJSON download vs dynamic /v1 GeoJSON page (limit 1000)",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
        "workers": args.workers if server else None, "duration_s": args.duration,
        "runs": runs,
    }
    print(f"\n{record['scenario']} — {args.duration} s each\n")
    print("| path | encoding | connections | features | raw MB | req/s | features/s | MB/s sent | p50 ms | p99 ms | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        print(f"| `{r['path']}` | {r['encoding']} | {r['connections']} | {r['features']} | {r['raw_bytes'] / 2**20:.1f} | {r['requests_per_s']:.1f} | "
              f"{r['features_per_s']:,} | {r['mb_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} |")
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"\nwritten {args.out}")
    if any(r["errors"] for r in runs):
        sys.exit("non-2xx responses or socket errors: see above")


if __name__ == "__main__":
    main()
