"""The authenticated write side under ``/admin``: imports, record edits with optimistic concurrency,
publication, merges, the quarantine, the audit log and API keys.

* Authentication: ``Authorization: Bearer bruso_<prefix>_<secret>`` (:mod:`app.auth`); 401 with
  ``WWW-Authenticate: Bearer`` for a missing, unknown or revoked key, 403 for a missing scope.
* Writes go to the primary (``app.state.engine``) and are audited in their own transaction
  (``audit_log``: actor = key name and prefix, action, target, before/after, ``X-Request-ID``).
* Edits are JSON merge patches (RFC 7396) of the document ``GET /admin/organisations/{id}`` returns,
  restricted to its flat editable fields (:data:`EDITABLE`). The merged values are validated by the
  importer's own record validation (``record_to_row`` + ``check_row``), so an edit and an import
  accept and normalise exactly the same values. ``If-Match`` is required (428), a stale one is a 412.
* Every body is read after authentication and capped (:data:`MAX_UPLOAD_BYTES`, :data:`MAX_JSON_BYTES`).
"""

from __future__ import annotations

import asyncio
import base64
import email.message
import hashlib
import logging
import mmap
import re
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from .. import search
from ..search import documents
from ..auth import (
    Principal,
    audit,
    insert_key,
    keys,
    require_admin,
    require_edit,
    require_import,
    revoke,
    write_audit,
)
from ..errors import (
    BadRequest,
    Conflict,
    ContentTooLarge,
    Gone,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    UnsupportedMediaType,
)
from ..http import base_url
from ..importer.checks import quality
from ..loaders.legacy import (
    _LISTS,
    _PLAIN,
    SEARCH_TEXT_SQL,
    Known,
    delete_organisations,
    record_to_row,
)
from ..models import LANG_STATUSES, PUBLICATION_STATES, Organisation
from ..models.operations import SCOPES
from ..serialize import v1 as shape

log = logging.getLogger("bruso.admin")

router = APIRouter(prefix="/admin", tags=["admin"])

# Settings of the write side (module constants until they move to app.settings).
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # the largest request body POST /admin/imports accepts (413 beyond)
MAX_JSON_BYTES = 1024 * 1024  # the largest JSON body of the other writes
REJECTED_SHOWN = 1000  # rejected records listed in an import's answer (all are in the quarantine)
UPLOAD_KINDS = {".json": "legacy", ".ndjson": "legacy", ".csv": "table", ".xlsx": "table"}
GEOCODE_MODES = ("none", "missing", "all")


def _field_error(errors: list[dict]) -> BadRequest:
    detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
    return BadRequest(detail, field=errors[0]["field"], errors=errors)


PROBLEM = {"content": {"application/problem+json": {}}}
AUTH_RESPONSES = {
    401: {"description": "No API key, or an unknown, malformed or revoked one (`WWW-Authenticate: Bearer`)", **PROBLEM},
    403: {"description": "The key lacks the scope this operation needs", **PROBLEM},
}
JSON_RESPONSES = {
    400: {"description": "Bad request: the problem names the field or parameter at fault", **PROBLEM},
    413: {"description": "The body is too large", **PROBLEM},
    415: {"description": "The body is not JSON", **PROBLEM},
}
RECORD_RESPONSES = {
    404: {"description": "No such organisation", **PROBLEM},
    410: {"description": "Deleted, or merged into another record (the problem names the successor)", **PROBLEM},
}
PRECONDITION_RESPONSES = {
    412: {"description": "If-Match does not match the record's current ETag: someone changed it; GET it again", **PROBLEM},
    428: {"description": "If-Match is required (the ETag of GET /admin/organisations/{id})", **PROBLEM},
}
OrganisationId = Annotated[int, Path(description="Legacy id of the activity place", ge=1, le=2**31 - 1)]
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", description="The ETag of the record as last read (GET /admin/organisations/{id}); required"),
]


# ---------------------------------------------------------------- request plumbing

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")  # as app.edge accepts it


def request_id(
    x_request_id: Annotated[
        str | None,
        Header(alias="X-Request-ID", description="Recorded with each write in the audit log; generated when absent or "
                                                 "malformed (letters, digits, . _ : -, at most 128), and echoed"),
    ] = None,
) -> str:
    """The request id the edge middleware assigned (the one in the access log and the response's
    X-Request-ID); without that middleware, the caller's valid X-Request-ID or a new one."""
    try:
        from ..edge import request_id as edge_request_id
    except ImportError:  # pragma: no cover - the edge middleware is optional wiring
        edge_request_id = None
    assigned = edge_request_id.get() if edge_request_id is not None else None
    if assigned:
        return assigned
    if x_request_id is not None and _REQUEST_ID.match(x_request_id.strip()):
        return x_request_id.strip()
    return uuid.uuid4().hex


RequestId = Annotated[str, Depends(request_id)]


def _respond(body: Any, rid: str, *, status: int = 200, headers: dict | None = None,
             background: BackgroundTask | None = None) -> Response:
    return Response(
        orjson.dumps(body, default=str), status_code=status, media_type="application/json",
        headers={"Cache-Control": "no-store", "X-Request-ID": rid, **(headers or {})}, background=background,
    )


def _query(request: Request, allowed: set[str]) -> dict[str, str]:
    params = request.query_params
    unknown = sorted(set(params.keys()) - allowed)
    if unknown:
        raise BadRequest(f"{unknown[0]}: unknown parameter", parameter=unknown[0], unknown=unknown)
    for key in set(params):
        if len(params.getlist(key)) > 1:
            raise BadRequest(f"{key}: give it once", parameter=key)
    return dict(params)


