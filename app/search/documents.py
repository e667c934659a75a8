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

from collections.abc import Iterable, Iterator, Sequence

import orjson
import psycopg
from sqlalchemy import ColumnElement, Connection, Integer, func, literal, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from ..loaders.sql import copy_rows, temp_table
from ..models import Organisation, RecordDocument
from ..serialize import ogc as ogc_shape
from ..serialize import v1 as v1_shape
from . import RECORD_COLUMNS, RECORD_SQL, fetch_records

BASE = "\x01"  # the base URL when a document is built; orjson writes it as the six bytes \u0001
# in a stored document only a URL starts with it: '"' + \u0001 + '/' (a text holding a control
# character followed by '/' at its very start would be rewritten too: loaders never keep one)
PLACEHOLDER = b'"\\u0001/'
BATCH = 2000


def with_base(body: bytes, base: str) -> bytes:
    """Write the public base URL into a body assembled from stored documents."""
    return body.replace(PLACEHOLDER, b'"' + base.encode() + b"/")


def _dumps(row: dict) -> tuple[bytes, bytes]:
    return (orjson.dumps(v1_shape.organisation(row, BASE)),
            orjson.dumps(ogc_shape.organisation_feature(row, None, BASE)["properties"]))


def build(row: dict) -> tuple[str, str]:
    """The stored texts of one record (a row of ``RECORD_SQL``): (v1 document, OGC properties)."""
    v1, ogc = _dumps(row)
    return v1.decode(), ogc.decode()


STALE_SQL = """
SELECT o.id FROM organisation o LEFT JOIN record_document d ON d.organisation_id = o.id
 WHERE d.organisation_id IS NULL OR d.built_from <> o.updated_at
 ORDER BY o.id
"""
BULK = 5000  # from this many records on, refresh builds set-based (BulkWriter)


def refresh(conn: Connection, ids: Iterable[int] | None = None) -> int:
    """Build the documents of ``ids`` (all missing or stale ones when None), in the caller's
    transaction; returns how many were written."""
    if ids is None and not isinstance(conn.connection.driver_connection, psycopg.AsyncConnection):
        temp_table(conn, "_stale", f"AS {STALE_SQL}")
        count = conn.execute(text("SELECT count(*) FROM _stale")).scalar_one()
        if count >= BULK:
            written = BulkWriter(conn).write("SELECT id FROM _stale", replace=True)
            conn.execute(text("DROP TABLE _stale"))
            return written
        wanted = list(conn.execute(text("SELECT id FROM _stale ORDER BY id")).scalars())
        conn.execute(text("DROP TABLE _stale"))
    else:
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


# ---------------------------------------------------------------- bulk building

# The columns of RECORD_SQL's rows. Those whose Python value JSON carries exactly (integers, text,
# text arrays, booleans) come in one json_build_array per record, parsed by orjson; dates, times
# and floats (152302.0 must stay a float) come as columns.
_NATIVE = [c.name for c in RECORD_COLUMNS if c.type.__class__.__name__ in ("Date", "DateTime", "Float")]
_JSON = [c.name for c in RECORD_COLUMNS if c.name not in _NATIVE]
_LINKED = ("category", "accreditation", "language", "offer_type", "action_zone")

# The records of ``{ids}`` (a query of ids), with each link table pre-aggregated once (GROUP BY)
# instead of one correlated subquery per record and link table; the labels are joined in Python
# from the lookup lists (``BulkWriter``), as RECORD_SQL's subqueries join them.
BULK_SQL = """
SELECT json_build_array({json}, {links})::text, {native}
  FROM organisation o {joins}
 WHERE o.id IN ({{ids}})
 ORDER BY o.id
""".format(
    json=", ".join(f"o.{c}" for c in _JSON),
    links=", ".join(f"l_{k}.ids" for k in _LINKED),
    native=", ".join(f"o.{c}" for c in _NATIVE),
    joins=" ".join(
        f"LEFT JOIN (SELECT organisation_id, array_agg({k}_id ORDER BY position) AS ids FROM organisation_{k} "
        f"WHERE organisation_id IN ({{ids}}) GROUP BY organisation_id) l_{k} ON l_{k}.organisation_id = o.id"
        for k in _LINKED),
)


