"""What every response passes through first: a request id (``X-Request-ID``), security headers,
one structured JSON log line per request, and per-client rate limits on public reads.

Rate limits are token buckets in the process (``rate_limit_per_minute`` refill, ``rate_limit_burst``
capacity) keyed by the client address; behind a load balancer set ``trusted_proxies`` so the
``X-Forwarded-For`` client is used. With N replicas a client gets at most N× the limit: the
balancer's own limit (or sticky routing) is the global one.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections import OrderedDict

from starlette.datastructures import MutableHeaders

from .errors import problem_response

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
access = logging.getLogger("bruso.access")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# HTML pages (/docs) need Swagger UI's inline start-up script; the embed pages set their own CSP
# (framing allowed) and keep it. Everything else may not be framed.
CSP_HTML = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
CSP_DATA = "default-src 'none'; frame-ancestors 'none'"
UNLIMITED = ("/healthz", "/readyz", "/admin", "/static")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname.lower(),
               "logger": record.name, "message": record.getMessage()}
        rid = request_id.get()
        if rid:
            doc["request_id"] = rid
        doc.update(getattr(record, "fields", {}))
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("bruso")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class TokenBuckets:
    def __init__(self, per_minute: float, burst: int, max_clients: int = 100_000):
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str, now: float | None = None) -> float:
        """0 when allowed; else the seconds until a token is available."""
        now = time.monotonic() if now is None else now
        tokens, last = self.buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self.buckets[client] = (tokens, now)
        if len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)
        return wait


class Edge:
    """Pure ASGI middleware (outermost)."""

    def __init__(self, app, settings):
        self.app = app
        self.trusted = set(settings.trusted_proxies)
        self.limits = TokenBuckets(settings.rate_limit_per_minute, settings.rate_limit_burst) if settings.rate_limit_per_minute > 0 else None

    def _client(self, scope) -> str:
        host = (scope.get("client") or ("-", 0))[0]
        if host in self.trusted:
            for key, value in scope["headers"]:
                if key == b"x-forwarded-for":
                    return value.decode("latin-1").split(",")[-1].strip() or host
        return host

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        rid = incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)
        path = scope["path"]
        client = self._client(scope)
        status = {"code": 500}

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = rid
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
                if "content-security-policy" not in headers:
                    html = headers.get("content-type", "").startswith("text/html")
                    headers["Content-Security-Policy"] = CSP_HTML if html else CSP_DATA
                    headers.setdefault("X-Frame-Options", "DENY")
            await send(message)

        try:
            if self.limits is not None and scope["method"] in ("GET", "HEAD") and not path.startswith(UNLIMITED):
                wait = self.limits.take(client)
                if wait > 0:
                    retry = str(max(1, round(wait + 0.5)))
                    response = problem_response(429, "Too Many Requests", f"rate limit exceeded; retry in {retry} s",
                                                path, {"Retry-After": retry})
                    return await response(scope, receive, send_with_headers)
            await self.app(scope, receive, send_with_headers)
        finally:
            access.info(
                "request",
                extra={"fields": {"request_id": rid, "method": scope["method"], "path": path, "status": status["code"], "client": client,
                                  "duration_ms": round((time.perf_counter() - started) * 1000, 1)}},
            )
            request_id.reset(token)