def _limit(params: dict, default: int = 50, maximum: int = 1000) -> int:
    raw = params.get("limit")
    if raw is None:
        return default
    if not raw.isascii() or not raw.strip().isdigit() or not 1 <= int(raw) <= 10**9:
        raise BadRequest(f"limit: expected a positive integer, not {raw!r}", parameter="limit")
    return min(int(raw), maximum)


def _positive_int(params: dict, name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.strip().isdigit() or not 1 <= int(raw) <= 2**63 - 1:
        raise BadRequest(f"{name}: expected a positive integer, not {raw!r}", parameter=name)
    return int(raw)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise ContentTooLarge(f"the body is {int(declared):,} bytes; the limit is {limit:,}", limit=limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ContentTooLarge(f"the body exceeds the limit of {limit:,} bytes", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _is_json(content_type: str, extra: tuple[str, ...] = ()) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", *extra)


async def _read_json(request: Request, *, extra_types: tuple[str, ...] = ()) -> Any:
    if not _is_json(request.headers.get("content-type", ""), extra_types):
        raise UnsupportedMediaType(f"send the body as {' or '.join(('application/json', *extra_types))}")
    raw = await _read_body(request, MAX_JSON_BYTES)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body: not valid JSON ({exc})", field="body") from None


def _model(model: type[BaseModel], data: Any) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]) or "body", "reason": e["msg"],
                   "value": orjson.loads(orjson.dumps(e.get("input"), default=str))} for e in exc.errors()]
        raise _field_error(errors) from None


# ---------------------------------------------------------------- records: reading, ETags, tombstones


def etag_of(row: dict) -> str:
    """A strong ETag of a record's current version: a digest of every stored column and link."""
    digest = hashlib.sha256(orjson.dumps(row, default=str, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)).digest()
    return '"' + base64.urlsafe_b64encode(digest[:18]).decode() + '"'


def admin_document(row: dict, base: str) -> dict:
    """The v1 document plus what only the data team sees: publication state, quality, geocoding."""
    doc = shape.organisation(row, base)
    doc["publication_state"] = row["publication_state"]
    doc["quality"] = {"score": row.get("quality_score"), "flags": row.get("quality_flags") or []}
    doc["geocode_status"] = row.get("geocode_status")
    doc["links"] = {"self": f"{base}/admin/organisations/{row['id']}", "public": doc["url"]}
    return doc


async def _raise_missing(conn: AsyncConnection, oid: int, base: str) -> None:
    row = (await conn.execute(
        text("SELECT deleted_at, merged_into, reason FROM organisation_tombstone WHERE id = :id"), {"id": oid}
    )).mappings().first()
    if row is None:
        raise NotFound(f"no organisation with id {oid}")
    extra: dict = {"deleted_at": row["deleted_at"].isoformat(), "reason": row["reason"]}
    headers: dict = {}
    if row["merged_into"] is not None:
        url = f"{base}/admin/organisations/{row['merged_into']}"
        extra.update(merged_into=row["merged_into"], successor=url)
        headers["Link"] = f'<{url}>; rel="successor-version"'
        raise Gone(f"organisation {oid} was merged into {row['merged_into']}", headers=headers, **extra)
    raise Gone(f"organisation {oid} was deleted", **extra)


async def _record(conn: AsyncConnection, oid: int, base: str, *, lock: bool = False) -> dict:
    """The whole stored record (any publication state); with ``lock``, its row is locked until commit."""
    if lock:
        found = (await conn.execute(text("SELECT id FROM organisation WHERE id = :id FOR UPDATE"), {"id": oid})).first()
        if found is None:
            await _raise_missing(conn, oid, base)
    rows = await search.fetch_records(conn, [oid], public=False)
    if not rows:
        await _raise_missing(conn, oid, base)
    return rows[0]


def _require_if_match(if_match: str | None) -> str:
    if if_match is None or not if_match.strip():
        raise PreconditionRequired("If-Match is required: send the ETag of GET /admin/organisations/{id}")
    return if_match


def _check_if_match(if_match: str, etag: str) -> None:
    tags = [t.strip() for t in if_match.split(",")]
    if "*" not in tags and etag not in tags:  # strong comparison: a weak tag never matches
        raise PreconditionFailed("the record changed since this ETag was read; GET it again and reapply the change",
                                 headers={"ETag": etag}, current_etag=etag)


# ---------------------------------------------------------------- the vocabulary of typo-tolerant search


async def refresh_vocabulary(app) -> None:
    """Rebuild ``search_word`` (the published vocabulary) after edits, off the request path and
    without blocking readers (CONCURRENTLY); edits arriving meanwhile coalesce into one more run."""
    state = app.state
    if getattr(state, "admin_vocabulary_lock", None) is None:
        state.admin_vocabulary_lock = asyncio.Lock()
    state.admin_vocabulary_dirty = True
    lock = state.admin_vocabulary_lock
    if lock.locked():
        return
    async with lock:
        while state.admin_vocabulary_dirty:
            state.admin_vocabulary_dirty = False
            try:
                async with app.state.engine.begin() as conn:
                    await conn.execute(text("SET LOCAL statement_timeout = '600s'"))
                    await conn.execute(text("REFRESH MATERIALIZED VIEW CONCURRENTLY search_word"))
            except Exception:
                log.warning("search vocabulary not refreshed", exc_info=True)


