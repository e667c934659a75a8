"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import text
from starlette.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up (never touches the database)")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database is reachable and migrated to the code's schema",
    responses={503: {"description": "Not ready", "content": {"application/problem+json": {}}}},
)
async def readyz(request: Request):
    expected = request.app.state.migration_head
    try:
        async with request.app.state.engine.connect() as conn:
            current = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return JSONResponse(
            {"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": f"database unreachable ({type(exc).__name__})"},
            status_code=503, media_type="application/problem+json", headers={"Retry-After": "5"},
        )
    if current != expected:
        return JSONResponse(
            {"type": "about:blank", "title": "Service Unavailable", "status": 503,
             "detail": f"database schema at {current}, code expects {expected}: run 'bruso db upgrade'"},
            status_code=503, media_type="application/problem+json", headers={"Retry-After": "30"},
        )
    return {"status": "ready", "schema": current}
