"""HTTP conventions shared by every surface: strong ETags with 304s, Last-Modified from the data
version, Cache-Control per resource, gzip and open CORS for reads."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time
from collections import OrderedDict
from email.utils import format_datetime, parsedate_to_datetime

from fastapi import FastAPI, Request
from sqlalchemy import text
from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware

# Longest prefix wins.
CACHE_CONTROL = {
    "/v1/organisations": "public, max-age=60",
    "/v1/changes": "no-cache",
    "/v1/meta/": "no-cache",
    "/rest/organisation/": "public, max-age=60",
    "/rest/search/organisation": "public, max-age=60",
    "/rest/": "public, max-age=300",
    "/v1/": "public, max-age=300",
    "/hsds/": "public, max-age=300",
    "/ogc/": "public, max-age=300",
    "/catalog": "public, max-age=300",
    "/healthz": "no-store",
    "/readyz": "no-store",
}


def base_url(request: Request) -> str:
    """The public base URL: the configured one, else what the request was addressed to."""
    configured = request.app.state.settings.public_base_url
    return configured.rstrip("/") if configured else str(request.base_url).rstrip("/")


# Deletions leave no row in organisation: the change feed's last event counts too (both index-only).
DATA_VERSION_SQL = "SELECT greatest((SELECT max(updated_at) FROM organisation), (SELECT max(at) FROM change_event))"


async def data_version(request: Request) -> dt.datetime | None:
    """When the public data last changed: one index-only lookup, remembered for
    ``data_version_ttl_s`` (1 s) per process so that a busy server does not take a second pooled
    connection per request. Replicas may disagree for at most that long after a change."""
    state = request.app.state
    ttl = state.settings.data_version_ttl_s
    cached = getattr(state, "data_version_cache", None)
    now = time.monotonic()
    if cached is not None and now - cached[1] < ttl:
        return cached[0]
    async with state.read_engines[0].connect() as conn:
        version = (await conn.execute(text(DATA_VERSION_SQL))).scalar()
    state.data_version_cache = (version, now)
    return version


class ResponseCache:
    """Recent 200 answers of the public GET surfaces, per process, bounded in bytes (LRU).

    Keyed by the data version (``data_version``): a write moves it and every earlier answer stops
    matching, on every replica, within ``data_version_ttl_s``. An entry is also dropped after
    ``max_age`` seconds, for the changes that do not move the version (lookup-list labels). Neither
    bound exceeds the ``max-age`` these answers advertise (60-300 s), so no client sees anything
    staler than a shared cache in front of the API may already serve it.
    """

    def __init__(self, max_bytes: int, max_age: float):
        self.max_bytes, self.max_age = max_bytes, max_age
        self.entries: OrderedDict[tuple, tuple[list, bytes, float]] = OrderedDict()
        self.size = 0
        self.hits = self.misses = 0

    def get(self, key: tuple) -> tuple[list, bytes] | None:
        entry = self.entries.get(key)
        if entry is None or time.monotonic() - entry[2] > self.max_age:
            if entry is not None:
                self._drop(key)
            self.misses += 1
            return None
        self.entries.move_to_end(key)
        self.hits += 1
        return entry[0], entry[1]

    def put(self, key: tuple, headers: list, body: bytes) -> None:
        cost = len(body) + 64 * len(headers) + 256
        if cost > self.max_bytes // 8:  # one answer never takes more than an eighth of the budget
            return
        if key in self.entries:
            self._drop(key)
        self.entries[key] = (headers, body, time.monotonic())
        self.size += cost
        while self.size > self.max_bytes:
            self._drop(next(iter(self.entries)))

    def _drop(self, key: tuple) -> None:
        headers, body, _ = self.entries.pop(key)
        self.size -= len(body) + 64 * len(headers) + 256


# what an answer may vary on besides the path and query (Host and X-Forwarded-*: its links)
VARY_HEADERS = (b"host", b"accept", b"accept-language", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-prefix")


class ConditionalGet:
    """Pure ASGI middleware (no per-request task like BaseHTTPMiddleware): buffers 200 GET/HEAD
    responses of the data surfaces, adds ETag/Last-Modified/Cache-Control, answers 304, and
    remembers recent answers (``ResponseCache``) so that a repeated request costs no query."""

    def __init__(self, app, prefixes: tuple[str, ...] = ("/v1/", "/rest/", "/hsds/", "/ogc/", "/catalog", "/embed/")):
        self.app = app
        self.prefixes = prefixes
        self.cache: ResponseCache | None = None

    def _cache(self, scope) -> ResponseCache | None:
        if self.cache is None:
            settings = scope["app"].state.settings
            self.cache = ResponseCache(int(settings.response_cache_mb * 2**20), settings.response_cache_max_age_s)
        return self.cache if self.cache.max_bytes > 0 else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["method"] not in ("GET", "HEAD"):
            try:
                return await self.app(scope, receive, send)
            finally:  # a write through this process (admin API): ask for the data version again
                scope["app"].state.data_version_cache = None
        path = scope["path"]
        cache_control = next((CACHE_CONTROL[p] for p in sorted(CACHE_CONTROL, key=len, reverse=True) if path.startswith(p)), None)
        conditional = path.startswith(self.prefixes)
        if not conditional:
            if cache_control is None:
                return await self.app(scope, receive, send)

            async def send_with_cache_control(message):
                if message["type"] == "http.response.start" and message["status"] == 200:
                    headers = MutableHeaders(raw=message["headers"])
                    headers.setdefault("Cache-Control", cache_control)
                await send(message)

            return await self.app(scope, receive, send_with_cache_control)

        request = Request(scope)
        try:
            version = await data_version(request)
        except Exception:  # noqa: BLE001 - a missing Last-Modified must not fail the response
            version = None
        cache = self._cache(scope) if version is not None else None
        key = None
        if cache is not None:
            wanted = dict.fromkeys(VARY_HEADERS, b"")
            for name, value in scope["headers"]:
                if name in wanted:
                    wanted[name] = value
            key = (version, scope["method"], scope.get("scheme"), path, scope.get("query_string", b""), *wanted.values())
            hit = cache.get(key)
            if hit is not None:
                return await self._answer(request, hit[0], hit[1], version, send)

        start: dict = {}
        chunks: list[bytes] = []

        async def buffer(message):
            if message["type"] == "http.response.start":
                start.update(message)
                if message["status"] != 200 or _passes_through(message["headers"]):
                    start["status"] = -1  # streamed, or validated by the handler itself
                    if cache_control:
                        MutableHeaders(raw=message["headers"]).setdefault("Cache-Control", cache_control)
                    await send(message)
            elif start.get("status") != 200:
                await send(message)
            else:
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    body = b"".join(chunks)
                    headers = self._validators(start, body, cache_control, version)
                    if key is not None:
                        cache.put(key, headers, body)  # type: ignore[union-attr]
                    await self._answer(request, headers, body, version, send)

        await self.app(scope, receive, buffer)

    @staticmethod
    def _validators(start: dict, body: bytes, cache_control: str | None, version: dt.datetime | None) -> list:
        headers = MutableHeaders(raw=list(start["headers"]))
        if cache_control:
            headers.setdefault("Cache-Control", cache_control)
        headers["ETag"] = '"' + base64.urlsafe_b64encode(hashlib.sha256(body).digest()[:18]).decode() + '"'
        if version is not None:
            headers["Last-Modified"] = format_datetime(version.astimezone(dt.timezone.utc).replace(microsecond=0), usegmt=True)
        return headers.raw

    @staticmethod
    async def _answer(request: Request, raw: list, body: bytes, version: dt.datetime | None, send) -> None:
        etag = next(v.decode() for k, v in raw if k == b"etag")
        if _not_modified(request, etag, version):
            keep = [(k, v) for k, v in raw if k.lower() in (b"etag", b"last-modified", b"cache-control", b"vary")]
            await send({"type": "http.response.start", "status": 304, "headers": keep})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": list(raw)})
        await send({"type": "http.response.body", "body": body})


STREAMED = (b"application/x-ndjson", b"application/ndjson")


def _passes_through(raw_headers) -> bool:
    """Streams (NDJSON) are never buffered; responses with their own ETag (precomputed files) keep it."""
    for key, value in raw_headers:
        key = key.lower()
        if key == b"etag" or (key == b"content-type" and value.split(b";")[0].strip() in STREAMED):
            return True
    return False


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