def _vocabulary_task(request: Request) -> BackgroundTask:
    return BackgroundTask(refresh_vocabulary, request.app)


# ---------------------------------------------------------------- the editable fields


@dataclass(frozen=True)
class Leaf:
    column: str
    kind: str  # text | list | lang_status | bool | state


def _pair(stem: str, kind: str) -> dict:
    return {"nl": Leaf(f"{stem}_nl", kind), "fr": Leaf(f"{stem}_fr", kind)}


# The editable part of the admin document (paths as GET /admin/organisations/{id} names them).
EDITABLE: dict = {
    "name": _pair("name_official", "text"),
    "alternative_names": _pair("name_alternative", "list"),
    "former_names": _pair("name_former", "list"),
    "service_names": _pair("name_service", "list"),
    "description": _pair("description", "text"),
    "activities": _pair("activities", "text"),
    "target_public": _pair("public", "text"),
    "opening_hours": _pair("permanency", "text"),
    "remark": _pair("remark", "text"),
    "access_modes": _pair("access", "list"),
    "publications": _pair("publication", "list"),
    "other_accreditations": _pair("other_accreditation", "list"),
    "subsidies": _pair("subsidy", "list"),
    "contact": {
        "phones": _pair("phone", "list"),
        "faxes": _pair("fax", "list"),
        "emails": _pair("email", "list"),
        "websites": {
            "official": _pair("website_official", "list"),
            "unofficial": _pair("website_unofficial", "list"),
            "info": _pair("website_info", "list"),
        },
    },
    "lang_status": Leaf("lang_status", "lang_status"),
    "is_interpreting": Leaf("is_interpreting", "bool"),
    "publication_state": Leaf("publication_state", "state"),
}
READ_ONLY = {
    "id": "read-only", "uuid": "read-only", "url": "read-only", "links": "read-only",
    "created_at": "read-only (set by the server)", "updated_at": "read-only (set by the server)",
    "quality": "read-only (computed)", "geocode_status": "read-only (computed)",
    "address": "not editable here: addresses are geocoded and enriched by the importer; upload the record",
    **{k: "not editable here: links and references change through an import"
       for k in ("sectors", "categories", "accreditations", "offered_languages", "offer_types", "action_zones",
                 "legal_status", "enterprise_numbers", "type", "start_date", "last_update")},
}
# columns whose change alters the folded search text (see app.loaders.legacy.SEARCH_TEXT_SQL)
SEARCHED = {f"{stem}_{lang}" for stem in ("name_official", "name_alternative", "name_former", "name_service", "activities")
            for lang in ("nl", "fr")}
# column → the legacy record key record_to_row reads
LEGACY_KEY = {**{col: key for key, col in _PLAIN.items()}, **{col: key for key, col in _LISTS.items()},
              "lang_status": "langStatus", "is_interpreting": "isInterpreting", "publication_state": "publicationState"}


def _leaves(node, path: str = "") -> dict[str, Leaf]:
    if isinstance(node, Leaf):
        return {path: node}
    out: dict[str, Leaf] = {}
    for key, child in node.items():
        out.update(_leaves(child, f"{path}.{key}" if path else key))
    return out


LEAVES = _leaves(EDITABLE)  # path → leaf
COLUMN_PATH = {leaf.column: path for path, leaf in LEAVES.items()}
assert set(COLUMN_PATH) <= set(LEGACY_KEY), set(COLUMN_PATH) - set(LEGACY_KEY)


def _coerce(leaf: Leaf, path: str, value, errors: list[dict]):
    def fail(reason: str):
        errors.append({"field": path, "value": value, "reason": reason})

    def clean(s: str) -> bool:
        if "\x00" in s:
            fail("contains a NUL character")
            return False
        return True

    if leaf.kind == "text":
        if value is None or (isinstance(value, str) and clean(value)):
            return value
        if not isinstance(value, str):
            fail("expected a string or null")
    elif leaf.kind == "list":
        if value is None:
            return []
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            if all(clean(v) for v in value):
                return value
        else:
            fail("expected a list of strings (or null to empty it)")
    elif leaf.kind == "lang_status":
        if value is None or value in LANG_STATUSES:
            return value
        fail(f"must be one of {', '.join(LANG_STATUSES)} or null")
    elif leaf.kind == "bool":
        if isinstance(value, bool):
            return value
        fail("expected true or false")
    elif leaf.kind == "state":
        if value in PUBLICATION_STATES:
            return value
        fail(f"must be one of {', '.join(PUBLICATION_STATES)}")
    return None


def merge_patch(patch: dict, node: dict, changes: dict[str, Any], errors: list[dict], path: str = "") -> None:
    """Apply an RFC 7396 merge patch to the editable fields: ``changes`` gets column → new value.
    ``null`` empties a field (a pair object: both languages); arrays are replaced whole."""
    for key, value in patch.items():
        where = f"{path}.{key}" if path else key
        child = node.get(key) if isinstance(key, str) else None
        if child is None:
            reason = READ_ONLY.get(key) if not path else None
            errors.append({"field": where, "value": value, "reason": reason or "unknown field"})
        elif isinstance(child, Leaf):
            changes[child.column] = _coerce(child, where, value, errors)
        elif value is None:
            for sub, leaf in _leaves(child, where).items():
                changes[leaf.column] = _coerce(leaf, sub, None, errors)
        elif isinstance(value, dict):
            merge_patch(value, child, changes, errors, where)
        else:
            errors.append({"field": where, "value": value, "reason": f"expected an object with {', '.join(child)}, or null"})


