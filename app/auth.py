"""API keys for the write side, and the audit log.

A key is ``bruso_<prefix>_<secret>``: the prefix (12 hex digits) names the key in logs, in the audit
log and on the command line; the secret is 256 random bits. Only the SHA-256 of the whole key is
stored (a hash of a high-entropy secret needs no slow KDF) and it is compared in constant time; the
key itself is shown once, when it is created. Keys carry scopes: ``import`` (upload import files),
``edit`` (edit, publish, unpublish and merge records) and ``admin`` (everything, plus the audit log,
the quarantine and key management). Revocation is immediate: every request looks its key up on the
primary database (one unique-index lookup).

Every write is recorded in ``audit_log`` (who, what, which target, before/after JSON, request id),
in the transaction of the write itself (see :data:`AUDIT_SQL`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Annotated

import orjson
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from .errors import Problem
from .models.operations import SCOPES

KEY_PREFIX = "bruso"
_TOKEN = re.compile(r"^bruso_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()
REALM = "bruso-admin"


# ---------------------------------------------------------------- problems


class Unauthorized(Problem):
    status, title = 401, "Unauthorized"


class Forbidden(Problem):
    status, title = 403, "Forbidden"


# ---------------------------------------------------------------- keys


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def key_prefix(token_or_prefix: str) -> str:
    """The prefix of a key, given the key itself, ``bruso_<prefix>`` or the bare prefix."""
    value = token_or_prefix.strip()
    match = _TOKEN.match(value)
    if match:
        return match.group(1)
    return value.removeprefix(f"{KEY_PREFIX}_").split("_", 1)[0]


def _check(name: str, scopes) -> tuple[str, list[str]]:
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ValueError("a key needs a name (1 to 200 characters)")
    scopes = list(dict.fromkeys(scopes or []))
    unknown = [s for s in scopes if s not in SCOPES]
    if not scopes or unknown:
        raise ValueError(f"scopes must be one or more of {', '.join(SCOPES)}" + (f" (not {', '.join(unknown)})" if unknown else ""))
    return name, scopes


def insert_key(conn: Connection, name: str, scopes, *, actor: str = "cli", request_id: str | None = None) -> tuple[str, dict]:
    """Create a key on ``conn``'s transaction (audited); returns (the key — shown once, stored
    nowhere —, its public description)."""
    name, scopes = _check(name, scopes)
    for _ in range(5):
        prefix = secrets.token_hex(6)
        token = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with conn.begin_nested():
                row = conn.execute(
                    text("INSERT INTO api_key (name, prefix, secret_sha256, scopes) VALUES (:n, :p, :h, :s) "
                         "RETURNING name, prefix, scopes, created_at, revoked_at"),
                    {"n": name, "p": prefix, "h": hash_key(token), "s": scopes},
                ).mappings().one()
        except IntegrityError:  # a prefix collision (2^-48): draw again
            continue
        info = dict(row)
        write_audit(conn, actor, "key.create", f"api_key:{prefix}", None, _public(info), request_id)
        return token, info
    raise RuntimeError("could not draw a unique key prefix")


def revoke(conn: Connection, prefix: str, *, actor: str = "cli", request_id: str | None = None) -> dict | None:
    """Revoke the active key with this prefix (audited); None when there is none."""
    row = conn.execute(
        text("UPDATE api_key SET revoked_at = now() WHERE prefix = :p AND revoked_at IS NULL "
             "RETURNING name, prefix, scopes, created_at, revoked_at"),
        {"p": key_prefix(prefix)},
    ).mappings().first()
    if row is None:
        return None
    info = dict(row)
    write_audit(conn, actor, "key.revoke", f"api_key:{info['prefix']}", {**_public(info), "revoked_at": None}, _public(info), request_id)
    return info


def keys(conn: Connection) -> list[dict]:
    """Every key, newest first: name, prefix, scopes, created_at, revoked_at (never the hash)."""
    rows = conn.execute(
        text("SELECT name, prefix, scopes, created_at, revoked_at FROM api_key ORDER BY created_at DESC, id DESC")
    ).mappings().all()
    return [dict(r) for r in rows]


def _public(info: dict) -> dict:
    return orjson.loads(orjson.dumps(info, default=str))


# The command line (``bruso keys create|revoke|list``) calls these three.


def create_key(engine: Engine, name: str, scopes, *, actor: str = "cli") -> str:
    """Create a key; returns it (``bruso_<prefix>_<secret>``): print it once, it is stored nowhere.
    Raises ValueError for an empty name or unknown scopes."""
    with engine.begin() as conn:
        return insert_key(conn, name, scopes, actor=actor)[0]


def revoke_key(engine: Engine, prefix: str, *, actor: str = "cli") -> bool:
    """Revoke the key with this prefix (or the key itself); False when no active key has it."""
    with engine.begin() as conn:
        return revoke(conn, prefix, actor=actor) is not None


def list_keys(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        return keys(conn)


# ---------------------------------------------------------------- the audit log

AUDIT_SQL = text(
    "INSERT INTO audit_log (actor, action, target, before, after, request_id) "
    "VALUES (:actor, :action, :target, CAST(:before AS jsonb), CAST(:after AS jsonb), :request_id) RETURNING id"
)


def audit_params(actor: str, action: str, target: str | None, before, after, request_id: str | None) -> dict:
    def as_json(value):
        return None if value is None else orjson.dumps(value, default=str).decode()

    return {"actor": actor, "action": action, "target": target, "before": as_json(before), "after": as_json(after),
            "request_id": request_id}


def write_audit(conn: Connection, actor: str, action: str, target: str | None, before, after, request_id: str | None = None) -> int:
    return conn.execute(AUDIT_SQL, audit_params(actor, action, target, before, after, request_id)).scalar_one()


async def audit(conn: AsyncConnection, actor: str, action: str, target: str | None, before, after,
                request_id: str | None = None) -> int:
    """Record one write on the write's own (async) transaction."""
    return (await conn.execute(AUDIT_SQL, audit_params(actor, action, target, before, after, request_id))).scalar_one()


