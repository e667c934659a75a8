"""Precomputed public documents: each record's bilingual /v1 document and OGC properties, stored
as JSON text (``record_document``) by every write path, so that reads relay stored bytes.

Why: shaping a page of 100 records per request (joins over six link tables, then Python) cost about
45 ms; reading 100 stored documents costs PostgreSQL about a millisecond. The documents are built by
the same code that shapes a record on the fly (``serialize.v1.organisation``,
``serialize.ogc.organisation_feature``), so there is one definition of each shape.

Freshness: a document is used only while its ``built_from`` equals the record's ``updated_at`` (every
write bumps it), so a stale or missing document is never served: the surfaces shape those records on
the fly (``split``). Label edits in lookup lists do not touch ``updated_at``; ``load_lookups`` and
the reference loader drop all documents, and ``refresh(conn)`` (no ids) rebuilds every missing or
stale one.

The public base URL depends on the request, so documents carry ``\\u0001`` in its place and
``with_base`` writes it in (see ``PLACEHOLDER``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import orjson
import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection

from sqlalchemy import ColumnElement, Integer, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY

from ..loaders.sql import copy_rows, temp_table
from ..models import Organisation, RecordDocument
from ..serialize import ogc as ogc_shape
from ..serialize import v1 as v1_shape
from . import RECORD_SQL, fetch_records

BASE = "\x01"  # the base URL when a document is built; orjson writes it as the six bytes \u0001
# in a stored document only a URL starts with it: '"' + \u0001 + '/' (a text holding a control
# character followed by '/' at its very start would be rewritten too: loaders never keep one)
PLACEHOLDER = b'"\\u0001/'
BATCH = 2000


def with_base(body: bytes, base: str) -> bytes:
    """Write the public base URL into a body assembled from stored documents."""
    return body.replace(PLACEHOLDER, b'"' + base.encode() + b"/")


def build(row: dict) -> tuple[str, str]:
    """The stored texts of one record (a row of ``RECORD_SQL``): (v1 document, OGC properties)."""
    v1 = orjson.dumps(v1_shape.organisation(row, BASE)).decode()
    ogc = orjson.dumps(ogc_shape.organisation_feature(row, None, BASE)["properties"]).decode()
    return v1, ogc


STALE_SQL = """
SELECT o.id FROM organisation o LEFT JOIN record_document d ON d.organisation_id = o.id
 WHERE d.organisation_id IS NULL OR d.built_from <> o.updated_at
 ORDER BY o.id
"""


def refresh(conn: Connection, ids: Iterable[int] | None = None) -> int:
    """Build the documents of ``ids`` (all missing or stale ones when None), in the caller's
    transaction; returns how many were written."""
    wanted = sorted(set(ids)) if ids is not None else list(conn.execute(text(STALE_SQL)).scalars())
    if not wanted:
        return 0
    sql = text(RECORD_SQL.format(public=""))
    upsert = ("INSERT INTO record_document (organisation_id, built_from, v1, ogc) {} "
              "ON CONFLICT (organisation_id) DO UPDATE SET built_from = EXCLUDED.built_from, v1 = EXCLUDED.v1, "
              "ogc = EXCLUDED.ogc")
    if isinstance(conn.connection.driver_connection, psycopg.AsyncConnection):  # run_sync on the API side: few
        for start in range(0, len(wanted), BATCH):
            rows = conn.execute(sql, {"ids": wanted[start:start + BATCH]}).mappings().all()
            conn.execute(text(upsert.format("VALUES (:id, :built_from, :v1, :ogc)")),
                         [dict(zip(("v1", "ogc"), build(r)), id=r["id"], built_from=r["updated_at"]) for r in rows])
        return len(wanted)
    temp_table(conn, "_doc", "(organisation_id int, built_from timestamptz, v1 text, ogc text)")
    for start in range(0, len(wanted), BATCH):
        rows = conn.execute(sql, {"ids": wanted[start:start + BATCH]}).mappings()
        copy_rows(conn, "_doc", ["organisation_id", "built_from", "v1", "ogc"],
                  ((r["id"], r["updated_at"], *build(r)) for r in rows))
    conn.execute(text(upsert.format("SELECT * FROM _doc")))
    conn.execute(text("DROP TABLE _doc"))
    return len(wanted)


async def refresh_async(conn: AsyncConnection, ids: Iterable[int] | None = None) -> int:
    ids = None if ids is None else list(ids)
    return await conn.run_sync(lambda sync: refresh(sync, ids))


def drop_all(conn: Connection) -> None:
    """After a change of labels every record shows (lookup lists, communes): rebuilt by ``refresh``."""
    conn.execute(text("DELETE FROM record_document"))


# ---------------------------------------------------------------- reading

_doc = RecordDocument.__table__
_org = Organisation.__table__


async def texts(conn: AsyncConnection, ids: Sequence[int], kind: str, *extra: ColumnElement) -> dict[int, tuple]:
    """id → (stored text of ``kind`` — "v1" or "ogc" —, *``extra`` columns of organisation ``o``) for
    the published records among ``ids``; records without a fresh document are shaped on the fly
    (same text)."""
    if not ids:
        return {}
    wanted = literal(list(ids), ARRAY(Integer))
    stmt = (
        select(_doc.c.organisation_id, _doc.c[kind], *extra)
        .select_from(_doc.join(_org, _org.c.id == _doc.c.organisation_id))
        .where(_doc.c.organisation_id == func.any(wanted), _org.c.publication_state == "published",
               _doc.c.built_from == _org.c.updated_at)
    )
    found = {r[0]: tuple(r[1:]) for r in await conn.execute(stmt)}
    missing = [i for i in ids if i not in found]
    if missing:
        extras: dict[int, tuple] = {}
        if extra:
            stmt = select(_org.c.id, *extra).where(_org.c.id == func.any(literal(missing, ARRAY(Integer))))
            extras = {r[0]: tuple(r[1:]) for r in await conn.execute(stmt)}
        for row in await fetch_records(conn, missing):
            v1, ogc = build(row)
            found[row["id"]] = (v1 if kind == "v1" else ogc, *extras.get(row["id"], ()))
    return found
