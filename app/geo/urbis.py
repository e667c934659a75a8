"""Client of the URBIS Localize REST service (the regional geocoder, or its local twin
``app.geo.urbis_server``).

    async with UrbisClient(settings.urbis_url, cache=PgCache(engine), concurrency=8, timeout=5, retries=3) as urbis:
        results = await urbis.geocode_many([AddressQuery("Rue de Namur", "59", "1000"), ...])
    # per item: GeocodeResult | None (not found) | UrbisUnavailable (service down: retry later) | UrbisError (bad input)

- Bilingual: URBIS answers street names in the requested language only, so every address is asked
  in French and in Dutch (concurrently) and the two answers are joined on the URBIS street id.
- Every request goes through a cache (``Cache``: ``PgCache`` on the ``geocode_cache`` table, or
  ``MemoryCache``) keyed by the service and the normalised request, so an address is asked once,
  across runs too; identical requests in flight are sent once.
- Bounded concurrency (a semaphore around the HTTP calls), timeouts, retries with exponential
  backoff and jitter on timeouts, connection errors, 5xx, 429 and unreadable answers.
- HTTP: a plain ``http://`` service (the local twin) is asked over a small keep-alive HTTP/1.1
  connection pool (``KeepAlivePool``): httpx costs ~1.3 ms of CPU per request, ten times more, and
  more than the twin's answer. HTTPS, proxies, credentials in the URL or a custom ``transport`` go
  through httpx.
- A circuit breaker: after ``failure_threshold`` consecutive failed attempts it opens for
  ``reset_timeout_s`` and calls fail at once with ``UrbisUnavailable``; then one probe request is let
  through (half-open) while the others wait for its outcome: success closes it, failure reopens it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Protocol, Self, runtime_checkable
from urllib.parse import quote, urlencode, urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
import httpx
import orjson
from yarl import URL

from ..text import fold
from .crs import to_lambert72, to_wgs84

log = logging.getLogger(__name__)

try:  # httpcore imports sniffio on every request; absent, each failed import searches sys.path (~0.5 ms)
    import sniffio  # noqa: F401
except ImportError:
    sys.modules.setdefault("sniffio", None)  # → an instant ImportError, same behaviour (asyncio)

LANGUAGES = ("fr", "nl")
LAMBERT72 = 31370
PATH = "/Rest/Localize"
CACHE_VERSION = "urbis:1"


# ---------------------------------------------------------------------------------------------
# errors, inputs, results
# ---------------------------------------------------------------------------------------------


class UrbisError(Exception):
    """The service refused the request or answered something unusable (retrying will not help)."""


class UrbisUnavailable(UrbisError):
    """The service is down, too slow or the circuit breaker is open: try again later
    (the importer marks the record ``geocode_status = 'pending'``)."""


@dataclass(frozen=True, slots=True)
class AddressQuery:
    """What to geocode. ``street_alt``: the street name in the other language, tried when
    ``street`` finds nothing. ``postcode`` may be "1000", 1000 or "B-1000"."""

    street: str
    number: str | None = None
    postcode: str | None = None
    municipality: str | None = None
    street_alt: str | None = None

    @classmethod
    def of(cls, item: AddressQuery | Mapping[str, Any] | Sequence) -> AddressQuery:
        if isinstance(item, AddressQuery):
            q = item
        elif isinstance(item, str):
            q = cls(item)
        elif isinstance(item, Mapping):
            q = cls(**{k: item.get(k) for k in ("street", "number", "postcode", "municipality", "street_alt")})
        else:
            q = cls(*item)
        return q.normalised()

    def normalised(self) -> AddressQuery:
        def clean(value) -> str | None:
            value = " ".join(str(value).split()) if value is not None else ""
            return value or None

        postcode = re.sub(r"\D", "", str(self.postcode)) if self.postcode is not None else ""
        return AddressQuery(
            street=clean(self.street) or "",
            number=clean(self.number),
            postcode=postcode if len(postcode) == 4 else None,
            municipality=clean(self.municipality),
            street_alt=clean(self.street_alt),
        )


@dataclass(frozen=True, slots=True)
class GeocodeResult:
    """One address, in both languages. ``x``/``y`` in Lambert 72 (EPSG:31370), ``lon``/``lat`` WGS84.

    ``precision``: ``address`` (the house number was found), ``interpolated``, ``approximated``
    (a neighbouring number), ``street`` (the street only). ``score``: 0–100, as URBIS gives it."""

    street_fr: str | None
    street_nl: str | None
    number: str | None
    postcode: str | None
    municipality_fr: str | None
    municipality_nl: str | None
    x: float
    y: float
    lon: float
    lat: float
    score: float
    precision: str
    street_id: str | None
    adnc: str | None
    qualification: dict = field(default_factory=dict)
    qualification_code: dict = field(default_factory=dict)
    distance: float | None = None  # reverse geocoding: metres from the asked point

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class UrbisStats:
    requests: int = 0         # HTTP requests sent (attempts)
    cache_hits: int = 0       # requests answered by the cache (memory or persistent)
    cache_misses: int = 0
    deduplicated: int = 0     # requests that joined an identical one in flight
    retries: int = 0
    failures: int = 0         # failed attempts (timeouts, connection errors, 5xx, 429, bad JSON)
    rejected: int = 0         # calls failed fast by the open circuit breaker
    breaker_opened: int = 0
    geocoded: int = 0
    not_found: int = 0
    unavailable: int = 0      # geocode() calls that ended in UrbisUnavailable
    errors: int = 0           # geocode() calls that ended in another UrbisError

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in asdict(self).items() if v)


# ---------------------------------------------------------------------------------------------
# caches
# ---------------------------------------------------------------------------------------------


@runtime_checkable
class Cache(Protocol):
    """A persistent store of URBIS answers, keyed by a hash of the normalised request."""

    async def get_many(self, keys: Sequence[str]) -> dict[str, dict]: ...

    async def put_many(self, entries: Sequence[tuple[str, dict, dict]]) -> None:
        """Store ``(key, request, response)`` triples (replacing older answers)."""


class MemoryCache:
    """A dict: for tests and one-off runs (shared between clients if you pass the same one)."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[dict, dict]] = {}

    async def get_many(self, keys: Sequence[str]) -> dict[str, dict]:
        return {k: self.data[k][1] for k in keys if k in self.data}

    async def put_many(self, entries: Sequence[tuple[str, dict, dict]]) -> None:
        for key, request, response in entries:
            self.data[key] = (request, response)