def _current_values(row: dict) -> dict[str, Any]:
    out = {}
    for leaf in LEAVES.values():
        value = row.get(leaf.column)
        out[leaf.column] = (value or []) if leaf.kind == "list" else value
    return out


def validate_edit(oid: int, current: dict[str, Any], changes: dict[str, Any]) -> tuple[dict, dict, list[dict]]:
    """Run the edited record through the importer's validation (record_to_row → check_row):
    returns (normalised editable values, the derived columns, problems on the edited fields)."""
    merged = {**current, **changes}
    record = {"id": oid, **{LEGACY_KEY[col]: value for col, value in merged.items()}}
    row, _links, problems = record_to_row(record, Known(), "PATCH")
    legacy_to_column = {key: col for col, key in LEGACY_KEY.items()}
    errors = []
    for p in problems:
        if p.field.startswith("nameOfficial"):
            errors.append({"field": "name", "value": None, "reason": p.reason})
            continue
        column = legacy_to_column.get(p.field, p.field)
        if column in changes:  # a stored value that fails a newer check is not this edit's fault
            errors.append({"field": COLUMN_PATH.get(column, column), "value": p.value, "reason": p.reason})
    values = {col: row[col] for col in merged}
    derived = {"phones_e164": row["phones_e164"], "name_flags": row["quality_flags"]}
    return values, derived, errors


# ---------------------------------------------------------------- organisations


@router.get(
    "/organisations/{id}",
    summary="One activity place in any publication state, with the ETag of its current version",
    responses={200: {"description": "The v1 document plus publication state and quality; `ETag` header"},
               **AUTH_RESPONSES, **RECORD_RESPONSES},
)
async def admin_get_organisation(
    request: Request,
    id: OrganisationId,
    principal: Annotated[Principal, Depends(require_edit)],
    rid: RequestId,
) -> Response:
    _query(request, set())
    base = base_url(request)
    async with request.app.state.engine.connect() as conn:  # the primary: the ETag a write will compare
        row = await _record(conn, id, base)
    return _respond(admin_document(row, base), rid, headers={"ETag": etag_of(row)})


PATCH_BODY = {
    "required": True,
    "content": {
        "application/merge-patch+json": {
            "schema": {
                "type": "object",
                "description": "A JSON merge patch (RFC 7396) of the editable fields of the admin document: names, "
                               "descriptions, activities, target public, opening hours, remarks, access modes, "
                               "publications, other accreditations, subsidies, contact (phones, faxes, e-mails, "
                               "websites), lang_status, is_interpreting, publication_state. Bilingual fields are "
                               "`{\"nl\", \"fr\"}` objects; null empties a field.",
                "additionalProperties": True,
            },
            "example": {"name": {"fr": "CPAS de Schaerbeek"}, "contact": {"emails": {"fr": ["info@example.be"]}}},
        },
    },
}


@router.patch(
    "/organisations/{id}",
    summary="Edit an activity place: a JSON merge patch of its editable fields (If-Match required)",
    openapi_extra={"requestBody": PATCH_BODY},
    responses={200: {"description": "The edited record and its new `ETag`"},
               **AUTH_RESPONSES, **RECORD_RESPONSES, **PRECONDITION_RESPONSES, **JSON_RESPONSES},
)
async def admin_patch_organisation(
    request: Request,
    id: OrganisationId,
    principal: Annotated[Principal, Depends(require_edit)],
    rid: RequestId,
    if_match: IfMatch = None,
) -> Response:
    """Values are checked exactly as the importer checks them (phones, e-mails, URLs, language
    status, publication state, at least one official name) and normalised the same way (trimmed;
    empty strings and list items dropped). Only changed fields are written; ``updated_at`` moves,
    so the change feed and Last-Modified follow."""
    _query(request, set())
    if_match = _require_if_match(if_match)
    patch = await _read_json(request, extra_types=("application/merge-patch+json",))
    if not isinstance(patch, dict):
        raise BadRequest("body: a merge patch is a JSON object", field="body")
    changes: dict[str, Any] = {}
    errors: list[dict] = []
    merge_patch(patch, EDITABLE, changes, errors)
    if errors:
        raise _field_error(errors)
    base = base_url(request)
    background = None
    async with request.app.state.engine.begin() as conn:
        row = await _record(conn, id, base, lock=True)
        _check_if_match(if_match, etag_of(row))
        current = _current_values(row)
        values, derived, errors = validate_edit(id, current, changes)
        if errors:
            raise _field_error(errors)
        diff = {col: values[col] for col in changes if values[col] != current[col]}
        if diff:
            write = dict(diff)
            if derived["phones_e164"] != (row.get("phones_e164") or []):
                write["phones_e164"] = derived["phones_e164"]
            stored_flags = row.get("quality_flags") or []
            flags = sorted({f for f in stored_flags if not (f.startswith("name-") and f.endswith("-missing"))}
                           | set(derived["name_flags"]))
            if flags != sorted(stored_flags):
                write.update(quality_flags=flags, quality_score=quality(flags))
            table = Organisation.__table__
            await conn.execute(update(table).where(table.c.id == id).values(**write, updated_at=func.now()))
            if diff.keys() & SEARCHED:
                await conn.execute(text(SEARCH_TEXT_SQL), {"ids": [id]})
            await documents.refresh_async(conn, [id])
            await audit(conn, principal.actor, "organisation.update", f"organisation:{id}",
                        {COLUMN_PATH[c]: current[c] for c in diff}, {COLUMN_PATH[c]: diff[c] for c in diff}, rid)
            row = await _record(conn, id, base)
            if diff.keys() & (SEARCHED | {"publication_state"}):
                background = _vocabulary_task(request)
    return _respond(admin_document(row, base), rid, headers={"ETag": etag_of(row)}, background=background)