class BulkWriter:
    """Builds documents set-based and COPYs them into ``record_document``: the lookup lists are read
    once, each record's row is assembled as RECORD_SQL shapes it (same keys, same values), then
    ``build`` makes the texts. Bounded memory: rows are fetched ``BATCH`` at a time."""

    def __init__(self, conn: Connection):
        self.conn = conn
        q = lambda sql: conn.execute(text(sql)).all()
        authority = {r[0]: {"id": r[0], "name_nl": r[1], "name_fr": r[2]} for r in q("SELECT id, name_nl, name_fr FROM authority")}
        self.labels = {
            "category": {r[0]: {"id": r[0], "title_nl": r[1], "title_fr": r[2]} for r in q("SELECT id, title_nl, title_fr FROM category")},
            "accreditation": {r[0]: {"id": r[0], "label_nl": r[1], "label_fr": r[2], "authority": authority.get(r[3])}
                              for r in q("SELECT id, label_nl, label_fr, authority_id FROM accreditation")},
            "language": {r[0]: {"id": r[0], "name_nl": r[1], "name_fr": r[2]} for r in q("SELECT id, name_nl, name_fr FROM language")},
            "offer_type": {r[0]: {"id": r[0], "label_nl": r[1], "label_fr": r[2]} for r in q("SELECT id, label_nl, label_fr FROM offer_type")},
            "action_zone": {r[0]: {"id": r[0], "label_nl": r[1], "label_fr": r[2], "kind": r[3]}
                            for r in q("SELECT id, label_nl, label_fr, kind FROM action_zone")},
        }
        self.legal = {r[0]: {"id": r[0], "label_nl": r[1], "label_fr": r[2]} for r in q("SELECT id, label_nl, label_fr FROM legal_status")}
        self.communes = {r[0]: {"nl": r[1], "fr": r[2]} for r in q("SELECT nis_code, name_nl, name_fr FROM commune")}
        self.sectors = {r[0]: (r[3], {"id": r[0], "title_nl": r[1], "title_fr": r[2]})
                        for r in q("SELECT id, title_nl, title_fr, position FROM sector")}
        self.tree: dict[int, list[tuple[int, bool]]] = {}
        for category_id, sector_id, inferred in q("SELECT category_id, sector_id, inferred FROM category_tree"):
            self.tree.setdefault(category_id, []).append((sector_id, inferred))
        self._sectors_of: dict[tuple, list[dict]] = {}

    def _sector_list(self, category_ids: tuple) -> list[dict]:
        """RECORD_SQL's sectors: each sector of the record's categories (bool_and of inferred), in
        sector order."""
        found = self._sectors_of.get(category_ids)
        if found is None:
            inferred: dict[int, bool] = {}
            for category_id in category_ids:
                for sector_id, flag in self.tree.get(category_id, ()):
                    inferred[sector_id] = inferred.get(sector_id, True) and flag
            known = [s for s in inferred if s in self.sectors]
            found = [dict(self.sectors[s][1], inferred=inferred[s]) for s in sorted(known, key=lambda s: self.sectors[s][0])]
            if len(self._sectors_of) > 100_000:
                self._sectors_of.clear()
            self._sectors_of[category_ids] = found
        return found

    def _row(self, record) -> dict:
        """One RECORD_SQL row from one BULK_SQL record."""
        values = orjson.loads(record[0])
        row = dict(zip(_JSON, values))
        row.update(zip(_NATIVE, record[1:]))
        n = len(_JSON)
        cats, accs, langs, offers, zones = (values[n + i] or () for i in range(5))
        labels = self.labels
        row["legal_status"] = self.legal.get(row["legal_status_id"])
        row["categories"] = [labels["category"][i] for i in cats]
        row["sectors"] = self._sector_list(tuple(cats))
        row["accreditations"] = [labels["accreditation"][i] for i in accs]
        row["languages"] = [labels["language"][i] for i in langs]
        row["offer_types"] = [labels["offer_type"][i] for i in offers]
        row["action_zones"] = [labels["action_zone"][i] for i in zones]
        row["commune_ref"] = self.communes.get(row["commune_nis"])
        return row

    def rows(self, ids_sql: str) -> Iterator[dict]:
        """RECORD_SQL rows of the organisations ``ids_sql`` selects, in id order (streamed)."""
        driver = self.conn.connection.driver_connection
        with driver.cursor(name="bruso_documents") as cursor:
            cursor.itersize = BATCH
            cursor.execute(BULK_SQL.replace("{ids}", ids_sql))
            for record in cursor:
                yield self._row(record)

    def fetch(self, driver, ids_sql: str) -> list:
        """The BULK_SQL records of a batch (on ``driver``, which another thread may own)."""
        return driver.execute(BULK_SQL.replace("{ids}", ids_sql)).fetchall()

    def lines(self, records: Iterable) -> list[bytes]:
        """COPY lines of the documents of ``fetch``ed records."""
        return [_line(self._row(record)) for record in records]

    def write(self, ids_sql: str, *, replace: bool = False) -> int:
        """Build and store the documents of ``ids_sql``; ``replace``: drop theirs first (else
        they have none, as after a first load). Returns how many were written."""
        if replace:
            self.conn.execute(text(f"DELETE FROM record_document WHERE organisation_id IN ({ids_sql})"))
        driver = self.conn.connection.driver_connection
        written = 0
        pending: list[bytes] = []
        for row in self.rows(ids_sql):
            pending.append(_line(row))
            if len(pending) >= BATCH:
                written += copy_documents(driver, pending)
        return written + copy_documents(driver, pending)


def _line(row: dict) -> bytes:
    """A record_document COPY line (text format: orjson escapes every control character, so only
    the backslashes are doubled)."""
    v1, ogc = _dumps(row)
    return b"%d\t%s\t%s\t%s\n" % (row["id"], row["updated_at"].isoformat().encode(),
                                    v1.replace(b"\\", b"\\\\"), ogc.replace(b"\\", b"\\\\"))


def copy_documents(driver, lines: list[bytes]) -> int:
    """COPY prepared lines (``_line``) into record_document; empties ``lines``."""
    if not lines:
        return 0
    count = len(lines)
    with driver.cursor().copy("COPY record_document (organisation_id, built_from, v1, ogc) FROM STDIN") as copy:
        copy.write(b"".join(lines))
    lines.clear()
    return count


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
