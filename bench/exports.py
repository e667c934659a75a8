"""Benchmark: server memory while the whole directory streams out (issue 7: "streaming exports of
1,000,000 records with server RSS growth ≤ 200 MB").

    .venv/bin/python bench/exports.py --size 1000000              # bruso_bench_1000000, built by bench/run.py
    .venv/bin/python bench/exports.py --database-url postgresql+psycopg://postgres@127.0.0.1:5433/bruso --workers 1,2

For each worker count: starts Bruso (as deployed: answer and download caches on) on the dataset,
sends one small request per worker, then downloads every organisation file (GeoJSON, NDJSON, CSV,
and XLSX when it exists) at once, each raw and with ``Accept-Encoding: gzip``: 6–8 concurrent
streams. The client reads in 1 MiB steps and keeps nothing but a SHA-256 of what it read, which is
checked against the SHA-256 the server announces (``/downloads`` for the raw file, the ``ETag`` of
the gzip answer). The server's RSS (all its
processes, from /proc) is sampled every 0.2 s: the figure is the peak minus the RSS before the first
download. Writes ``bench/results/<date>-<sha>-exports[-label].json`` and prints a Markdown table.
The downloads must have been built (``bruso downloads build``; bench/run.py builds them when
scenario (6) runs); exits 1 when a file is missing, a download fails or a digest differs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.util
import json
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
harness = importlib.util.module_from_spec(_spec)
sys.modules["bench_run"] = harness  # its dataclasses look their module up
_spec.loader.exec_module(harness)  # start_bruso, rss_mb, git_sha, with_db, say

FILES = ("organisations.geojson", "organisations.ndjson", "organisations.csv", "organisations.xlsx")
STEP = 1 << 20


def fetch(url: str, gzip: bool, out: dict) -> None:
    """Stream one download to nothing, hashing it; ``out`` gets status, bytes, seconds, sha256."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip" if gzip else "identity"})
    started = time.perf_counter()
    digest, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            out["status"] = response.status
            out["content_encoding"] = response.headers.get("Content-Encoding") or "identity"
            out["etag"] = (response.headers.get("ETag") or "").strip('"')
            while block := response.read(STEP):
                digest.update(block)
                size += len(block)
    except Exception as exc:  # reported, and the run fails
        out["error"] = repr(exc)
    out.update(bytes=size, seconds=round(time.perf_counter() - started, 2), sha256=digest.hexdigest())


def measure(url: str, workers: int, workdir: Path) -> dict:
    server = harness.start_bruso(url, workers, workdir, "WARNING")
    try:
        listing = json.loads(urllib.request.urlopen(server.base + "/downloads", timeout=60).read())
        files = {f["name"]: f for f in listing["items"]}
        wanted = [name for name in FILES if name in files]
        if "organisations.geojson" not in wanted:
            sys.exit(f"no organisation downloads on {url}: build them first (bruso downloads build)")
        for _ in range(workers * 2):
            urllib.request.urlopen(server.base + "/v1/organisations?limit=1", timeout=60).read()
        before = server.rss()
        peak, samples, stop = before, [], threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                value = server.rss()
                samples.append(value)
                peak = max(peak, value)
                time.sleep(0.2)

        sampler = threading.Thread(target=sample)
        sampler.start()
        results = {(name, gz): {} for name in wanted for gz in (False, True)}
        threads = [threading.Thread(target=fetch, args=(f"{server.base}/downloads/{name}", gz, out))
                   for (name, gz), out in results.items()]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
        time.sleep(0.5)
        stop.set()
        sampler.join()
        after = server.rss()
    finally:
        server.stop()
    streams, failures = [], []
    for (name, gz), out in results.items():
        meta = files[name]
        # identity: the listing's SHA-256; gzip: the stored gzip's, which is its ETag
        expected = out.get("etag") if gz else meta["sha256"]
        row = {"file": name, "encoding": "gzip" if gz else "identity", **out}
        if out.get("status") != 200 or "error" in out:
            failures.append(f"{name} ({row['encoding']}): {out.get('error') or out.get('status')}")
        elif gz and out.get("content_encoding") != "gzip":
            failures.append(f"{name}: asked for gzip, got {out.get('content_encoding')}")
        elif out["sha256"] != expected:
            failures.append(f"{name} ({row['encoding']}): sha256 {out['sha256'][:12]} differs from the listing's {expected[:12]}")
        streams.append(row)
    total = sum(s["bytes"] for s in streams)
    return {"workers": workers, "records": files["organisations.geojson"].get("records"), "streams": streams,
            "bytes": total, "seconds": round(seconds, 1), "mb_per_s": round(total / seconds / 1e6, 1),
            "rss_before_mb": before, "rss_peak_mb": peak, "rss_after_mb": after,
            "rss_growth_mb": round(peak - before, 1), "samples": len(samples), "failures": failures}


def markdown(runs: list[dict]) -> str:
    lines = ["| workers | records | streams | bytes sent | seconds | MB/s | RSS before MB | peak MB | growth MB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        lines.append(f"| {r['workers']} | {r['records']:,} | {len(r['streams'])} | {r['bytes']:,} | {r['seconds']} | "
                     f"{r['mb_per_s']} | {r['rss_before_mb']} | {r['rss_peak_mb']} | **{r['rss_growth_mb']}** |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="the database to serve (default: bruso_bench_<size> on the bench server)")
    parser.add_argument("--size", type=int, default=1_000_000, help="dataset of bench/run.py to use")
    parser.add_argument("--server-url", default="postgresql+psycopg://postgres@127.0.0.1:5433/postgres")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    url = args.database_url or harness.with_db(args.server_url, f"{harness.DB_PREFIX}{args.size}")
    runs = []
    with tempfile.TemporaryDirectory(prefix="bruso-exports-") as tmp:
        for workers in (int(w) for w in args.workers.split(",")):
            harness.say(f"{url.rsplit('/', 1)[-1]}: {workers} worker(s), every organisation file raw and gzip at once")
            runs.append(measure(url, workers, Path(tmp)))
            harness.say(f"  {runs[-1]['bytes']:,} bytes in {runs[-1]['seconds']} s, RSS growth {runs[-1]['rss_growth_mb']} MB")
    record = {"date": dt.date.today().isoformat(), "git_sha": harness.git_sha(), "database": url.rsplit("/", 1)[-1],
              "runs": runs}
    name = f"{record['date']}-{record['git_sha']}-exports{'-' + args.label if args.label else ''}.json"
    out = BENCH / "results" / name
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(markdown(runs))
    print(f"\nwritten {out.relative_to(BENCH.parent)}")
    failed = [f for r in runs for f in r["failures"]]
    if failed:
        sys.exit("failed:\n" + "\n".join(failed))


if __name__ == "__main__":
    main()
