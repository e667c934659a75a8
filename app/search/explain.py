"""EXPLAIN what the search core runs: the plans of every statement one search issues.

Used by the plan test (no sequential scans) and the benchmarks (PostgreSQL-side time).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection

from .criteria import Criteria
from .query import Page, search


@dataclass
class Explained:
    statement: str
    plan: dict  # the top "Plan" node
    execution_ms: float | None  # with analyze=True

    @property
    def is_count(self) -> bool:
        return self.statement.lstrip().upper().startswith("SELECT COUNT")

    def nodes(self) -> list[dict]:
        """Every node of the plan."""
        found: list[dict] = []
        stack = [self.plan]
        while stack:
            found.append(stack.pop())
            stack.extend(found[-1].get("Plans", []))
        return found

    def seq_scans(self) -> list[str]:
        return [node.get("Relation Name") for node in self.nodes() if node.get("Node Type") == "Seq Scan"]


async def explain_search(
    conn: AsyncConnection, criteria: Criteria, *, sort: str | None = None, limit: int = 50, offset: int = 0,
    analyze: bool = False,
) -> tuple[Page, list[Explained]]:
    """Run one search page (``offset``: a numbered page, as OGC and HSDS ask) and EXPLAIN each
    statement it sent."""
    statements: list = []
    sync_engine = conn.engine.sync_engine

    def record(connection, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        page = await search(conn, criteria, sort=sort, limit=limit, cursor=None, lang="fr", secret="explain", offset=offset)
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)
    explained = []
    options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
    for statement, parameters in statements:
        result = (await conn.exec_driver_sql(f"EXPLAIN ({options}) {statement}", parameters)).scalar()
        explained.append(Explained(statement, result[0]["Plan"], result[0].get("Execution Time")))
    return page, explained
