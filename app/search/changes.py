"""The change feed and tombstones: what changed in the public directory, in commit order.

Events are written by triggers on ``organisation`` (migration 0004), which serialise writers so
that ``change_event.seq`` follows commit order: a client that pages by the last ``seq`` it saw never
skips an event and never sees one twice. Tokens are opaque to clients (base64 of the seq).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import BadRequest, Gone, NotFound

TOKEN_PREFIX = "seq:"


def encode_token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"{TOKEN_PREFIX}{seq}".encode()).decode().rstrip("=")


def decode_token(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if not raw.startswith(TOKEN_PREFIX):
            raise ValueError(raw)
        seq = int(raw[len(TOKEN_PREFIX):])
        if seq < 0:
            raise ValueError(raw)
        return seq
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise BadRequest("since: neither an ISO 8601 date-time nor a token from a previous page's next", parameter="since") from None


@dataclass
class ChangePage:
    events: list[dict]
    next_seq: int


async def after_time(conn: AsyncConnection, since: dt.datetime) -> int:
    """The seq just before the first event at or after ``since``."""
    first = (await conn.execute(
        text("SELECT min(seq) FROM change_event WHERE at >= :since"), {"since": since}
    )).scalar()
    if first is None:
        return (await conn.execute(text("SELECT coalesce(max(seq), 0) FROM change_event"))).scalar_one()
    return first - 1


async def changes(conn: AsyncConnection, after_seq: int, limit: int) -> ChangePage:
    rows = (await conn.execute(
        text("SELECT seq, organisation_id, uuid, kind, at FROM change_event WHERE seq > :after ORDER BY seq LIMIT :limit"),
        {"after": after_seq, "limit": limit},
    )).mappings().all()
    events = [dict(r) for r in rows]
    return ChangePage(events, events[-1]["seq"] if events else after_seq)


async def raise_missing(conn: AsyncConnection, oid: int, successor_url) -> None:
    """404 for an id that never was public; 410 Gone (with the successor) for a deleted or merged one."""
    row = (await conn.execute(
        text("SELECT id, deleted_at, merged_into, reason FROM organisation_tombstone WHERE id = :id"), {"id": oid}
    )).mappings().first()
    if row is None:
        raise NotFound(f"no published organisation with id {oid}")
    extra: dict = {"deleted_at": row["deleted_at"].isoformat()}
    headers: dict = {}
    if row["merged_into"] is not None:
        url = successor_url(row["merged_into"])
        extra.update(merged_into=row["merged_into"], successor=url)
        headers["Link"] = f'<{url}>; rel="successor-version"'
        detail = f"organisation {oid} was merged into {row['merged_into']}: {url}"
    else:
        detail = f"organisation {oid} was deleted"
    raise Gone(detail, headers=headers, **extra)


async def import_runs(conn: AsyncConnection, limit: int) -> list[dict]:
    rows = (await conn.execute(
        text(
            "SELECT id, source, kind, status, started_at, finished_at, duration_s, read, created, updated, "
            "unchanged, deleted, rejected, pending, geocoded FROM import_run ORDER BY id DESC LIMIT :limit"
        ),
        {"limit": limit},
    )).mappings().all()
    # a local file's path says nothing to the public but where the data team keeps its files
    return [{**r, "source": r["source"] if "://" in r["source"] else r["source"].rsplit("/", 1)[-1]} for r in rows]
