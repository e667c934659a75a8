"""One exception hierarchy → one handler → RFC 9457 ``application/problem+json``."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger("bruso")
PROBLEM = "application/problem+json"


class Problem(Exception):
    status = 500
    title = "Internal Server Error"

    def __init__(self, detail: str, *, headers: dict | None = None, **extra):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


class BadRequest(Problem):
    status, title = 400, "Bad Request"


class NotFound(Problem):
    status, title = 404, "Not Found"


class Gone(Problem):
    status, title = 410, "Gone"


class Conflict(Problem):
    status, title = 409, "Conflict"


class PreconditionFailed(Problem):
    status, title = 412, "Precondition Failed"


class ContentTooLarge(Problem):
    status, title = 413, "Content Too Large"


class UnsupportedMediaType(Problem):
    status, title = 415, "Unsupported Media Type"


class PreconditionRequired(Problem):
    status, title = 428, "Precondition Required"


class ServiceUnavailable(Problem):
    status, title = 503, "Service Unavailable"


def problem_response(status: int, title: str, detail: str, instance: str, headers=None, **extra) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, "instance": instance, **extra}
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM, headers=headers)


def _timed_out(exc: Exception) -> bool:
    """A statement cancelled by ``statement_timeout`` (psycopg's QueryCanceled, 57014)."""
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) == "57014" or "statement timeout" in str(orig or "")


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return problem_response(exc.status, exc.title, exc.detail, request.url.path, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        # FastAPI answers 422 by default; a bad parameter is a 400 here, naming the parameter.
        errors = [
            {"parameter": ".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]), "in": e["loc"][0], "reason": e["msg"]}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['parameter']}: {e['reason']}" for e in errors)
        return problem_response(400, "Bad Request", detail, request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        titles = {404: "Not Found", 405: "Method Not Allowed"}
        detail = exc.detail if exc.status_code != 404 else f"no resource at {request.url.path}"
        return problem_response(exc.status_code, titles.get(exc.status_code, "Error"), str(detail), request.url.path, exc.headers)

    @app.exception_handler(PoolTimeout)
    async def _pool_exhausted(request: Request, exc: Exception):
        log.warning("no database connection free within the pool timeout")
        return problem_response(
            503, "Service Unavailable", "the service is busy; retry shortly", request.url.path, {"Retry-After": "5"}
        )

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: Exception):
        if _timed_out(exc):  # QueryCanceled is an OperationalError: not an outage
            log.warning("statement timeout on %s", request.url.path)
            return problem_response(
                503, "Service Unavailable", "the query took too long", request.url.path, {"Retry-After": "5"}
            )
        log.warning("database unavailable: %s", type(exc).__name__)
        return problem_response(
            503, "Service Unavailable", "the database is unavailable; retry shortly", request.url.path, {"Retry-After": "5"}
        )

    @app.exception_handler(DataError)
    async def _bad_data(request: Request, exc: DataError):
        # psycopg refuses to send a NUL character (PostgreSQL text cannot hold one): that is the
        # client's %00, in any text parameter of any surface, not a server fault
        if "NUL (0x00)" in str(exc.orig):
            names = [k for k, v in request.query_params.multi_items() if "\x00" in k or "\x00" in v]
            name = names[0] if names else "path"
            return problem_response(400, "Bad Request", f"{name}: must not contain a NUL character (%00)",
                                    request.url.path, parameter=name)
        return await _db_error(request, exc)

    @app.exception_handler(DBAPIError)
    async def _db_error(request: Request, exc: DBAPIError):
        if _timed_out(exc):
            return problem_response(
                503, "Service Unavailable", "the query took too long", request.url.path, {"Retry-After": "5"}
            )
        log.exception("database error")
        return problem_response(500, "Internal Server Error", "unexpected error", request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error")
        return problem_response(500, "Internal Server Error", "unexpected error", request.url.path)
