"""SQL of the legacy social.brussels ``/rest`` lookup lists and thematic tree.

Organisations are never filtered here: the legacy organisation searches go through the search core
(``app.search.query.search`` + ``app.search.fetch_records``). Every function takes an
``AsyncConnection`` and returns plain dicts with ``*_nl`` / ``*_fr`` columns (``app.serialize.legacy``
shapes them); user input only reaches SQL as bound parameters.

``organisation_count`` of a category is the number of published organisations that
``/rest/search/organisation?categories=<id>`` finds: linked to the category or to any category below
it in any sector's tree (the core's ``category=`` rule).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .reference import category_counts_sql


async def _rows(conn: AsyncConnection, sql: str, params: dict | None = None) -> list[dict]:
    result = await conn.execute(text(sql), params or {})
    return [dict(row._mapping) for row in result]


# ---------------------------------------------------------------- sectors

SECTORS_SQL = """
SELECT id, title_nl, title_fr, description_nl, description_fr, position
  FROM sector
 WHERE CAST(:sector AS integer) IS NULL OR id = CAST(:sector AS integer)
 ORDER BY position, id
"""


async def sectors(conn: AsyncConnection, sector_id: int | None = None) -> list[dict]:
    """Every sector (or only ``sector_id``) in display order."""
    return await _rows(conn, SECTORS_SQL, {"sector": sector_id})


# One sector's tree in pre-order (position, id at each level): each placed category with the ids from
# the top of the tree down to it. A placement whose parent is not placed in the same sector starts a
# branch of its own; cycles are cut.
SECTOR_WALK_SQL = """
WITH RECURSIVE walk(category_id, path, sort_key) AS (
  SELECT t.category_id, ARRAY[t.category_id], ARRAY[t.position, t.category_id]
    FROM category_tree t
   WHERE t.sector_id = :sector
     AND (t.parent_category_id IS NULL OR NOT EXISTS (
            SELECT 1 FROM category_tree p WHERE p.sector_id = t.sector_id AND p.category_id = t.parent_category_id))
  UNION ALL
  SELECT t.category_id, w.path || t.category_id, w.sort_key || ARRAY[t.position, t.category_id]
    FROM walk w
    JOIN category_tree t ON t.sector_id = :sector AND t.parent_category_id = w.category_id
   WHERE NOT t.category_id = ANY(w.path)
)
SELECT DISTINCT ON (category_id) category_id, path, sort_key
  FROM walk
 ORDER BY category_id, cardinality(path), sort_key
"""


async def sector_walk(conn: AsyncConnection, sector_id: int) -> list[dict]:
    """Each category of a sector's tree once, with its path of category ids, in tree pre-order."""
    rows = await _rows(conn, SECTOR_WALK_SQL, {"sector": sector_id})
    return sorted(rows, key=lambda r: r["sort_key"])


# ---------------------------------------------------------------- categories

CATEGORIES_SQL = f"""
WITH RECURSIVE wanted AS (
  SELECT k.* FROM category k
   WHERE (CAST(:ids AS integer[]) IS NULL OR k.id = ANY(CAST(:ids AS integer[])))
     AND (CAST(:words AS text[]) IS NULL OR NOT EXISTS (
            SELECT 1 FROM unnest(CAST(:words AS text[])) AS w
             WHERE strpos(bruso_normalise(concat_ws(' ', k.title_nl, k.title_fr,
                                                    array_to_string(k.keywords_nl, ' '),
                                                    array_to_string(k.keywords_fr, ' '))),
                          bruso_normalise(w)) = 0))
),
counts AS ({category_counts_sql("SELECT id, id FROM wanted")})
SELECT w.id, w.title_nl, w.title_fr, w.description_nl, w.description_fr,
       coalesce(w.urls_nl, '{{}}') AS urls_nl, coalesce(w.urls_fr, '{{}}') AS urls_fr,
       coalesce(w.keywords_nl, '{{}}') AS keywords_nl, coalesce(w.keywords_fr, '{{}}') AS keywords_fr,
       w.position, coalesce(n.organisation_count, 0) AS organisation_count
  FROM wanted w
  LEFT JOIN counts n ON n.category_id = w.id
 ORDER BY w.position, w.id
"""


async def categories(conn: AsyncConnection, *, words: Sequence[str] | None = None, ids: Sequence[int] | None = None) -> list[dict]:
    """Categories (all, only ``ids``, or those whose NL/FR titles and keywords contain every one of
    ``words``, accent- and case-insensitive) with their published organisation counts."""
    return await _rows(
        conn,
        CATEGORIES_SQL,
        {"words": list(words) if words is not None else None, "ids": list(ids) if ids is not None else None},
    )


async def category_titles(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    rows = await _rows(conn, "SELECT id, title_nl, title_fr FROM category WHERE id = ANY(CAST(:ids AS integer[]))", {"ids": list(ids)})
    return {r["id"]: r for r in rows}


# ---------------------------------------------------------------- lookup lists

ACCREDITATIONS_SQL = """
SELECT a.id, a.label_nl, a.label_fr, au.id AS authority_id, au.name_nl AS authority_nl, au.name_fr AS authority_fr
  FROM accreditation a LEFT JOIN authority au ON au.id = a.authority_id
 ORDER BY a.id
"""

LOOKUP_SQL = {
    "authority": "SELECT id, name_nl, name_fr FROM authority ORDER BY id",
    "legal_status": "SELECT id, label_nl, label_fr FROM legal_status ORDER BY id",
    "language": "SELECT id, name_nl, name_fr FROM language ORDER BY id",
    "offer_type": "SELECT id, label_nl, label_fr FROM offer_type ORDER BY id",
    "action_zone": "SELECT id, label_nl, label_fr, parent_id FROM action_zone ORDER BY id",
}


async def accreditations(conn: AsyncConnection) -> list[dict]:
    return await _rows(conn, ACCREDITATIONS_SQL)


async def lookup(conn: AsyncConnection, kind: str) -> list[dict]:
    """A lookup list by kind (a key of ``LOOKUP_SQL``, never taken from the request)."""
    return await _rows(conn, LOOKUP_SQL[kind])