async def _set_state(request: Request, oid: int, state: str, principal: Principal, rid: str, if_match: str | None) -> Response:
    if_match = _require_if_match(if_match)
    base = base_url(request)
    background = None
    async with request.app.state.engine.begin() as conn:
        row = await _record(conn, oid, base, lock=True)
        _check_if_match(if_match, etag_of(row))
        before = row["publication_state"]
        if before != state:  # already so: nothing written, nothing audited
            table = Organisation.__table__
            await conn.execute(update(table).where(table.c.id == oid).values(publication_state=state, updated_at=func.now()))
            await documents.refresh_async(conn, [oid])
            action = "organisation.publish" if state == "published" else "organisation.unpublish"
            await audit(conn, principal.actor, action, f"organisation:{oid}",
                        {"publication_state": before}, {"publication_state": state}, rid)
            row = await _record(conn, oid, base)
            background = _vocabulary_task(request)
    return _respond(admin_document(row, base), rid, headers={"ETag": etag_of(row)}, background=background)


@router.post(
    "/organisations/{id}/publish",
    summary="Publish an activity place (If-Match required): it appears in every public surface and the change feed",
    responses={200: {"description": "The record and its new `ETag`"},
               **AUTH_RESPONSES, **RECORD_RESPONSES, **PRECONDITION_RESPONSES},
)
async def admin_publish_organisation(
    request: Request,
    id: OrganisationId,
    principal: Annotated[Principal, Depends(require_edit)],
    rid: RequestId,
    if_match: IfMatch = None,
) -> Response:
    _query(request, set())
    return await _set_state(request, id, "published", principal, rid, if_match)


@router.post(
    "/organisations/{id}/unpublish",
    summary="Unpublish an activity place (If-Match required): public surfaces answer 404, the feed says deleted",
    responses={200: {"description": "The record and its new `ETag`"},
               **AUTH_RESPONSES, **RECORD_RESPONSES, **PRECONDITION_RESPONSES},
)
async def admin_unpublish_organisation(
    request: Request,
    id: OrganisationId,
    principal: Annotated[Principal, Depends(require_edit)],
    rid: RequestId,
    if_match: IfMatch = None,
) -> Response:
    _query(request, set())
    return await _set_state(request, id, "unpublished", principal, rid, if_match)


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    into: int = Field(ge=1, le=2**31 - 1, description="Id of the record that replaces this one (published)")


@router.post(
    "/organisations/{id}/merge",
    summary="Merge an activity place into another (If-Match of the merged one required): its id then answers 410 with the successor",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": MergeRequest.model_json_schema()}}}},
    responses={200: {"description": "The merge: the old id, its successor and the successor's public URL"},
               409: {"description": "The successor is not published", **PROBLEM},
               **AUTH_RESPONSES, **RECORD_RESPONSES, **PRECONDITION_RESPONSES, **JSON_RESPONSES},
)
async def admin_merge_organisation(
    request: Request,
    id: OrganisationId,
    principal: Annotated[Principal, Depends(require_edit)],
    rid: RequestId,
    if_match: IfMatch = None,
) -> Response:
    """The record is deleted and leaves a tombstone pointing at its successor: ``/v1`` answers 410
    Gone naming it (``Link: rel=successor-version``), ``/rest`` a 404 naming it, the change feed a
    deleted event. The successor keeps its own data: the merged record's links and texts are not
    copied over (the whole merged record is kept in the audit log's ``before``). Records earlier
    merged into this one are re-pointed to the successor, so no redirect chains through a 410."""
    _query(request, set())
    if_match = _require_if_match(if_match)
    into = _model(MergeRequest, await _read_json(request)).into
    if into == id:
        raise _field_error([{"field": "into", "value": into, "reason": "a record cannot be merged into itself"}])
    base = base_url(request)
    async with request.app.state.engine.begin() as conn:
        locked = (await conn.execute(
            text("SELECT id, publication_state FROM organisation WHERE id IN (:a, :b) ORDER BY id FOR UPDATE"),
            {"a": id, "b": into},
        )).mappings().all()
        states = {r["id"]: r["publication_state"] for r in locked}
        if id not in states:
            await _raise_missing(conn, id, base)
        if into not in states:
            raise _field_error([{"field": "into", "value": into, "reason": "no such organisation"}])
        if states[into] != "published":
            raise Conflict(f"the successor {into} is {states[into]}: publish it first, so the old id can point to it",
                           field="into")
        row = await _record(conn, id, base)
        _check_if_match(if_match, etag_of(row))
        before = admin_document(row, base)
        repointed = (await conn.execute(
            text("UPDATE organisation_tombstone SET merged_into = :into WHERE merged_into = :id RETURNING id"),
            {"into": into, "id": id},
        )).scalars().all()
        await conn.run_sync(lambda sync: delete_organisations(
            sync, "SELECT CAST(:gone AS integer)", {"gone": id}, reason=f"merged into {into}", merged_into=into))
        after: dict = {"merged_into": into}
        if repointed:
            after["repointed"] = sorted(repointed)  # records merged into this one earlier now point to the successor
        await audit(conn, principal.actor, "organisation.merge", f"organisation:{id}", before, after, rid)
    body = {"id": id, "merged_into": into, "successor": f"{base}/v1/organisations/{into}",
            "admin_successor": f"{base}/admin/organisations/{into}"}
    return _respond(body, rid, background=_vocabulary_task(request))


