"""Bulk downloads: the precomputed files of ``app/downloads.py``, served from a bounded per-process
cache or streamed from PostgreSQL chunk by chunk.

HTTP: strong ``ETag`` (the SHA-256 of the bytes sent: raw, or gzip), ``Last-Modified`` (when the
bytes last changed), ``Content-Length``, ``Repr-Digest``; the pre-gzipped bytes with
``Content-Encoding: gzip`` when the request's ``Accept-Encoding`` names gzip (the rule of the GZip
middleware, which passes a response that has a Content-Encoding, or is a 206, through untouched);
one ``Range`` (``bytes=a-b``, ``a-``, ``-n``) of the raw bytes → 206, unsatisfiable or malformed →
416 (several ranges: the whole file, 200); ``If-Range``; ``If-None-Match`` / ``If-Modified-Since`` →
304; HEAD. Unknown file → 404, known but not built yet → 503 with ``Retry-After``, left out of the
current build (XLSX above its row limit) → 404 (all problem+json).

Serving. Every request asks which file is current (one short autocommit query on a connection of the
process's own, ``FileLookup``), so a new build is served by every replica as soon as it commits.
The bytes come from ``DownloadCache`` — per process, at most ``Settings.download_cache_mb`` (least
recently used evicted first), keyed by their SHA-256, i.e. the ETag: a rebuild is a new key, never
stale bytes. The first GET of a version loads it once (concurrent requests wait for that one load);
HEAD, 304 and 416 never load. A file (in one encoding) larger than the cap is streamed from its
chunks, as is everything with a cap of 0.

Either way a response is sent in parts — cached: ``SEND_PART`` (4 MiB: stored chunks joined once at
load, so one ASGI message rather than four passes through the middleware stack), streamed: one stored
chunk (1 MiB) — and uvicorn's flow control applies between them, so a slow client holds about one
part of send buffer, never a whole file. A streamed response holds a database connection only while
it reads one chunk, never while a slow client downloads it.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import format_datetime, parsedate_to_datetime
from typing import Annotated

import anyio
import orjson
import psycopg
from fastapi import APIRouter, FastAPI, Path, Request
from starlette.responses import Response, StreamingResponse

from .. import downloads
from ..db import connect_args
from ..errors import NotFound, ServiceUnavailable
from ..http import base_url

log = logging.getLogger("bruso.downloads")


@asynccontextmanager
async def _lifespan(app: FastAPI):
    app.state.download_cache = DownloadCache(round(app.state.settings.download_cache_mb * (1 << 20)))
    app.state.download_lookups = {}
    yield
    for lookup in app.state.download_lookups.values():
        await lookup.close()


router = APIRouter(tags=["downloads"], lifespan=_lifespan)

CACHE_CONTROL = "public, max-age=300"
RETRY_AFTER = "60"
SEND_PART = 4 << 20  # bytes per ASGI message of a cached file (see the module docstring)
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


# ---------------------------------------------------------------- which file is current


class LookupUnavailable(Exception):
    """The lookup connection cannot answer now: ask through the pool."""


class FileLookup:
    """The question every download request asks — which bytes are current for this name — on one
    autocommit psycopg connection per process and database, outside the SQLAlchemy pool: about a
    third of the CPU of a pooled lookup (pool checkout and its events, the isolation switch and
    reset, greenlet hops; measured 0.10–0.14 vs 0.33–0.39 ms per lookup, the whole request 0.67 vs
    0.80 ms in process). Concurrent requests share it (psycopg serialises them; the query is an
    index lookup of one row).

    Any failure (server restarted, statement timeout, a connection opening meanwhile) raises
    ``LookupUnavailable``: that request asks through the pool instead, whose errors are the usual
    problem responses. A failed connection is dropped, and a new one tried at most once a second."""

    RETRY_S = 1.0

    def __init__(self, conninfo: str, connect_args: dict):
        self.conninfo = conninfo
        self.connect_args = connect_args
        self._conn: psycopg.AsyncConnection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening = False
        self._retry_at = 0.0

    async def current_file(self, name: str) -> dict | None:
        conn = await self._connection()
        try:
            with anyio.CancelScope(shield=True):  # never leave the shared connection mid-query
                return await downloads.current_file(conn, name)
        except psycopg.Error as exc:
            self._drop()
            raise LookupUnavailable from exc

    async def _connection(self) -> psycopg.AsyncConnection:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a connection is bound to its event loop (several test clients in one process)
            self._drop()
            self._loop, self._retry_at = loop, 0.0
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        if self._opening or time.monotonic() < self._retry_at:
            raise LookupUnavailable
        self._opening = True
        try:
            with anyio.CancelScope(shield=True):
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True, **self.connect_args)
        except psycopg.Error as exc:
            self._retry_at = time.monotonic() + self.RETRY_S
            log.warning("download lookup connection: %s", exc)
            raise LookupUnavailable from exc
        finally:
            self._opening = False
        self._conn = conn
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            conn.pgconn.finish()  # what AsyncConnection.close() does, usable from any event loop

    async def close(self) -> None:
        self._drop()


def _lookup(request: Request, engine) -> FileLookup:
    state = request.app.state
    lookups = getattr(state, "download_lookups", None)
    if lookups is None:
        lookups = state.download_lookups = {}
    lookup = lookups.get(engine.url)
    if lookup is None:
        conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        lookup = lookups[engine.url] = FileLookup(conninfo, connect_args(state.settings))
    return lookup


async def _current(request: Request, engine, name: str) -> tuple[dict | None, bool]:
    """The current row of ``name`` (or None) and whether any file is built at all."""
    try:
        file, asked = await _lookup(request, engine).current_file(name), True
    except LookupUnavailable:
        file, asked = None, False
    if file is not None:
        return file, True
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")  # no BEGIN/ROLLBACK round trips
        if not asked:
            file = await downloads.current_file(conn, name)
        return file, file is not None or await downloads.any_current(conn)


# ---------------------------------------------------------------- the per-process cache


@dataclass(frozen=True)
class CachedBytes:
    """One file in one encoding: its bytes in parts of ``part_size`` (whole stored chunks; the last
    part may be shorter)."""

    parts: tuple[bytes, ...]
    size: int
    part_size: int

    def slice(self, first: int, last: int) -> list[bytes]:
        """Bytes first..last (inclusive) as a list of parts; only the partial ones at the ends are copies."""
        out = []
        seq, offset = divmod(first, self.part_size)
        position = first
        while position <= last:
            part = self.parts[seq]
            length = min(len(part) - offset, last - position + 1)
            out.append(part if offset == 0 and length == len(part) else part[offset:offset + length])
            position += length
            seq, offset = seq + 1, 0
        return out


class DownloadCache:
    """Bounded, per process: the bytes of downloads keyed by their SHA-256 (the ETag without quotes).

    Memory: the bytes held plus the bytes being loaded never exceed ``cap`` (a load that would not
    fit beside the other loads in flight is not cached: that request streams). Entries evicted while
    a response still sends them live until it is done. When a new version of a file (one name, one
    encoding) is loaded, the previous one is dropped at once rather than left to age out."""

    def __init__(self, cap: int):
        self.cap = max(0, int(cap))
        self.size = 0  # bytes held by the entries
        self.reserved = 0  # bytes being loaded
        self._entries: OrderedDict[str, CachedBytes] = OrderedDict()
        self._loading: dict[str, asyncio.Task] = {}
        self._slots: dict[tuple[str, str], str] = {}  # (name, encoding) → key of its last loaded version
        self.hits = self.loads = self.evictions = 0

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def fits(self, size: int) -> bool:
        return 0 < size <= self.cap

    def get(self, key: str) -> CachedBytes | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return entry

    async def get_or_load(self, key: str, slot: tuple[str, str], size: int,
                          load: Callable[[], Awaitable[CachedBytes]]) -> CachedBytes | None:
        """The cached bytes of ``key``, loaded once by ``load`` when missing; None when they do not
        fit (too large, or the room is held by other loads) or the load failed: stream them."""
        entry = self.get(key)
        if entry is not None:
            return entry
        task = self._loading.get(key)
        if task is None:
            if not self._make_room(size):
                return None
            self.reserved += size
            task = asyncio.get_running_loop().create_task(self._load(key, slot, size, load))
            self._loading[key] = task
        # shielded: a client that goes away does not cancel the load the others wait for
        return await asyncio.shield(task)

    def _make_room(self, size: int) -> bool:
        if not self.fits(size) or self.reserved + size > self.cap:
            return False
        while self._entries and self.size + self.reserved + size > self.cap:
            self._drop(next(iter(self._entries)))
        return True

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.size -= entry.size
            self.evictions += 1

    async def _load(self, key: str, slot: tuple[str, str], size: int,
                    load: Callable[[], Awaitable[CachedBytes]]) -> CachedBytes | None:
        try:
            entry = await load()
        except Exception:  # not cached: the requests stream from the chunks instead
            log.warning("download cache: loading %s %s failed", *slot, exc_info=True)
            return None
        finally:
            self.reserved -= size
            del self._loading[key]
        previous = self._slots.get(slot)
        self._slots[slot] = key
        if previous is not None and previous != key and previous not in self._slots.values():
            self._drop(previous)  # the version this one replaces (unless another file has the same bytes)
        self._entries[key] = entry
        self.size += entry.size
        self.loads += 1
        return entry


def download_cache(request: Request) -> DownloadCache | None:
    """The process's cache (one per application, made at start-up), None when ``download_cache_mb`` is 0."""
    state = request.app.state
    cache = getattr(state, "download_cache", None)
    if cache is None:  # an application started without its lifespan
        cache = state.download_cache = DownloadCache(round(state.settings.download_cache_mb * (1 << 20)))
    return cache if cache.cap > 0 else None


