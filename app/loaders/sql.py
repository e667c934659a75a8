"""Small helpers for bulk writes through psycopg's COPY inside a SQLAlchemy transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, text


def copy_rows(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> int:
    """COPY rows into ``table`` (a real or temporary table) on the connection's transaction."""
    cursor = conn.connection.driver_connection.cursor()
    count = 0
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
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