# ---------------------------------------------------------------- imports


def _content_type(value: str) -> email.message.Message:
    message = email.message.Message()
    message["content-type"] = value
    return message


@dataclass
class Upload:
    filename: str
    path: FsPath
    fields: dict[str, str]


def _parse_multipart(body: FsPath, boundary: str, target_dir: FsPath) -> Upload:
    """Split a multipart/form-data body spooled on disk (mmap, no copy in memory): the ``file`` part
    is written to ``target_dir``, the small fields are returned."""
    size = body.stat().st_size
    if size == 0:
        raise BadRequest("file: the body is empty; send multipart/form-data with a file part", field="file")
    delimiter = b"--" + boundary.encode("latin-1")
    fields: dict[str, str] = {}
    upload: Upload | None = None

    def bad(reason: str) -> BadRequest:
        return BadRequest(f"body: malformed multipart/form-data ({reason})", field="body")

    with body.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        pos = mm.find(delimiter)
        if pos < 0 or (pos > 0 and mm[pos - 2:pos] != b"\r\n"):
            raise bad("no boundary")
        pos += len(delimiter)
        parts = 0
        while mm[pos:pos + 2] != b"--":
            parts += 1
            if parts > 10:
                raise bad("too many parts")
            eol = mm.find(b"\r\n", pos)
            if eol < 0:
                raise bad("unterminated")
            pos = eol + 2
            if mm[pos:pos + 2] == b"\r\n":
                head, start = b"", pos + 2
            else:
                end_of_head = mm.find(b"\r\n\r\n", pos, pos + 16384)
                if end_of_head < 0:
                    raise bad("part headers missing or too long")
                head, start = mm[pos:end_of_head], end_of_head + 4
            end = mm.find(b"\r\n" + delimiter, start)
            if end < 0:
                raise bad("unterminated")
            headers = email.message.Message()
            for line in head.decode("utf-8", "replace").split("\r\n"):
                key, sep, value = line.partition(":")
                if sep:
                    headers[key.strip()] = value.strip()
            name = headers.get_param("name", header="content-disposition")
            if headers.get_content_disposition() != "form-data" or not isinstance(name, str):
                raise bad("a part without Content-Disposition: form-data; name=")
            filename = headers.get_filename()
            if name == "file":
                if upload is not None:
                    raise BadRequest("file: send one file per import", field="file")
                if not filename:
                    raise BadRequest("file: the part has no filename", field="file")
                original = FsPath(filename.replace("\\", "/")).name
                suffix = FsPath(original).suffix.lower()
                if suffix not in UPLOAD_KINDS:
                    raise BadRequest(f"file: {original!r} is not one of {', '.join(UPLOAD_KINDS)}", field="file")
                stem = re.sub(r"[^A-Za-z0-9._-]+", "_", FsPath(original).stem)[:100].strip("._") or "upload"
                path = target_dir / f"{stem}{suffix}"
                with path.open("wb") as out:
                    for offset in range(start, end, 1 << 20):
                        out.write(mm[offset:min(offset + (1 << 20), end)])
                upload = Upload(f"{stem}{suffix}", path, fields)
            elif name in ("dry_run", "geocode"):
                if name in fields:
                    raise BadRequest(f"{name}: give it once", field=name)
                if end - start > 100:
                    raise BadRequest(f"{name}: too long", field=name)
                fields[name] = mm[start:end].decode("utf-8", "replace").strip()
            else:
                raise BadRequest(f"{name}: unknown form field (file, dry_run, geocode)", field=name)
            pos = end + 2 + len(delimiter)
    if upload is None:
        raise BadRequest("file: missing; send the records as the multipart field 'file'", field="file")
    return upload


def _flag(fields: dict, name: str) -> bool:
    value = fields.get(name, "false").lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", ""):
        return False
    raise BadRequest(f"{name}: expected true or false, not {value!r}", field=name)


def _problem_json(p) -> dict:
    return {"field": p.field, "value": orjson.loads(orjson.dumps(p.value, default=str)), "reason": p.reason}


def _run_upload(url: str, settings, upload: Upload, *, dry_run: bool, geocode: str, actor: str, rid: str) -> dict:
    """In a worker thread: the importer on the primary (a sync engine of its own), then the audit entry."""
    from ..db import make_sync_engine
    from ..importer import sources
    from ..importer.geocoding import make_prepare
    from ..importer.run import refresh_downloads, run_import

    engine = make_sync_engine(settings, url)
    try:
        kind = UPLOAD_KINDS[upload.path.suffix.lower()]
        source = sources.legacy_path(upload.path) if kind == "legacy" else sources.table(upload.path, engine)
        source.name = f"upload:{upload.filename}"
        try:
            prepare, _stats = make_prepare(settings, engine, geocode, None)
        except NotImplementedError:
            raise BadRequest(f"geocode: {geocode!r} is not available on this server; use none", field="geocode") from None
        try:
            result = run_import(engine, source, prepare=prepare, dry_run=dry_run, actor=actor,
                                after_commit=lambda: refresh_downloads(engine))
        except Exception as exc:
            with engine.begin() as conn:
                write_audit(conn, actor, "import.failed", None, None,
                            {"source": source.name, "error": f"{type(exc).__name__}: {exc}"[:2000]}, rid)
            raise
        report = dict(result.report.__dict__)
        summary = {"run_id": result.run_id, "status": result.status, "source": source.name, **report}
        # the importer commits its own transaction; the run itself (with the actor) is in import_run
        with engine.begin() as conn:
            write_audit(conn, actor, "import.dry-run" if dry_run else "import", f"import_run:{result.run_id}", None, summary, rid)
        return {
            "run_id": result.run_id, "status": result.status, "dry_run": dry_run, "source": source.name, "actor": actor,
            "geocode": geocode, "duration_s": round(result.duration_s, 3), "counts": report,
            "rejected": [
                {"location": r.location, "record_id": r.record_id, "problems": [_problem_json(p) for p in r.problems]}
                for r in result.rejected[:REJECTED_SHOWN]
            ],
            "rejected_truncated": len(result.rejected) > REJECTED_SHOWN,
        }
    finally:
        engine.dispose()


UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary",
                             "description": "Records: legacy JSON (.json: one record or an array; .ndjson: one a line) "
                                            "or the bilingual table of the v1 export (.csv, .xlsx)"},
                    "dry_run": {"type": "boolean", "default": False, "description": "Check and report; write nothing but the run record"},
                    "geocode": {"type": "string", "enum": list(GEOCODE_MODES), "default": "none",
                                "description": "Geocode addresses through URBIS: none (default), missing points, or all"},
                },
            },
        },
    },
}


@router.post(
    "/imports",
    summary="Import a file of records (multipart upload); returns the run report with every rejected record and why",
    openapi_extra={"requestBody": UPLOAD_BODY},
    responses={200: {"description": "The run report: counts, and the rejected records with their reasons"},
               400: {"description": "Bad upload: no file, unknown extension, bad form field", **PROBLEM},
               413: {"description": f"The upload is larger than {MAX_UPLOAD_BYTES:,} bytes", **PROBLEM},
               415: {"description": "The body is not multipart/form-data", **PROBLEM},
               **AUTH_RESPONSES},
)
async def admin_create_import(
    request: Request,
    principal: Annotated[Principal, Depends(require_import)],
    rid: RequestId,
) -> Response:
    """Runs the importer as the CLI does (one transaction, bad records quarantined, reruns change
    nothing), with the key as actor. Imports run one at a time; the request waits for its turn."""
    _query(request, set())
    content_type = _content_type(request.headers.get("content-type", ""))
    if content_type.get_content_type() != "multipart/form-data":
        raise UnsupportedMediaType("send the file as multipart/form-data (field 'file')")
    boundary = content_type.get_param("boundary")
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= 200:
        raise BadRequest("body: multipart/form-data without a valid boundary", field="body")
    with tempfile.TemporaryDirectory(prefix="bruso-upload-") as tmp:
        body = FsPath(tmp) / "body"
        declared = request.headers.get("content-length")
        if declared and declared.isascii() and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
            raise ContentTooLarge(f"the upload is {int(declared):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}", limit=MAX_UPLOAD_BYTES)
        size = 0
        with body.open("wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise ContentTooLarge(f"the upload exceeds the limit of {MAX_UPLOAD_BYTES:,} bytes", limit=MAX_UPLOAD_BYTES)
                fh.write(chunk)
        files = FsPath(tmp) / "files"
        files.mkdir()
        upload = await run_in_threadpool(_parse_multipart, body, boundary, files)
        body.unlink()
        dry_run = _flag(upload.fields, "dry_run")
        geocode = upload.fields.get("geocode") or "none"
        if geocode not in GEOCODE_MODES:
            raise BadRequest(f"geocode: must be one of {', '.join(GEOCODE_MODES)}", field="geocode")
        url = request.app.state.engine.url.render_as_string(hide_password=False)
        report = await run_in_threadpool(_run_upload, url, request.app.state.settings, upload, dry_run=dry_run,
                                         geocode=geocode, actor=principal.actor, rid=rid)
    base = base_url(request)
    report["links"] = {"self": f"{base}/admin/imports/{report['run_id']}",
                       "quarantine": f"{base}/admin/imports/{report['run_id']}/quarantine"}
    return _respond(report, rid)  # the importer refreshes the search vocabulary itself


@router.get(
    "/imports/{run_id}",
    summary="One import run: source, actor, status, counts",
    responses={200: {"description": "The run"}, 404: {"description": "No such run", **PROBLEM}, **AUTH_RESPONSES},
)
async def admin_get_import(
    request: Request,
    run_id: Annotated[int, Path(description="Id of the import run", ge=1, le=2**31 - 1)],
    principal: Annotated[Principal, Depends(require_import)],
    rid: RequestId,
) -> Response:
    _query(request, set())
    async with request.app.state.engine.connect() as conn:
        run = (await conn.execute(text("SELECT * FROM import_run WHERE id = :id"), {"id": run_id})).mappings().first()
    if run is None:
        raise NotFound(f"no import run {run_id}")
    base = base_url(request)
    return _respond({**dict(run), "links": {"quarantine": f"{base}/admin/imports/{run_id}/quarantine"}}, rid)


@router.get(
    "/imports/{run_id}/quarantine",
    summary="The records an import run rejected, whole, with every reason (admin scope)",
    responses={200: {"description": "A page of quarantined records, oldest first"},
               404: {"description": "No such run", **PROBLEM}, **AUTH_RESPONSES},
)
async def admin_list_quarantine(
    request: Request,
    run_id: Annotated[int, Path(description="Id of the import run", ge=1, le=2**31 - 1)],
    principal: Annotated[Principal, Depends(require_admin)],
    rid: RequestId,
    limit: Annotated[str | None, Query(description="Records per page, default 50, clamped at 1000")] = None,
    after: Annotated[str | None, Query(description="The `next` value of the previous page")] = None,
) -> Response:
    params = _query(request, {"limit", "after"})
    size, after_id = _limit(params), _positive_int(params, "after") or 0
    async with request.app.state.engine.connect() as conn:
        if (await conn.execute(text("SELECT 1 FROM import_run WHERE id = :id"), {"id": run_id})).first() is None:
            raise NotFound(f"no import run {run_id}")
        rows = (await conn.execute(
            text("SELECT id, record_id, location, record, problems, created_at FROM quarantine "
                 "WHERE run_id = :run AND id > :after ORDER BY id LIMIT :limit"),
            {"run": run_id, "after": after_id, "limit": size},
        )).mappings().all()
    items = [dict(r) for r in rows]
    next_id = items[-1]["id"] if len(items) == size else None
    return _respond({"run_id": run_id, "items": items, "next": next_id}, rid)


# ---------------------------------------------------------------- the audit log


@router.get(
    "/audit",
    summary="The audit log: every write with its actor, target, before/after and request id, newest first (admin scope)",
    responses={200: {"description": "A page of audit entries"}, **AUTH_RESPONSES},
)
async def admin_list_audit(
    request: Request,
    principal: Annotated[Principal, Depends(require_admin)],
    rid: RequestId,
    limit: Annotated[str | None, Query(description="Entries per page, default 50, clamped at 1000")] = None,
    since: Annotated[str | None, Query(description="Only entries at or after this ISO 8601 date-time")] = None,
    before: Annotated[str | None, Query(description="Only entries with a smaller id (the `next` of the previous page)")] = None,
    target: Annotated[str | None, Query(description="Only entries about this target, e.g. organisation:13219")] = None,
    action: Annotated[str | None, Query(description="Only entries of this action, e.g. organisation.update")] = None,
) -> Response:
    from ..search.criteria import parse_datetime

    params = _query(request, {"limit", "since", "before", "target", "action"})
    size = _limit(params)
    where, values = [], {"limit": size}
    if params.get("since") is not None:
        where.append("at >= :since")
        values["since"] = parse_datetime("since", params["since"])
    if (before_id := _positive_int(params, "before")) is not None:
        where.append("id < :before")
        values["before"] = before_id
    for name in ("target", "action"):
        if params.get(name) is not None:
            where.append(f"{name} = :{name}")
            values[name] = params[name]
    sql = ("SELECT id, at, actor, action, target, before, after, request_id FROM audit_log"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT :limit")
    async with request.app.state.engine.connect() as conn:
        rows = (await conn.execute(text(sql), values)).mappings().all()
    items = [dict(r) for r in rows]
    return _respond({"items": items, "next": items[-1]["id"] if len(items) == size else None}, rid)


# ---------------------------------------------------------------- API keys


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200, description="Who or what uses the key (shown in the audit log)")
    scopes: list[str] = Field(min_length=1, description=f"Any of {', '.join(SCOPES)}")


@router.get(
    "/keys",
    summary="The API keys: name, prefix, scopes, created and revoked dates (never the secret) (admin scope)",
    responses={200: {"description": "Every key, newest first"}, **AUTH_RESPONSES},
)
async def admin_list_keys(
    request: Request, principal: Annotated[Principal, Depends(require_admin)], rid: RequestId
) -> Response:
    _query(request, set())
    async with request.app.state.engine.connect() as conn:
        items = await conn.run_sync(keys)
    return _respond({"items": items}, rid)


@router.post(
    "/keys",
    status_code=201,
    summary="Create an API key; the answer shows it once (admin scope)",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": KeyRequest.model_json_schema()}}}},
    responses={201: {"description": "The new key (`key`: shown this once, stored only hashed)"},
               **AUTH_RESPONSES, **JSON_RESPONSES},
)
async def admin_create_key(
    request: Request, principal: Annotated[Principal, Depends(require_admin)], rid: RequestId
) -> Response:
    _query(request, set())
    wanted = _model(KeyRequest, await _read_json(request))
    unknown = [s for s in wanted.scopes if s not in SCOPES]
    if unknown:
        raise _field_error([{"field": "scopes", "value": unknown, "reason": f"scopes are {', '.join(SCOPES)}"}])
    async with request.app.state.engine.begin() as conn:
        token, info = await conn.run_sync(
            lambda sync: insert_key(sync, wanted.name, wanted.scopes, actor=principal.actor, request_id=rid))
    return _respond({"key": token, **info, "note": "store the key now: it is shown only this once"}, rid, status=201)


@router.delete(
    "/keys/{prefix}",
    summary="Revoke an API key (admin scope); it stops working at once",
    responses={200: {"description": "The revoked key"}, 404: {"description": "No active key with this prefix", **PROBLEM},
               **AUTH_RESPONSES},
)
async def admin_revoke_key(
    request: Request,
    prefix: Annotated[str, Path(description="The key's prefix (12 hex digits)", pattern="^[0-9a-f]{12}$")],
    principal: Annotated[Principal, Depends(require_admin)],
    rid: RequestId,
) -> Response:
    _query(request, set())
    async with request.app.state.engine.begin() as conn:
        info = await conn.run_sync(lambda sync: revoke(sync, prefix, actor=principal.actor, request_id=rid))
    if info is None:
        raise NotFound(f"no active key with prefix {prefix}")
    return _respond(info, rid)