class PgCache:
    """The ``geocode_cache`` table, through a sync ``Engine`` (calls run in a thread) or an
    ``AsyncEngine``. ``max_age``: older answers count as absent (asked again, then replaced)."""

    _GET = "SELECT key, response FROM geocode_cache WHERE key = ANY(:keys)"
    _PUT = (
        "INSERT INTO geocode_cache (key, request, response) VALUES (:key, CAST(:request AS jsonb), CAST(:response AS jsonb)) "
        "ON CONFLICT (key) DO UPDATE SET request = EXCLUDED.request, response = EXCLUDED.response, created_at = now()"
    )

    def __init__(self, engine, *, max_age: timedelta | None = None) -> None:
        from sqlalchemy.ext.asyncio import AsyncEngine

        self.engine = engine
        self.is_async = isinstance(engine, AsyncEngine)
        self.max_age = max_age

    def _get_sql(self):
        from sqlalchemy import text

        sql = self._GET
        if self.max_age is not None:
            sql += " AND created_at > now() - CAST(:age AS interval)"
        return text(sql)

    def _get_params(self, keys: Sequence[str]) -> dict:
        params: dict[str, Any] = {"keys": list(keys)}
        if self.max_age is not None:
            params["age"] = f"{self.max_age.total_seconds()} seconds"
        return params

    @staticmethod
    def _rows(entries: Sequence[tuple[str, dict, dict]]) -> list[dict]:
        return [{"key": k, "request": orjson.dumps(req).decode(), "response": orjson.dumps(resp).decode()}
                for k, req, resp in entries]

    async def get_many(self, keys: Sequence[str]) -> dict[str, dict]:
        if not keys:
            return {}
        sql, params = self._get_sql(), self._get_params(keys)
        if self.is_async:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(sql, params)).all()
        else:
            def run():
                with self.engine.connect() as conn:
                    return conn.execute(sql, params).all()

            rows = await asyncio.to_thread(run)
        return {r.key: r.response for r in rows}

    async def put_many(self, entries: Sequence[tuple[str, dict, dict]]) -> None:
        if not entries:
            return
        from sqlalchemy import text

        sql, rows = text(self._PUT), self._rows(entries)
        if self.is_async:
            async with self.engine.begin() as conn:
                await conn.execute(sql, rows)
        else:
            def run():
                with self.engine.begin() as conn:
                    conn.execute(sql, rows)

            await asyncio.to_thread(run)


