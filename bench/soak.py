"""Soak run (issue 8): mixed scenarios at 32 connections for ten minutes, loopback only.

    .venv/bin/python bench/soak.py --database-url postgresql+psycopg://postgres@127.0.0.1:5433/bruso_bench_5000

Starts Bruso (1 worker, rate limit off) against an already loaded database, builds a mix of
real request paths (v1 searches and records, legacy records, OGC and HSDS pages, suggest, the
gzip download), runs wrk for ``--duration`` seconds, and reports requests, req/s, latency, non-2xx
and socket errors, and the server's RSS at start and end. Writes bench/results/<date>-<sha>-soak.json.
Exits 1 on any error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from run import free_port, git_sha, rss_mb  # noqa: E402


def mixed_paths(url: str, n: int = 400) -> list[str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, lat, lon, commune_nis FROM organisation WHERE publication_state = 'published' "
            "AND lat IS NOT NULL ORDER BY md5(id::text) LIMIT :n"), {"n": n}).all()
        category = conn.execute(text("SELECT category_id FROM organisation_category GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")).scalar()
        sector = conn.execute(text("SELECT sector_id FROM category_tree GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")).scalar()
    engine.dispose()
    rng = random.Random(7)
    paths = []
    for r in rows:
        paths += [
            f"/v1/organisations/{r.id}",
            f"/rest/organisation/{r.id}",
            f"/v1/organisations?near={r.lat:.5f},{r.lon:.5f}&radius=1000&category={category}&limit=50",
            f"/v1/organisations?commune={r.commune_nis}&sector={sector}&limit=20&lang=fr",
            f"/v1/organisations?q=ocmw&commune={r.commune_nis}&limit=10",
            f"/ogc/collections/organisations/items?limit=20&offset={rng.randrange(0, 2000)}",
            f"/hsds/nl/services?per_page=10&page={rng.randrange(1, 50)}",
            f"/v1/suggest?q={rng.choice(['schaer', 'ocmw', 'anderl', 'crech', 'ixel'])}",
        ]
    paths.append("/downloads/communes.geojson")
    rng.shuffle(paths)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--duration", type=int, default=600)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    port = free_port()
    env = {**os.environ, "BRUSO_DATABASE_URL": args.database_url, "BRUSO_RATE_LIMIT_PER_MINUTE": "0", "BRUSO_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen([str(ROOT / ".venv/bin/uvicorn"), "app.main:app", "--port", str(port), "--no-access-log",
                               "--log-level", "warning"], cwd=ROOT, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/readyz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
            fh.write("\n".join(mixed_paths(args.database_url)))
            paths_file = fh.name
        subprocess.run(["wrk", "-t2", "-c", str(args.connections), "-d10s", "-s", str(ROOT / "bench/lua/paths.lua"), base,
                        "--", paths_file], check=True, capture_output=True)  # warm-up
        rss_start = rss_mb(server.pid)
        out = subprocess.run(["wrk", "-t2", "-c", str(args.connections), f"-d{args.duration}s", "--timeout", "10s", "--latency",
                              "-s", str(ROOT / "bench/lua/paths.lua"), base, "--", paths_file],
                             check=True, capture_output=True, text=True).stdout
        rss_end = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    socket = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    result = {
        "scenario": "soak: mixed v1/rest/ogc/hsds/suggest/download paths", "duration_s": args.duration,
        "connections": args.connections, "requests": requests, "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "non_2xx": non2xx, "socket_errors": socket, "rss_mb_start": round(rss_start, 1), "rss_mb_end": round(rss_end, 1),
        "latency": re.search(r"Latency\s+(.*)", out).group(1), "p99": re.search(r"99%\s+(\S+)", out).group(1),
        "git_sha": git_sha(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    target = ROOT / "bench/results" / f"{dt.date.today()}-{result['git_sha']}-soak.json"
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    sys.exit(1 if non2xx or socket else 0)


if __name__ == "__main__":
    main()
