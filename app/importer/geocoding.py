"""Geocoding during an import: each batch of valid rows goes through URBIS (both languages) before
it is staged. Found → the URBIS point and bilingual street names, ``geocode_status='ok'``; unknown
→ ``'failed'`` (the source's point, if any, is kept); URBIS down or the circuit breaker open →
``'pending'`` (kept too; ``bruso geocode --pending`` completes them later). Nothing is dropped.

The async client runs on one event loop in a helper thread for the whole run, so its connection
pool, cache and circuit breaker span every batch (uvloop's loop when installed: it comes with
uvicorn[standard] and halves the loop's share of each request).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable

from sqlalchemy import Engine

from ..geo.crs import to_wgs84
from ..geo.urbis import (
    GeocodeResult,
    PgCache,
    UrbisClient,
    UrbisError,
    UrbisUnavailable,
)
from ..models import SRID

FAR_M = 100.0  # source point farther than this from URBIS's: flagged
# derived from the point: recomputed from the geocoded one by the loader's enrichment
DERIVED = ("commune_nis", "commune_nl", "commune_fr", "quartier_code", "quartier_nl", "quartier_fr",
           "statistical_sector_nl", "statistical_sector_fr")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop if it is installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Geocoder:
    def __init__(self, base_url: str, engine: Engine, mode: str, *, concurrency: int = 8, timeout: float = 5.0):
        self.mode = mode
        to_wgs84(150000.0, 170000.0)  # PROJ's set-up (~50 ms) now, not in the first batch
        self.loop = new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="urbis", daemon=True)
        self.thread.start()

        async def make() -> UrbisClient:
            return UrbisClient(base_url, cache=PgCache(engine), concurrency=concurrency, timeout=timeout)

        self.client = self._run(make())

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def wanted(self, row: dict) -> bool:
        if not (row.get("street_fr") or row.get("street_nl")):
            return False
        return self.mode == "all" or row.get("geom") is None

    def __call__(self, rows: list[dict]) -> None:
        targets = [row for row in rows if self.wanted(row)]
        if not targets:
            return
        queries = [
            {"street": row.get("street_fr") or row.get("street_nl"), "street_alt": row.get("street_nl"),
             "number": row.get("number"), "postcode": row.get("postcode"),
             "municipality": row.get("commune_fr") or row.get("commune_nl")}
            for row in targets
        ]
        results = self._run(self.client.geocode_many(queries))
        for row, result in zip(targets, results, strict=True):
            apply(row, result)

    def stats(self) -> str:
        return str(self.client.stats)

    def close(self) -> None:
        try:
            self._run(self.client.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


def _flag(row: dict, flag: str) -> None:
    flags = row.setdefault("quality_flags", [])
    if flag not in flags:
        flags.append(flag)


def apply(row: dict, result: GeocodeResult | None | UrbisError) -> None:
    """Write one geocoding outcome into a staged row."""
    row["quality_flags"] = [f for f in row.get("quality_flags") or [] if f not in ("geocode-pending", "address-not-found")]
    if isinstance(result, UrbisUnavailable):  # down, too slow, breaker open: try again later
        row["geocode_status"] = "pending"
        _flag(row, "geocode-pending")
        return
    if result is None or isinstance(result, UrbisError):  # unknown, or refused for good (error:true, 4xx)
        row["geocode_status"] = "failed"
        _flag(row, "address-not-found")
        return
    if row.get("x_31370") is not None and row.get("y_31370") is not None:
        if math.dist((row["x_31370"], row["y_31370"]), (result.x, result.y)) > FAR_M:
            _flag(row, "source-point-far")
    row["geocode_status"] = "ok"
    row["street_fr"] = result.street_fr or row.get("street_fr")
    row["street_nl"] = result.street_nl or row.get("street_nl")
    if row.get("postcode") is None and result.postcode:
        row["postcode"] = int(result.postcode)
    row["x_31370"], row["y_31370"], row["lon"], row["lat"] = result.x, result.y, result.lon, result.lat
    row["geom"] = f"SRID={SRID};POINT({result.x} {result.y})"
    for column in DERIVED:
        row[column] = None


def _geocoder(settings, engine: Engine, mode: str, urbis_url: str | None) -> Geocoder:
    return Geocoder(urbis_url or settings.urbis_url, engine, mode,
                    concurrency=settings.urbis_concurrency, timeout=settings.urbis_timeout_s)


def make_prepare(settings, engine: Engine, mode: str, urbis_url: str | None) -> tuple[Callable | None, Callable | None]:
    """(prepare hook for the loader, stats printer), or (None, None) without geocoding. The
    caller closes the geocoder through ``prepare.close()``."""
    if mode == "none":
        return None, None
    geocoder = _geocoder(settings, engine, mode, urbis_url)
    return geocoder, geocoder.stats


def geocode_pending(engine: Engine, settings, urbis_url: str | None, *, progress=None):
    """Geocode the records an import left pending (one transaction; the change feed records the
    updates). Returns the loader's report: read, geocoded, pending (still)."""
    from ..loaders.legacy import reprocess

    geocoder = _geocoder(settings, engine, "all", urbis_url)
    try:
        with engine.begin() as conn:
            return reprocess(conn, "geocode_status = 'pending'", geocoder, progress=progress)
    finally:
        geocoder.close()