# ---------------------------------------------------------------------------------------------
# plain HTTP/1.1 with keep-alive
# ---------------------------------------------------------------------------------------------


class KeepAlivePool:
    """GET requests to one plain-HTTP origin over persistent connections, through aiohttp (its C
    HTTP parser and connection pool): a tenth of httpx's CPU per request here (measured: about
    0.1-0.2 ms against 1.3 ms), which is what bounds geocoding through the local twin. Errors are
    raised as httpx's (``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``, ``ReadError``,
    ``RemoteProtocolError``), so callers handle both clients alike; aiohttp itself retries a GET
    on a kept-alive connection the server had closed."""

    def __init__(self, host: str, port: int, *, headers: Mapping[str, str], timeout: float, connect_timeout: float,
                 host_header: str | None = None) -> None:
        self.origin = f"http://{host}:{port}"
        self.headers = {**headers, **({"Host": host_header} if host_header else {})}
        self.timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None
        self.opened = 0  # connections opened (for tests and stats)

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            trace = aiohttp.TraceConfig()

            async def counted(session, context, params) -> None:
                self.opened += 1

            trace.on_connection_create_end.append(counted)
            self._session = aiohttp.ClientSession(
                self.origin, headers=self.headers, timeout=self.timeout, trace_configs=[trace], auto_decompress=True,
                connector=aiohttp.TCPConnector(limit=0, use_dns_cache=True), skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def get(self, target: str) -> tuple[int, dict[str, str], bytes]:
        """``GET target`` (path and query, already URL-encoded) → status, headers (lower-case
        names), body."""
        url = URL(target, encoded=True)
        try:
            async with self._session_now().get(url, allow_redirects=False) as response:
                body = await response.read()
                return response.status, {k.lower(): v for k, v in response.headers.items()}, body
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        except TimeoutError as exc:  # aiohttp's connect and read timeouts
            raise (httpx.ConnectTimeout if "connect" in str(exc).lower() else httpx.ReadTimeout)(str(exc) or "timeout") from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise httpx.ReadError(str(exc)) from exc
        except aiohttp.ClientPayloadError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc
        except aiohttp.ClientResponseError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _keep_alive_pool(base_url: str, headers: Mapping[str, str], timeout: float, connect_timeout: float) -> KeepAlivePool | None:
    """The pool for a plain-HTTP base URL without credentials or a proxy to go through, else None."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or not parts.hostname or parts.username or parts.password:
        return None
    proxies = getproxies()
    if (proxies.get("http") or proxies.get("all")) and not proxy_bypass(parts.hostname):
        return None
    host = parts.hostname
    return KeepAlivePool(host, parts.port or 80, headers=headers, timeout=timeout, connect_timeout=connect_timeout,
                         host_header=parts.netloc)


# ---------------------------------------------------------------------------------------------
# circuit breaker
# ---------------------------------------------------------------------------------------------


class CircuitBreaker:
    """closed → (``failure_threshold`` consecutive failures) → open → (``reset_timeout_s``) →
    half-open: one probe goes through, the other callers wait for its outcome."""

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"

    def __init__(self, failure_threshold: int = 5, reset_timeout_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.failure_threshold = max(1, failure_threshold)
        self.reset_timeout_s = reset_timeout_s
        self.clock = clock
        self.state = self.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.opened = 0
        self._probe_done: asyncio.Event | None = None

    @property
    def retry_at(self) -> float:
        return self.opened_at + self.reset_timeout_s

    async def acquire(self) -> bool:
        """Before a request: returns whether this caller is the half-open probe; raises
        ``UrbisUnavailable`` while open."""
        while True:
            if self.state == self.CLOSED:
                return False
            if self.state == self.OPEN:
                wait = self.retry_at - self.clock()
                if wait > 0:
                    raise UrbisUnavailable(f"URBIS circuit open after {self.failures} failures (retry in {wait:.1f} s)")
                self.state = self.HALF_OPEN
                self._probe_done = asyncio.Event()
                return True
            await self._probe_done.wait()  # half-open: wait for the probe's outcome, then look again

    def success(self) -> None:
        self.failures = 0
        if self.state != self.CLOSED:
            self.state = self.CLOSED
            self._release()

    def failure(self) -> None:
        self.failures += 1
        if self.state == self.HALF_OPEN or (self.state == self.CLOSED and self.failures >= self.failure_threshold):
            self.state = self.OPEN
            self.opened_at = self.clock()
            self.opened += 1
            self._release()

    def _release(self) -> None:
        if self._probe_done is not None:
            self._probe_done.set()
            self._probe_done = None


# ---------------------------------------------------------------------------------------------
# the client
# ---------------------------------------------------------------------------------------------

_PRECISION = (("interpol", "interpolated"), ("approx", "approximated"), ("nearest", "approximated"), ("found", "address"))


def _canonical(value):
    if isinstance(value, str):
        value = " ".join(value.split())
        return value.lower() if value.isascii() else fold(value)
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _precision(item: dict, asked_number: str | None) -> str:
    police = fold(str((item.get("qualificationText") or {}).get("policeNumber") or ""))
    number = str((item.get("address") or {}).get("number") or "").strip()
    if not number or "not" in police:  # "Not found", "Not given", "NotFound"
        return "street"
    for word, precision in _PRECISION:
        if word in police:
            return precision
    return "address" if asked_number is None or fold(number) == fold(asked_number) else "approximated"


def _items(body: dict) -> list[dict]:
    """The candidates of an answer, best first (``result`` is a list, or one object for getaddressfromxy)."""
    result = body.get("result")
    if isinstance(result, dict):
        result = [result] if result else []
    if not isinstance(result, list):
        return []
    items = [r for r in result if isinstance(r, dict) and isinstance(r.get("point"), dict) and isinstance(r.get("address"), dict)]
    return sorted(items, key=lambda r: -float(r.get("score") or 0))


def _street(item: dict) -> dict:
    return (item.get("address") or {}).get("street") or {}


def _same_place(a: dict, b: dict) -> bool:
    sa, sb = _street(a), _street(b)
    if sa.get("id") is not None and sb.get("id") is not None:
        return str(sa["id"]) == str(sb["id"])
    return str(sa.get("postCode")) == str(sb.get("postCode")) and abs(a["point"]["x"] - b["point"]["x"]) < 1 and \
        abs(a["point"]["y"] - b["point"]["y"]) < 1


class UrbisClient:
    """Async client of URBIS Localize. Use as ``async with`` (or call ``aclose()``)."""

    def __init__(
        self,
        base_url: str,
        *,
        cache: Cache | None = None,
        concurrency: int = 8,
        timeout: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.25,
        max_backoff_s: float = 8.0,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        min_score: float = 50.0,
        cache_namespace: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        keep_alive_pool: bool | None = None,
    ) -> None:
        """``keep_alive_pool``: ask a plain-HTTP service through ``KeepAlivePool`` (None: whenever
        it can, i.e. http://, no credentials, no proxy, no ``transport``); False: always httpx."""
        self.base_url = base_url.rstrip("/").removesuffix(PATH)
        self.cache = cache
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.min_score = min_score
        # answers depend on the service: the twin's are not the regional service's
        self.namespace = cache_namespace or re.sub(r"^https?://", "", self.base_url)
        self.breaker = CircuitBreaker(failure_threshold, reset_timeout_s)
        self.stats = UrbisStats()
        self._transport = transport
        self._headers = {"User-Agent": "bruso-urbis-client/1", "Accept": "application/json", **(headers or {})}
        self._http: httpx.AsyncClient | None = None
        self._pool: KeepAlivePool | None = None
        if keep_alive_pool is not False and transport is None:
            self._pool = _keep_alive_pool(self.base_url, self._headers, timeout, min(timeout, 3.0))
            if self._pool is None and keep_alive_pool:
                raise ValueError(f"no keep-alive pool for {self.base_url}: plain http:// without credentials or proxy only")
        self._target = quote(urlsplit(self.base_url).path.rstrip("/")) + PATH
        self._sem = asyncio.Semaphore(self.concurrency)
        self._memo: dict[str, dict] = {}
        self._known_absent: set[str] = set()
        self._inflight: dict[str, asyncio.Future] = {}
        self._to_store: list[tuple[str, dict, dict]] = []

    # ---- lifecycle
    async def __aenter__(self) -> Self:
        if self._pool is None:
            self._client()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 3.0)),
                limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
                headers=self._headers,
                transport=self._transport,
            )
        return self._http

    async def aclose(self) -> None:
        try:
            await self.flush()
        finally:
            if self._pool is not None:
                await self._pool.aclose()
            if self._http is not None:
                await self._http.aclose()
                self._http = None

    async def flush(self) -> None:
        """Write the answers not yet in the persistent cache."""
        if self.cache is None or not self._to_store:
            return
        entries, self._to_store = self._to_store, []
        try:
            await self.cache.put_many(entries)
        except Exception:  # the cache is an optimisation: a failing one must not fail the geocoding
            log.exception("URBIS cache: could not store %d answers", len(entries))

    # ---- requests
    def _key(self, endpoint: str, request: dict) -> str:
        """Same key for requests differing only by case, accents or blanks (URBIS ignores them)."""
        canonical = json.dumps([CACHE_VERSION, self.namespace, endpoint, _canonical(request)], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    @staticmethod
    def _params(endpoint: str, request: dict) -> dict:
        if endpoint == "getaddresses":
            return request
        return {"json": orjson.dumps(request).decode()}  # compact, UTF-8: json.dumps(separators=(",", ":"), ensure_ascii=False)

    def _requests_for(self, q: AddressQuery, language: str, street: str) -> tuple[str, dict]:
        if q.postcode:
            req: dict[str, Any] = {
                "language": language,
                "address": {"street": {"name": street, "postcode": q.postcode}, "number": q.number or ""},
                "spatialReference": str(LAMBERT72),
            }
            return "getaddressesfields", req
        line = " ".join(p for p in (street, q.number) if p)
        if q.municipality:
            line += f", {q.municipality}"
        return "getaddresses", {"language": language, "address": line, "spatialReference": str(LAMBERT72)}

    async def request(self, endpoint: str, request: dict) -> dict:
        """One Localize call (cached): ``endpoint`` getaddresses | getaddressesfields |
        getaddressfromxy, ``request`` its parameters (for the ``json=`` endpoints, the JSON object)."""
        key = self._key(endpoint, request)
        if key in self._memo:
            self.stats.cache_hits += 1
            return self._memo[key]
        if key in self._inflight:
            self.stats.deduplicated += 1
            return await asyncio.shield(self._inflight[key])
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # no "never retrieved" warnings
        self._inflight[key] = future
        try:
            body = None
            if self.cache is not None and key not in self._known_absent:
                try:
                    body = (await self.cache.get_many([key])).get(key)
                except Exception:
                    log.exception("URBIS cache: lookup failed")
            if body is not None:
                self.stats.cache_hits += 1
            else:
                self.stats.cache_misses += 1
                body = await self._fetch(endpoint, self._params(endpoint, request))
                if not body.get("error"):
                    self._to_store.append((key, {"service": self.namespace, "endpoint": endpoint, "request": request}, body))
                    if len(self._to_store) >= 100:
                        await self.flush()
            if body.get("error"):
                raise UrbisError(f"URBIS {endpoint}: {body.get('message') or body.get('status') or 'error'}")
            self._memo[key] = body
            future.set_result(body)
            return body
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else UrbisUnavailable("cancelled"))
            raise
        finally:
            self._inflight.pop(key, None)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff_s))
        return delay

    async def _get(self, endpoint: str, query: str) -> tuple[int, Mapping[str, str], bytes]:
        """One HTTP GET: status, headers (look-ups by lower-case name), body."""
        if self._pool is not None:
            return await self._pool.get(f"{self._target}/{endpoint}?{query}")
        response = await self._client().get(f"{self.base_url}{PATH}/{endpoint}?{query}")  # one URL parse, not params=
        return response.status_code, response.headers, response.content

    async def _fetch(self, endpoint: str, params: dict) -> dict:
        query = urlencode(params, quote_via=quote)
        attempt = 0
        while True:
            try:
                probe = await self.breaker.acquire()
            except UrbisUnavailable:
                self.stats.rejected += 1
                raise
            retry_after = None
            settled = False
            try:
                async with self._sem:
                    self.stats.requests += 1
                    try:
                        status, headers, content = await self._get(endpoint, query)
                    except (httpx.TimeoutException, httpx.TransportError) as exc:
                        problem = f"{type(exc).__name__} {exc}".strip()
                    else:
                        if status == 429 or status >= 500:
                            problem = f"HTTP {status}"
                            try:
                                retry_after = float(headers.get("retry-after", ""))
                            except ValueError:
                                pass
                        elif status >= 400:
                            self.breaker.success()  # it answered: the service is up, the request is wrong
                            settled = True
                            raise UrbisError(f"URBIS {endpoint}: HTTP {status} {content[:200].decode('utf-8', 'replace')}")
                        else:
                            try:
                                body = orjson.loads(content)
                            except ValueError:
                                body = None
                            if isinstance(body, dict) and "result" in body:
                                self.breaker.success()
                                settled = True
                                return body
                            problem = "answer is not URBIS JSON"
                self.stats.failures += 1
                self.breaker.failure()
                settled = True
                if self.breaker.opened > self.stats.breaker_opened:
                    self.stats.breaker_opened = self.breaker.opened
                    log.warning("URBIS circuit opened for %.0f s: %s (%s%s/%s?%s)", self.breaker.reset_timeout_s, problem,
                                self.base_url, PATH, endpoint, query)
            finally:
                if probe and not settled:  # the probe was cancelled or crashed: count it as a failure
                    self.breaker.failure()
            if attempt >= self.retries or self.breaker.state == CircuitBreaker.OPEN:
                raise UrbisUnavailable(f"URBIS {endpoint}: {problem} after {attempt + 1} attempt(s)")
            attempt += 1
            self.stats.retries += 1
            await asyncio.sleep(self._delay(attempt, retry_after))

    # ---- raw endpoints
    async def get_addresses(self, address: str, language: str = "fr", spatial_reference: int = LAMBERT72) -> dict:
        return await self.request("getaddresses", {"language": language, "address": address, "spatialReference": str(spatial_reference)})

    async def get_addresses_fields(self, street: str, number: str | None = None, postcode: str | None = None,
                                   language: str = "fr", spatial_reference: int = LAMBERT72) -> dict:
        return await self.request("getaddressesfields", {
            "language": language,
            "address": {"street": {"name": street, "postcode": postcode or ""}, "number": number or ""},
            "spatialReference": str(spatial_reference),
        })

    async def get_address_from_xy(self, x: float, y: float, language: str = "fr", spatial_reference: int = LAMBERT72) -> dict:
        return await self.request("getaddressfromxy", {
            "language": language, "point": {"x": x, "y": y}, "spatialReference": spatial_reference,
        })

    # ---- geocoding
    async def _both(self, calls: list) -> list:
        """Run the per-language calls together; the first failure (unavailability first) is raised."""
        results = await asyncio.gather(*calls, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise next((e for e in errors if isinstance(e, UrbisUnavailable)), errors[0])
        return results

    async def _find(self, q: AddressQuery, street: str) -> tuple[dict, dict | None] | None:
        """The best candidate (either language) and its twin in the other language."""
        answers = await self._both([self.request(*self._requests_for(q, lang, street)) for lang in LANGUAGES])
        lists = {lang: _items(body) for lang, body in zip(LANGUAGES, answers, strict=True)}
        firsts = [(lists[lang][0], lang) for lang in LANGUAGES if lists[lang]]
        if not firsts:
            return None
        primary, lang = max(firsts, key=lambda p: (float(p[0].get("score") or 0), p[1] == "fr"))
        other_lang = "nl" if lang == "fr" else "fr"
        number = (primary.get("address") or {}).get("number")
        same = [r for r in lists[other_lang] if _same_place(primary, r)]
        twin = next((r for r in same if (r.get("address") or {}).get("number") == number), same[0] if same else None)
        if twin is None:  # ask again in the other language with the name found
            name = _street(primary).get("name") or street
            endpoint, req = self._requests_for(
                AddressQuery(name, q.number, str(_street(primary).get("postCode") or q.postcode or "") or None, q.municipality),
                other_lang, name)
            twin = next((r for r in _items(await self.request(endpoint, req)) if _same_place(primary, r)), None)
        return (primary, twin) if lang == "fr" else (twin, primary)

    def _result(self, fr: dict | None, nl: dict | None, asked_number: str | None) -> GeocodeResult:
        main = fr if fr is not None else nl
        other = nl if main is fr else fr
        street = _street(main)
        x, y = float(main["point"]["x"]), float(main["point"]["y"])
        lon, lat = to_wgs84(x, y)
        number = str((main.get("address") or {}).get("number") or "").strip() or None
        distance = main.get("distance")
        return GeocodeResult(
            street_fr=_street(fr).get("name") if fr else None,
            street_nl=_street(nl).get("name") if nl else None,
            number=number,
            postcode=str(street.get("postCode")) if street.get("postCode") not in (None, "") else None,
            municipality_fr=_street(fr).get("municipality") if fr else None,
            municipality_nl=_street(nl).get("municipality") if nl else None,
            x=round(x, 2), y=round(y, 2), lon=round(lon, 7), lat=round(lat, 7),
            score=float(main.get("score") or (other or {}).get("score") or 0),
            precision=_precision(main, asked_number),
            street_id=str(street["id"]) if street.get("id") is not None else None,
            adnc=(str(main["adNc"]).strip() or None) if main.get("adNc") is not None else None,
            qualification=dict(main.get("qualificationText") or {}),
            qualification_code=dict(main.get("qualificationCode") or {}),
            distance=float(distance) if distance is not None else None,
        )

    async def _geocode(self, q: AddressQuery) -> GeocodeResult | None:
        try:
            if not q.street:
                self.stats.not_found += 1
                return None
            found = None
            for street in dict.fromkeys((q.street, q.street_alt)):
                if street:
                    found = await self._find(q, street)
                    if found is not None and float((found[0] or found[1]).get("score") or 0) >= self.min_score:
                        break
            if found is None or float((found[0] or found[1]).get("score") or 0) < self.min_score:
                self.stats.not_found += 1
                return None
            self.stats.geocoded += 1
            return self._result(*found, q.number)
        except UrbisUnavailable:
            self.stats.unavailable += 1
            raise
        except UrbisError:
            self.stats.errors += 1
            raise

    async def geocode(self, street: str, number: str | None = None, postcode: str | int | None = None,
                      municipality: str | None = None, *, street_alt: str | None = None) -> GeocodeResult | None:
        """One address → a bilingual result, or None when URBIS does not know it (or scores it
        below ``min_score``). Raises ``UrbisUnavailable`` (try later) or ``UrbisError``."""
        return await self._geocode(AddressQuery(street, number, postcode, municipality, street_alt).normalised())

    async def geocode_many(
        self,
        items: Iterable[AddressQuery | Mapping[str, Any] | Sequence],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> list[GeocodeResult | None | UrbisError]:
        """Geocode many addresses concurrently; the answer has one entry per item, in order:
        ``GeocodeResult``, ``None`` (not found) or the ``UrbisError`` / ``UrbisUnavailable`` raised
        for it. Items: ``AddressQuery``, mappings with the same keys, or tuples in its order.
        ``progress(n)`` is called as items complete."""
        queries = [AddressQuery.of(item) for item in items]
        await self._prefetch(queries)
        gate = asyncio.Semaphore(self.concurrency * 4)

        async def one(q: AddressQuery) -> GeocodeResult | None | UrbisError:
            async with gate:
                try:
                    return await self._geocode(q)
                except UrbisError as exc:
                    return exc
                finally:
                    if progress is not None:
                        progress(1)

        try:
            return list(await asyncio.gather(*(one(q) for q in queries)))
        finally:
            await self.flush()

    async def _prefetch(self, queries: list[AddressQuery]) -> None:
        """One cache query per 500 requests instead of one per request."""
        if self.cache is None:
            return
        keys = list(dict.fromkeys(
            self._key(*self._requests_for(q, lang, q.street)) for q in queries if q.street for lang in LANGUAGES
        ))
        keys = [k for k in keys if k not in self._memo]
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            try:
                found = await self.cache.get_many(chunk)
            except Exception:
                log.exception("URBIS cache: prefetch failed")
                return
            self._memo.update(found)
            self._known_absent.update(k for k in chunk if k not in found)

    async def reverse(self, x: float, y: float, spatial_reference: int = LAMBERT72) -> GeocodeResult | None:
        """The address at a point, in both languages: Lambert 72 by default, or
        ``spatial_reference=4326`` with x = lon, y = lat. ``distance``: metres from the point."""
        if spatial_reference != LAMBERT72:
            x, y = to_lambert72(x, y)
        try:
            fr, nl = await self._both([self.get_address_from_xy(round(x, 2), round(y, 2), lang) for lang in LANGUAGES])
        except UrbisUnavailable:
            self.stats.unavailable += 1
            raise
        fr_items, nl_items = _items(fr), _items(nl)
        if not fr_items and not nl_items:
            self.stats.not_found += 1
            return None
        main_fr = fr_items[0] if fr_items else None
        main_nl = next((r for r in nl_items if main_fr is None or _same_place(main_fr, r)), None)
        self.stats.geocoded += 1
        return self._result(main_fr, main_nl, None)


def geocode_all(base_url: str, items: Iterable[AddressQuery | Mapping[str, Any] | Sequence], *,
                cache: Cache | None = None, **client_options) -> tuple[list[GeocodeResult | None | UrbisError], UrbisStats]:
    """``geocode_many`` for synchronous callers (not from inside a running event loop)."""

    async def go():
        async with UrbisClient(base_url, cache=cache, **client_options) as client:
            return await client.geocode_many(items), client.stats

    return asyncio.run(go())