def _sha256_hex(parts: Sequence[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


async def _load_whole(engine, file: dict, encoding: str, size: int, digest: str) -> CachedBytes:
    """Every chunk of one encoding of one file, checked against its stored SHA-256, joined into parts
    of ``SEND_PART`` bytes (a whole number of chunks)."""
    chunk = file["chunk_size"]
    per_part = max(1, SEND_PART // chunk)
    parts, pending = [], []
    async with engine.connect() as conn:
        for seq in range(-(-size // chunk)):
            data = await downloads.read_chunk(conn, file["id"], encoding, seq)
            if data is None or len(data) != min(chunk, size - seq * chunk):
                raise RuntimeError(f"{file['name']}: chunk {encoding}/{seq} is gone or truncated")
            pending.append(data)
            if len(pending) == per_part:
                parts.append(pending[0] if per_part == 1 else b"".join(pending))
                pending = []
    if pending:
        parts.append(b"".join(pending))
    if await anyio.to_thread.run_sync(_sha256_hex, parts) != digest:
        raise RuntimeError(f"{file['name']}: the {encoding} chunks do not match their SHA-256")
    return CachedBytes(tuple(parts), size, per_part * chunk)


class PartsResponse(Response):
    """Bytes already in memory, sent one part (≤ ``SEND_PART``) per ASGI message. The headers
    (Content-Length, Content-Type, ...) are the caller's."""

    def __init__(self, parts: list[bytes], status_code: int, headers: dict[str, str]):
        super().__init__(b"", status_code=status_code, headers=headers)
        self.parts = parts

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        last = len(self.parts) - 1
        for i, part in enumerate(self.parts):
            await send({"type": "http.response.body", "body": part, "more_body": i < last})
        if last < 0:
            await send({"type": "http.response.body", "body": b""})


# ---------------------------------------------------------------- streaming from the chunks


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
    engine = _engine(request)
    file, built = await _current(request, engine, name)
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
    cache = download_cache(request)
    if cache is not None and cache.fits(size):
        entry = await cache.get_or_load(digest, (name, encoding), size,
                                        lambda: _load_whole(engine, file, encoding, size, digest))
        if entry is not None:
            return PartsResponse(entry.slice(first, last), status, headers)
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
