"""Engine and session factories; nothing else."""

from __future__ import annotations

import select

import orjson
from psycopg.types.json import set_json_loads

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .settings import Settings


def connect_args(settings: Settings) -> dict:
    """libpq options of every API connection (the pool's, and the downloads lookup's own)."""
    return {
        # API queries are short: parallel workers only add start-up latency (measured: +20 ms at 100k)
        # custom plans always: a generic plan of the bbox search recomputed the transformed box per
        # row (measured 240x slower after psycopg's fifth execution prepared it; bench/README.md)
        "options": f"-c statement_timeout={settings.statement_timeout_ms} -c max_parallel_workers_per_gather=0 "
        "-c plan_cache_mode=force_custom_plan -c application_name=bruso",
        "connect_timeout": 2,
    }


def _lost(dbapi_connection) -> bool:
    """True when a pooled (idle) connection is known dead without a round trip: closed or broken
    in psycopg, or its socket readable — an idle session receives nothing unless the server ended
    it (shutdown/restart sends FATAL 57P01 then EOF; a terminated backend the same). ~2 µs."""
    conn = dbapi_connection.driver_connection
    if conn.closed or conn.broken:
        return True
    try:
        fd = conn.pgconn.socket
    except Exception:  # noqa: BLE001 - no socket: not usable
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _survive_lost_connections(engine: AsyncEngine) -> None:
    """Two guards for a PostgreSQL restart (tests/test_faults.py measures both):

    * at checkout, a pooled connection the server has ended is replaced before any request uses it
      (without this every pooled connection fails one request with a 503 after a restart, and
      pool_pre_ping would cost a round trip per checkout: +0.15–0.25 ms, twice per request);
    * the ROLLBACK that releases a connection the server has just ended is not an error: there is
      nothing to roll back. Raised, it escaped ``async with engine.connect()`` after the response
      had been sent and uvicorn reset the client's connection. The dead connection goes back to
      the pool and is dropped at its next checkout (above)."""
    sync = engine.sync_engine
    dialect = sync.dialect
    rollback = dialect.do_rollback

    def do_rollback(dbapi_connection) -> None:
        try:
            rollback(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if not dialect.is_disconnect(exc, dbapi_connection, None):
                raise

    dialect.do_rollback = do_rollback

    @event.listens_for(sync, "connect")
    def _fast_json(dbapi_connection, connection_record) -> None:
        # json/jsonb columns (the linked labels of every record) parsed by orjson, not json.loads
        set_json_loads(orjson.loads, dbapi_connection.driver_connection)

    @event.listens_for(sync, "checkout")
    def _replace_lost(dbapi_connection, connection_record, connection_proxy) -> None:
        if _lost(dbapi_connection):
            raise DisconnectionError("pooled connection ended by the server")  # the pool reconnects


def make_async_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    """The API's engine: a small pool that fails fast when PostgreSQL is away."""
    engine = create_async_engine(
        url or settings.database_url,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_timeout=settings.pool_timeout_s,
        # no pre-ping round trip per request: pooled connections ended by a restart are detected
        # locally at checkout instead (_lost), and the pool reconnects by itself
        pool_pre_ping=False,
        connect_args=connect_args(settings),
    )
    _survive_lost_connections(engine)
    return engine


def make_sync_engine(settings: Settings, url: str | None = None) -> Engine:
    """The engine of the command line (loaders, imports): no statement timeout."""
    return create_engine(url or settings.database_url, pool_pre_ping=True, connect_args={"connect_timeout": 5})
