"""The native API, version 1."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Path
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from .. import search
from ..deps import read_connection, settings
from ..errors import NotFound
from ..serialize import v1 as shape
from ..settings import Settings

router = APIRouter(prefix="/v1", tags=["v1"])

PROBLEM_RESPONSES = {
    400: {"description": "Bad request", "content": {"application/problem+json": {}}},
    404: {"description": "Not found", "content": {"application/problem+json": {}}},
}


@router.get(
    "/organisations/{id}",
    summary="One activity place, bilingual, with its full record and address",
    responses=PROBLEM_RESPONSES,
)
async def organisation(
    id: Annotated[int, Path(description="Legacy id of the activity place (stable, public)", ge=1, le=2**31 - 1)],
    conn: Annotated[AsyncConnection, Depends(read_connection)],
    cfg: Annotated[Settings, Depends(settings)],
) -> Response:
    rows = await search.fetch_records(conn, [id])
    if not rows:
        raise NotFound(f"no published organisation with id {id}")
    return Response(orjson.dumps(shape.organisation(rows[0], cfg.public_base_url)), media_type="application/json")
