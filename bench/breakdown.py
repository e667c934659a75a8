"""Where the time of one Bruso request goes: scenario (2) (bbox of a commune + sector, limit 100)
and (3) (one record by id), measured piece by piece in process, against a loaded database.

    .venv/bin/python bench/breakdown.py --database-url postgresql+psycopg://postgres@127.0.0.1:5433/bruso_bench_5000
    .venv/bin/python bench/breakdown.py --database-url ... --cprofile 3      # + cProfile of 300 requests of (3)

Pieces (median over --repeat runs, µs): the whole request through the ASGI stack (httpx, no
socket), then what it is made of — pool checkout + one round trip, the ConditionalGet data-version
query (on a second pooled connection), the reference check, the search (page + count), the record
fetch (``fetch_records``: PostgreSQL execution time from EXPLAIN ANALYZE, and the rest: transfer +
psycopg decoding of the JSON columns), shaping in Python (``serialize/v1.py``), orjson, the SHA-256
ETag and one access-log line. What is left is routing, FastAPI dependencies/validation and the
middleware stack.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import io
import logging
import pstats
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def median_us(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1e6, 1)


async def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - started)
    return out


async def profile(url: str, repeat: int, cprofile: str | None, custom_plans: bool) -> None:
    import httpx
    from sqlalchemy import text

    from app import search
    from app.edge import JsonFormatter
    from app.http import DATA_VERSION_SQL
    from app.main import create_app
    from app.search.criteria import parse_criteria
    from app.search.query import check_references
    from app.search.query import search as run_search
    from app.serialize import v1 as shape
    from app.settings import Settings

    settings = Settings(BRUSO_DATABASE_URL=url, rate_limit_per_minute=0, log_level="WARNING", response_cache_mb=0)  # measure the work, not the answer cache
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        engine = application.state.engine
        if custom_plans:  # what plan_cache_mode=force_custom_plan in the app's connect options would give
            from sqlalchemy import event

            @event.listens_for(engine.sync_engine, "connect")
            def _custom(dbapi_connection, record):
                cursor = dbapi_connection.cursor()
                cursor.execute("SET plan_cache_mode = force_custom_plan")
                cursor.close()
                dbapi_connection.commit()  # else the pool's rollback undoes the SET
        async with engine.connect() as conn:
            sector = (await conn.execute(text(
                "SELECT ct.sector_id FROM organisation_category oc JOIN category_tree ct ON ct.category_id = oc.category_id "
                "GROUP BY 1 ORDER BY count(DISTINCT oc.organisation_id) DESC, 1 LIMIT 1"))).scalar()
            box = (await conn.execute(text(
                "SELECT ST_XMin(b) || ',' || ST_YMin(b) || ',' || ST_XMax(b) || ',' || ST_YMax(b) FROM "
                "(SELECT ST_Extent(ST_Transform(geom, 4326))::geometry b FROM commune WHERE nis_code = '21004') c"))).scalar()
            one_id = (await conn.execute(text(
                "SELECT id FROM organisation WHERE publication_state = 'published' ORDER BY md5(id::text) LIMIT 1"))).scalar()
        scenarios = {
            "2": f"/v1/organisations?bbox={box}&sector={sector}&limit=100",
            "3": f"/v1/organisations/{one_id}",
        }
        transport = httpx.ASGITransport(app=application)
        # identity: wrk sends no Accept-Encoding for these scenarios (httpx would ask for gzip)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench",
                                     headers={"Accept-Encoding": "identity"}) as client:
            for key, path in scenarios.items():
                print(f"\n## scenario ({key}) {path}\n")
                for _ in range(5):  # warm-up
                    assert (await client.get(path)).status_code == 200
                whole = await timed(lambda: client.get(path), repeat)
                response = await client.get(path)
                body = response.content
                rows_out: dict = {}
                pieces: list[tuple[str, list[float]]] = [("whole request, in process (ASGI, no socket)", whole)]
                pieces.append(("GET /healthz through the same stack (client + middleware + routing, no database)",
                               await timed(lambda: client.get("/healthz"), repeat)))
                import app.http as http_module

                real_version = http_module.data_version

                async def no_version(request):
                    return None
                http_module.data_version = no_version
                pieces.append(("whole request without the data_version query (patched out)", await timed(lambda: client.get(path), repeat)))
                http_module.data_version = real_version

                async def round_trip():
                    async with engine.connect() as c:
                        await c.execute(text("SELECT 1"))
                pieces.append(("pool checkout + SELECT 1 (BEGIN, SELECT, ROLLBACK: 3 round trips)", await timed(round_trip, repeat)))
                import psycopg
                from starlette.concurrency import run_in_threadpool

                raw = await psycopg.AsyncConnection.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)

                async def raw_round_trip():
                    await (await raw.execute("SELECT 1")).fetchall()
                pieces.append(("   raw psycopg, autocommit: SELECT 1 (1 round trip)", await timed(raw_round_trip, repeat)))

                async def raw_record():
                    await (await raw.execute(search.RECORD_SQL.format(public="AND o.publication_state = 'published'")
                                             .replace(":ids", "%(ids)s"), {"ids": [one_id]})).fetchall()
                pieces.append(("   raw psycopg, autocommit: the record SQL for 1 id", await timed(raw_record, repeat)))
                pieces.append(("sync dependency hop (run_in_threadpool, as FastAPI does for `def` deps)",
                               await timed(lambda: run_in_threadpool(lambda: None), repeat)))

                async def version():
                    async with engine.connect() as c:
                        await c.execute(text(DATA_VERSION_SQL))
                pieces.append(("ConditionalGet: data_version on a 2nd connection", await timed(version, repeat)))

                params = {k: v for k, v in parse_qs(urlsplit(path).query).items() if k != "limit"}
                criteria = parse_criteria(params, settings.max_radius_m)
                async with engine.connect() as conn:
                    if key == "2":
                        pieces.append(("check_references (1 query)", await timed(lambda: check_references(conn, criteria), repeat)))

                        async def do_search():
                            rows_out["page"] = await run_search(conn, criteria, sort=None, limit=100, cursor=None, lang="fr",
                                                                secret="x")
                        samples = await timed(do_search, repeat)
                        pieces.append(("search: page + count (2 queries)", samples))
                        pieces.append(("   search, executions 1-5 on this connection", samples[:5]))
                        pieces.append(("   search, executions 11-20 on this connection", samples[10:20]))
                        ids = rows_out["page"].ids
                    else:
                        ids = [one_id]

                    async def fetch():
                        rows_out["rows"] = await search.fetch_records(conn, ids)
                    pieces.append((f"fetch_records({len(ids)} ids), total", await timed(fetch, repeat)))
                    sql = search.RECORD_SQL.format(public="AND o.publication_state = 'published'")
                    executions, planning = [], []
                    for _ in range(max(5, repeat // 10)):
                        plan = (await conn.execute(text("EXPLAIN (ANALYZE, FORMAT JSON) " + sql), {"ids": list(ids)})).scalar()
                        executions.append(plan[0]["Execution Time"] / 1000)
                        planning.append(plan[0]["Planning Time"] / 1000)
                    pieces.append(("   of which PostgreSQL execution (EXPLAIN ANALYZE)", executions))
                    pieces.append(("   of which PostgreSQL planning (unprepared)", planning))

                    async def fetch_raw():  # same SQL, rows left undecoded as text: driver decode cost
                        result = await conn.exec_driver_sql(
                            "SELECT row_to_json(r)::text FROM (" + sql.replace(":ids", "%(ids)s") + ") r", {"ids": list(ids)})
                        result.all()
                    pieces.append(("   same rows as ONE json text per row (row_to_json)", await timed(fetch_raw, repeat)))

                    async def fetch_agg():  # the whole page as one json text built by PostgreSQL
                        result = await conn.exec_driver_sql(
                            "SELECT json_agg(r)::text FROM (" + sql.replace(":ids", "%(ids)s") + ") r", {"ids": list(ids)})
                        result.scalar()
                    pieces.append(("   same rows as ONE json_agg text for the page", await timed(fetch_agg, repeat)))
                rows = rows_out["rows"]

                def shape_all():
                    return [shape.in_language(shape.organisation(r, "http://bench"), None) for r in rows]
                samples = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    docs = shape_all()
                    samples.append(time.perf_counter() - started)
                pieces.append((f"shape.organisation × {len(rows)} (serialize/v1.py)", samples))
                doc = docs if key == "2" else docs[0]
                samples = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    orjson.dumps(doc)
                    samples.append(time.perf_counter() - started)
                pieces.append((f"orjson.dumps ({len(body)} bytes)", samples))
                samples = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    hashlib.sha256(body).digest()
                    samples.append(time.perf_counter() - started)
                pieces.append(("SHA-256 ETag of the body", samples))
                formatter = JsonFormatter()
                record = logging.LogRecord("bruso.access", logging.INFO, __file__, 0, "request", None, None)
                record.fields = {"request_id": "x" * 32, "method": "GET", "path": path, "status": 200, "client": "127.0.0.1",
                                 "duration_ms": 1.0}
                samples = []
                sink = io.StringIO()
                for _ in range(repeat):
                    started = time.perf_counter()
                    sink.write(formatter.format(record) + "\n")
                    samples.append(time.perf_counter() - started)
                pieces.append(("access log line (JsonFormatter, to memory)", samples))

                total = median_us(whole)
                print("| piece | median µs | share of the whole |")
                print("|---|---:|---:|")
                for name, values in pieces:
                    value = median_us(values)
                    print(f"| {name} | {value:,.0f} | {value / total:.0%} |")
                if cprofile == key:
                    profiler = cProfile.Profile()
                    profiler.enable()
                    for _ in range(repeat):
                        await client.get(path)
                    profiler.disable()
                    out = io.StringIO()
                    stats = pstats.Stats(profiler, stream=out)
                    stats.sort_stats("tottime").print_stats(25)
                    stats.sort_stats("cumulative").print_stats(40)
                    print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5433/bruso_bench_5000")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--cprofile", choices=["2", "3"], help="also cProfile the requests of this scenario")
    parser.add_argument("--custom-plans", action="store_true",
                        help="SET plan_cache_mode = force_custom_plan on every connection (see the README: generic plans)")
    args = parser.parse_args()
    asyncio.run(profile(args.database_url, args.repeat, args.cprofile, args.custom_plans))


if __name__ == "__main__":
    main()
