"""Bulk downloads: the precomputed files of ``app/downloads.py``, streamed from PostgreSQL chunk by chunk.

HTTP: strong ``ETag`` (the SHA-256 of the bytes sent: raw, or gzip), ``Last-Modified`` (when the
bytes last changed), ``Content-Length``, ``Repr-Digest``; the pre-gzipped bytes with
``Content-Encoding: gzip`` when the request's ``Accept-Encoding`` names gzip (the rule of the GZip
middleware, so that it never compresses these responses again); one ``Range`` (``bytes=a-b``,
``a-``, ``-n``) of the raw bytes → 206, unsatisfiable or malformed → 416 (several ranges: the whole
file, 200); ``If-Range``; ``If-None-Match`` / ``If-Modified-Since`` → 304; HEAD. Unknown file → 404,
known but not built yet → 503 with ``Retry-After``, left out of the current build (XLSX above its row
limit) → 404 (all problem+json).

A response holds a database connection only while it reads one chunk (≤ 1 MiB), never while a slow
client downloads it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import AsyncIterator
from email.utils import format_datetime, parsedate_to_datetime
from typing import Annotated

import anyio
import orjson
from fastapi import APIRouter, Path, Request
from starlette.responses import Response, StreamingResponse

from .. import downloads
from ..errors import NotFound, ServiceUnavailable
from ..http import base_url

router = APIRouter(tags=["downloads"])

CACHE_CONTROL = "public, max-age=300"
RETRY_AFTER = "60"
ATTACHMENT = ("text/csv", downloads.XLSX)
_PROBLEM = {"content": {"application/problem+json": {}}}
FILE_RESPONSES = {
    200: {"description": "The whole file (gzip-encoded when Accept-Encoding allows)",
          "content": {m: {} for m in dict.fromkeys(f.media_type for f in downloads.FILES)}},
    206: {"description": "One byte range of the raw file (Range: bytes=…)"},
    304: {"description": "Not modified (If-None-Match / If-Modified-Since)"},
    404: {"description": "No such file", **_PROBLEM},
    416: {"description": "Range not satisfiable", **_PROBLEM},
    503: {"description": "Not built yet, or the database is unavailable; retry later", **_PROBLEM},
}

FileName = Annotated[
    str,
    Path(description="File name: " + ", ".join(f.name for f in downloads.FILES), examples=["organisations.geojson"]),
]


def _engine(request: Request):
    engines = request.app.state.read_engines
    return engines[id(request) % len(engines)]


def http_date(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return format_datetime(moment.astimezone(dt.UTC).replace(microsecond=0), usegmt=True)


def _parse_http_date(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match (weak comparison): ``*`` or any listed tag equal to ``etag``."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    return etag in (t.strip().removeprefix("W/") for t in header.split(","))


def not_modified(request: Request, etag: str, modified: dt.datetime | None) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:  # If-None-Match wins over If-Modified-Since (RFC 9110 §13.1.3)
        return etag_matches(inm, etag)
    since = _parse_http_date(request.headers.get("if-modified-since"))
    return since is not None and modified is not None and modified.replace(microsecond=0) <= since


class Unsatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range asked for, as (first, last) inclusive, clamped to the file; None to send
    the whole file (no Range, another unit, or several ranges). Raises Unsatisfiable for a malformed
    byte range or one that starts beyond the end."""
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes":
        return None
    spec = spec.strip()
    if "," in spec:
        return None  # several ranges: RFC 9110 lets a server ignore Range; the whole file it is
    first, sep, last = spec.partition("-")
    first, last = first.strip(), last.strip()
    if not spec.isascii() or not sep or (first and not first.isdigit()) or (last and not last.isdigit()) or not (first or last):
        raise Unsatisfiable
    if not first:  # suffix: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise Unsatisfiable
        return max(size - n, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if end < start or start >= size:
        raise Unsatisfiable
    return start, min(end, size - 1)


def _if_range_allows(request: Request, etag: str, modified: dt.datetime | None) -> bool:
    value = request.headers.get("if-range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == etag  # strong comparison only
    since = _parse_http_date(value)
    return since is not None and modified is not None and modified.replace(microsecond=0) == since


def accepts_gzip(request: Request) -> bool:
    # The same test as Starlette's GZipMiddleware: where it would compress, the stored gzip is sent.
    return "gzip" in request.headers.get("accept-encoding", "")


def _digest_header(hex_digest: str) -> str:
    return "sha-256=:" + base64.b64encode(bytes.fromhex(hex_digest)).decode() + ":"


async def _chunks(request: Request, file: dict, encoding: str, first: int, last: int) -> AsyncIterator[bytes]:
    """Bytes first..last (inclusive) of one encoding, one chunk (one short query) at a time."""
    size = file["chunk_size"]
    engine = _engine(request)
    position = first
    while position <= last:
        seq, offset = divmod(position, size)
        length = min(size - offset, last - position + 1)
        whole = offset == 0 and length == size
        with anyio.CancelScope(shield=True):  # a client gone mid-read: finish the short query, keep the connection
            async with engine.connect() as conn:
                data = await downloads.read_chunk(conn, file["id"], encoding, seq, offset, None if whole else length)
        if data is None or len(data) != length:
            raise RuntimeError(f"{file['name']}: chunk {encoding}/{seq} is gone (the file was rebuilt twice meanwhile)")
        yield data
        position += len(data)


async def _file_response(request: Request, name: str) -> Response:
    if name not in downloads.FILES_BY_NAME:
        raise NotFound(f"no download named {name!r}; see {base_url(request)}/downloads")
    async with _engine(request).connect() as conn:
        file = await downloads.current_file(conn, name)
        built = file is not None or await downloads.any_current(conn)
    if file is None:
        if built:  # the current build left it out (organisations.xlsx above its row limit)
            raise NotFound(f"{name} is not produced for the current data; see {base_url(request)}/downloads")
        raise ServiceUnavailable(f"{name} has not been built yet; retry later", headers={"Retry-After": RETRY_AFTER})

    gzip = accepts_gzip(request) and file["gzip_sha256"] is not None
    identity_etag = f'"{file["sha256"]}"'
    modified = file["modified"]
    headers = {
        "Cache-Control": CACHE_CONTROL,
        "Vary": "Accept-Encoding",
        "Accept-Ranges": "bytes",
    }
    if modified is not None:
        headers["Last-Modified"] = http_date(modified)
    media_type = file["media_type"]
    if media_type.startswith(ATTACHMENT):
        headers["Content-Disposition"] = f'attachment; filename="{name}"'

    # Range (of the raw bytes) takes precedence over gzip; If-Range falls back to the whole file.
    byte_range, unsatisfiable = None, False
    if request.headers.get("range") is not None and _if_range_allows(request, identity_etag, modified):
        try:
            byte_range = parse_range(request.headers["range"], file["byte_size"])
        except Unsatisfiable:
            unsatisfiable = True
    if byte_range is not None or unsatisfiable:
        gzip = False

    if gzip:
        etag, size, encoding, digest = f'"{file["gzip_sha256"]}"', file["gzip_size"], "gzip", file["gzip_sha256"]
        headers["Content-Encoding"] = "gzip"
    else:
        etag, size, encoding, digest = identity_etag, file["byte_size"], "identity", file["sha256"]
    headers["ETag"] = etag

    if not_modified(request, etag, modified):
        kept = {k: v for k, v in headers.items() if k not in ("Content-Encoding", "Content-Disposition", "Accept-Ranges")}
        return Response(status_code=304, headers=kept)

    if unsatisfiable:  # after the preconditions (RFC 9110 §13.2.2)
        body = {"type": "about:blank", "title": "Range Not Satisfiable", "status": 416,
                "detail": f"{name} has {file['byte_size']} bytes; ask for one range inside them (bytes=first-last)",
                "instance": request.url.path}
        return Response(orjson.dumps(body), status_code=416, media_type="application/problem+json",
                        headers={**headers, "Content-Range": f"bytes */{file['byte_size']}"})

    headers["Repr-Digest"] = _digest_header(digest)
    status, first, last = 200, 0, size - 1
    if byte_range is not None:
        status, (first, last) = 206, byte_range
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    headers["Content-Length"] = str(last - first + 1)
    headers["Content-Type"] = media_type
    if request.method == "HEAD" or last < first:
        return Response(b"", status_code=status, headers=headers)
    return StreamingResponse(_chunks(request, file, encoding, first, last), status_code=status, headers=headers)


@router.get(
    "/downloads/{name}",
    summary="One precomputed bulk file (the whole directory, the thematic tree, accreditations, districts)",
    description="Built after each import and stored in the database: identical on every replica. "
    "Strong ETag (SHA-256 of the bytes), Last-Modified, gzip (pre-compressed), one byte Range, HEAD.",
    responses=FILE_RESPONSES,
)
async def download_file(request: Request, name: FileName) -> Response:
    return await _file_response(request, name)


@router.head("/downloads/{name}", include_in_schema=False)
async def download_file_head(request: Request, name: FileName) -> Response:
    return await _file_response(request, name)


def file_entry(file: dict, base: str) -> dict:
    spec = downloads.FILES_BY_NAME.get(file["name"])
    return {
        "name": file["name"],
        "url": f"{base}/downloads/{file['name']}",
        "dataset": spec.dataset if spec else None,
        "media_type": file["media_type"],
        "byte_size": file["byte_size"],
        "gzip_size": file["gzip_size"],
        "sha256": file["sha256"],
        "records": file["records"],
        "modified": file["modified"].isoformat() if file["modified"] else None,
    }


async def _index(request: Request) -> Response:
    async with _engine(request).connect() as conn:
        files = await downloads.current_files(conn)
    base = base_url(request)
    built = {f["name"] for f in files}
    body = {
        "items": [file_entry(f, base) for f in files],
        "pending": [f.name for f in downloads.FILES if f.name not in built],
        "data_version": files[0]["data_version"] if files else None,
        "modified": max((f["modified"] for f in files if f["modified"]), default=None),
        "catalog": f"{base}/catalog",
    }
    modified = body["modified"]
    if modified is not None:
        body["modified"] = modified.isoformat()
    data = orjson.dumps(body)
    headers = {"Cache-Control": "public, max-age=60", "ETag": f'"{hashlib.sha256(data).hexdigest()[:32]}"'}
    if modified is not None:
        headers["Last-Modified"] = http_date(modified)
    if not_modified(request, headers["ETag"], modified):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="application/json", headers=headers)


@router.get(
    "/downloads",
    summary="The precomputed bulk files: names, URLs, sizes, SHA-256, record counts, last change",
    responses={503: {"description": "Database unavailable; retry later", **_PROBLEM}},
)
async def list_downloads(request: Request) -> Response:
    return await _index(request)


@router.head("/downloads", include_in_schema=False)
async def list_downloads_head(request: Request) -> Response:
    response = await _index(request)
    return Response(b"", status_code=response.status_code,
                    headers={**response.headers, "content-length": str(len(response.body))})
