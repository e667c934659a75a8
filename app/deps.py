"""FastAPI dependencies: settings and database connections from the application state."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncConnection

from .settings import Settings


async def settings(request: Request) -> Settings:  # async: no thread hop per request
    return request.app.state.settings


async def read_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """A read-only connection (a replica when configured)."""
    engines = request.app.state.read_engines
    engine = engines[id(request) % len(engines)]
    async with engine.connect() as conn:
        yield conn