# ---------------------------------------------------------------- authentication (FastAPI)

bearer = HTTPBearer(
    auto_error=False,  # the 401 is a problem+json of ours, with WWW-Authenticate
    scheme_name="apiKey",
    bearerFormat="bruso_<prefix>_<secret>",
    description="An API key from `bruso keys create --scope import|edit|admin`, sent as `Authorization: Bearer bruso_…`.",
)


@dataclass(frozen=True)
class Principal:
    """The key a request was authenticated with."""

    name: str
    prefix: str
    scopes: tuple[str, ...]

    @property
    def actor(self) -> str:
        """How the audit log, import_run.actor and logs name this key."""
        return f"{self.name} ({self.prefix})"

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


async def authenticate(conn: AsyncConnection, token: str) -> Principal | None:
    """The active key matching ``token``, or None (unknown, malformed or revoked)."""
    match = _TOKEN.match(token.strip())
    row = None
    if match:
        row = (await conn.execute(
            text("SELECT name, prefix, secret_sha256, scopes, revoked_at FROM api_key WHERE prefix = :p"),
            {"p": match.group(1)},
        )).mappings().first()
    stored = row["secret_sha256"] if row is not None else _DUMMY_HASH
    same = hmac.compare_digest(hash_key(token.strip()), stored)
    if row is None or not same or row["revoked_at"] is not None:
        return None
    return Principal(row["name"], row["prefix"], tuple(row["scopes"]))


def _challenge(error: str | None = None, description: str | None = None, scope: str | None = None) -> dict:
    parts = [f'realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append(f'error_description="{description}"')
    if scope:
        parts.append(f'scope="{scope}"')
    return {"WWW-Authenticate": "Bearer " + ", ".join(parts)}


def require(scope: str):
    """A dependency: the request's key, which must be active and allow ``scope`` (401 / 403)."""
    if scope not in SCOPES:
        raise ValueError(scope)

    async def principal(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> Principal:
        if credentials is None or not credentials.credentials:
            raise Unauthorized("an API key is required: Authorization: Bearer bruso_…", headers=_challenge())
        async with request.app.state.engine.connect() as conn:  # the primary: revocations apply at once
            found = await authenticate(conn, credentials.credentials)
        if found is None:
            raise Unauthorized("the API key is unknown, malformed or revoked",
                               headers=_challenge("invalid_token", "unknown, malformed or revoked key"))
        if not found.allows(scope):
            raise Forbidden(f"this key ({found.prefix}) lacks the {scope!r} scope; it has: {', '.join(found.scopes)}",
                            headers=_challenge("insufficient_scope", scope=scope), required_scope=scope)
        request.state.principal = found
        return found

    principal.__name__ = f"require_{scope}"
    return principal


require_import = require("import")
require_edit = require("edit")
require_admin = require("admin")
