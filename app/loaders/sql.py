"""Small helpers for bulk writes through psycopg's COPY inside a SQLAlchemy transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, text


def copy_rows(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence],
              types: Sequence[str] | None = None) -> int:
    """COPY rows into ``table`` (a real or temporary table) on the connection's transaction;
    ``types`` (PostgreSQL type names, one per column) spare psycopg guessing each value's type."""
    cursor = conn.connection.driver_connection.cursor()
    count = 0
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        if types is not None:
            copy.set_types(types)
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def temp_table(conn: Connection, name: str, definition: str) -> None:
    """A temporary staging table, dropped at commit (and replaced when a load runs twice in one transaction).

    ``definition`` is either a column list in parentheses or ``AS SELECT ...``.
    """
    conn.execute(text(f"DROP TABLE IF EXISTS pg_temp.{name}"))
    if definition.lstrip().upper().startswith("AS "):
        conn.execute(text(f"CREATE TEMP TABLE {name} ON COMMIT DROP {definition}"))
    else:
        conn.execute(text(f"CREATE TEMP TABLE {name} {definition} ON COMMIT DROP"))


class RowFormatter:
    """COPY text-format bytes of rows, made without the connection (for a COPY sent later, or by
    another thread): psycopg's own formatting with fixed dumpers (``types``), as ``copy_rows``."""

    def __init__(self, conn: Connection, types: Sequence[str]):
        from psycopg import _copy_base
        from psycopg.adapt import Transformer
        from psycopg.pq import Format

        driver = conn.connection.driver_connection
        self._format = _copy_base.format_row_text
        self._tx = Transformer(driver)
        registry = driver.adapters.types
        self._tx.set_dumper_types([registry.get_oid(t) for t in types], Format.TEXT)

    def rows(self, rows: Iterable[Sequence]) -> bytearray:
        out = bytearray()
        fmt, tx = self._format, self._tx
        for row in rows:
            fmt(row, tx, out)
        return out


def copy_bytes(driver, table: str, columns: Sequence[str], data: bytes | bytearray) -> None:
    """COPY already formatted text-format bytes (``RowFormatter``) on a psycopg connection."""
    with driver.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        copy.write(data)
