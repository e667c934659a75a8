"""The DCAT-AP 3 catalogue (``/catalog``, content negotiation; ``/catalog.ttl|.rdf|.jsonld``) and,
included from ``app/routers/downloads.py``, the bulk downloads it describes (``/downloads/...``).

The catalogue is rendered from the current downloads (one short query, plus the region's extent),
cached per process on those inputs; its ETag is the SHA-256 of the bytes (identical on every
replica) and Last-Modified is the last data change. HEAD is answered (harvesters such as
ckanext-dcat send HEAD first and pick their parser from Content-Type).
"""

from __future__ import annotations

import base64
import hashlib

from fastapi import APIRouter, Request
from starlette.responses import Response

from .. import catalog as cat
from ..http import base_url
from . import downloads as files

router = APIRouter(tags=["catalog"])
router.include_router(files.router)

CACHE_CONTROL = "public, max-age=300"
_PROBLEM = {"content": {"application/problem+json": {}}}
ACCEPTED = {
    "text/turtle": "ttl", "application/x-turtle": "ttl", "text/n3": "ttl",
    "application/rdf+xml": "rdf", "application/xml": "rdf", "text/xml": "rdf",
    "application/ld+json": "jsonld", "application/json": "jsonld",
}
PREFERENCE = ("ttl", "jsonld", "rdf")  # for wildcards and ties
RESPONSES = {
    200: {"description": "The catalogue", "content": {cat.FORMATS[f][0]: {} for f in PREFERENCE}},
    304: {"description": "Not modified"},
    503: {"description": "Database unavailable; retry later", **_PROBLEM},
}


def negotiate(accept: str | None) -> str:
    """The format for an Accept header (q-values honoured); Turtle when nothing listed is known."""
    if not accept:
        return "ttl"
    best, best_q, best_rank = "ttl", -1.0, len(PREFERENCE)
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.lower().startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        media = media.lower()
        if q <= 0:
            continue
        if media in ACCEPTED:
            candidates = [ACCEPTED[media]]
        elif media in ("*/*", "text/*", "application/*"):
            candidates = [f for f in PREFERENCE if media == "*/*" or cat.FORMATS[f][0].startswith(media[:-1])]
        else:
            continue
        for fmt in candidates:
            rank = PREFERENCE.index(fmt) + (0 if media in ACCEPTED else len(PREFERENCE))  # explicit beats wildcard
            if q > best_q or (q == best_q and rank < best_rank):
                best, best_q, best_rank = fmt, q, rank
    return best


async def _catalog(request: Request, fmt: str, negotiated: bool) -> Response:
    async with files._engine(request).connect() as conn:
        inputs, extent = await cat.load_inputs(conn)
    body = cat.render(base_url(request), inputs, extent, fmt)
    media_type = cat.FORMATS[fmt][0]
    etag = '"' + base64.urlsafe_b64encode(hashlib.sha256(body).digest()[:18]).decode() + '"'
    modified = cat.modified(inputs)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if modified is not None:
        headers["Last-Modified"] = files.http_date(modified)
    if negotiated:
        headers["Vary"] = "Accept"
        headers["Content-Location"] = f"{base_url(request)}/catalog.{fmt}"
    if files.not_modified(request, etag, modified):
        return Response(status_code=304, headers=headers)
    headers["Content-Type"] = media_type + ("; charset=utf-8" if media_type.startswith("text/") else "")
    if request.method == "HEAD":
        return Response(b"", headers={**headers, "Content-Length": str(len(body))})
    return Response(body, headers=headers)


@router.get(
    "/catalog",
    summary="DCAT-AP 3 catalogue of the datasets, downloads and APIs (Turtle, RDF/XML or JSON-LD by Accept)",
    responses=RESPONSES,
)
async def catalog(request: Request) -> Response:
    return await _catalog(request, negotiate(request.headers.get("accept")), negotiated=True)


@router.head("/catalog", include_in_schema=False)
async def catalog_head(request: Request) -> Response:
    return await _catalog(request, negotiate(request.headers.get("accept")), negotiated=True)


def _fixed(fmt: str):
    async def endpoint(request: Request) -> Response:
        return await _catalog(request, fmt, negotiated=False)

    return endpoint


for _fmt, _label in (("ttl", "Turtle"), ("rdf", "RDF/XML"), ("jsonld", "JSON-LD")):
    router.add_api_route(
        f"/catalog.{_fmt}", _fixed(_fmt), methods=["GET"], name=f"catalog_{_fmt}",
        summary=f"DCAT-AP 3 catalogue in {_label}",
        responses={200: {"description": "The catalogue", "content": {cat.FORMATS[_fmt][0]: {}}}, **{k: v for k, v in RESPONSES.items() if k != 200}},
    )
    router.add_api_route(f"/catalog.{_fmt}", _fixed(_fmt), methods=["HEAD"], name=f"catalog_{_fmt}_head", include_in_schema=False)
