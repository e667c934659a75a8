"""HTTP conventions shared by every surface: strong ETags with 304s, Last-Modified from the data
version, Cache-Control per resource, gzip and open CORS for reads."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from email.utils import format_datetime, parsedate_to_datetime

from fastapi import FastAPI, Request
from sqlalchemy import text
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response

# Longest prefix wins.
CACHE_CONTROL = {
    "/v1/organisations": "public, max-age=60",
    "/v1/": "public, max-age=300",
    "/healthz": "no-store",
    "/readyz": "no-store",
}


def base_url(request: Request) -> str:
    """The public base URL: the configured one, else what the request was addressed to."""
    configured = request.app.state.settings.public_base_url
    return configured.rstrip("/") if configured else str(request.base_url).rstrip("/")


async def data_version(request: Request) -> dt.datetime | None:
    """When the public data last changed: one index-only lookup (no per-process cache, so that
    Last-Modified and If-Modified-Since agree on every replica)."""
    async with request.app.state.read_engines[0].connect() as conn:
        return (await conn.execute(text("SELECT max(updated_at) FROM organisation"))).scalar()


class ConditionalGet(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next):
        response = await call_next(request)
        if request.method not in ("GET", "HEAD") or response.status_code != 200:
            return response
        path = request.url.path
        if "cache-control" not in response.headers:
            for prefix in sorted(CACHE_CONTROL, key=len, reverse=True):
                if path.startswith(prefix):
                    response.headers["Cache-Control"] = CACHE_CONTROL[prefix]
                    break
        if not path.startswith("/v1/"):
            return response
        body = b"".join([chunk async for chunk in response.body_iterator])
        etag = '"' + base64.urlsafe_b64encode(hashlib.sha256(body).digest()[:18]).decode() + '"'
        headers = dict(response.headers)
        headers["ETag"] = etag
        try:
            version = await data_version(request)
        except Exception:  # noqa: BLE001 - a missing Last-Modified must not fail the response
            version = None
        if version is not None:
            headers["Last-Modified"] = format_datetime(version.astimezone(dt.timezone.utc).replace(microsecond=0), usegmt=True)
        if _not_modified(request, etag, version):
            keep = {k: v for k, v in headers.items() if k.lower() in ("etag", "last-modified", "cache-control", "vary")}
            return Response(status_code=304, headers=keep)
        headers.pop("content-length", None)
        return Response(body, status_code=200, headers=headers, media_type=response.media_type)


def _not_modified(request: Request, etag: str, version: dt.datetime | None) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:
        return etag in [t.strip().removeprefix("W/") for t in inm.split(",")] or inm.strip() == "*"
    ims = request.headers.get("if-modified-since")
    if ims and version is not None:
        try:
            return version.replace(microsecond=0) <= parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
    return False


def install(app: FastAPI) -> None:
    app.add_middleware(ConditionalGet)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(
        CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "HEAD", "OPTIONS"], allow_headers=["*"],
        expose_headers=["ETag", "Last-Modified", "Link", "X-Number-Matched", "Content-Crs"],
    )
