"""Engine and session factories; nothing else."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .settings import Settings


def _connect_args(settings: Settings) -> dict:
    return {
        # API queries are short: parallel workers only add start-up latency (measured: +20 ms at 100k)
        "options": f"-c statement_timeout={settings.statement_timeout_ms} -c max_parallel_workers_per_gather=0 "
        "-c application_name=bruso",
        "connect_timeout": 2,
    }


def make_async_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    """The API's engine: a small pool that fails fast when PostgreSQL is away."""
    return create_async_engine(
        url or settings.database_url,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_timeout=settings.pool_timeout_s,
        # no pre-ping round trip per request: a connection broken by a restart fails one request
        # (503) and is discarded by the pool, which reconnects by itself
        pool_pre_ping=False,
        connect_args=_connect_args(settings),
    )


def make_sync_engine(settings: Settings, url: str | None = None) -> Engine:
    """The engine of the command line (loaders, imports): no statement timeout."""
    return create_engine(url or settings.database_url, pool_pre_ping=True, connect_args={"connect_timeout": 5})
