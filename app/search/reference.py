"""SQL of the reference endpoints: taxonomy, lookup lists, districts, suggestions and statistics.

Every function takes an ``AsyncConnection`` and returns plain dicts (labels as ``*_nl`` / ``*_fr``
columns; the router shapes them). User input only ever reaches SQL as bound parameters.

Counting rules (published organisations only, each organisation counted once per group):

* sector: linked to a category placed in that sector's tree (the same rule as ``sector=`` in search);
* category (lists): linked to the category or to any category below it in any sector's tree (the
  same rule as ``category=`` in search);
* category (a node of one sector's tree): linked to that category or any descendant in that tree;
* commune / quartier / statistical sector: the organisation's address code.

Statistics never filter on their own: the matching organisations are ``app.search.query.filters``
(with the criteria resolved by ``resolve``, exactly as the search does).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, distinct, func, select, text, true
from sqlalchemy.ext.asyncio import AsyncConnection

from ..models import LINKS, Commune, Quartier, StatisticalSector
from ..models.taxonomy import Accreditation, Authority, Category, CategoryTree, Sector
from .criteria import Criteria
from .query import Resolved, filters, o, resolve, tokens

oc = LINKS["category"]
oa = LINKS["accreditation"]

# GeoJSON geometry text in WGS84 with 6 decimals (~0.1 m), built by PostGIS; the router embeds the
# text as is (no parse/re-serialise of hundreds of polygons).
GEOJSON = "ST_AsGeoJSON(ST_Transform({col}, 4326), 6)"

# ---------------------------------------------------------------- helpers


async def _rows(conn: AsyncConnection, sql: str, params: dict | None = None) -> list[dict]:
    result = await conn.execute(text(sql), params or {})
    return [dict(row._mapping) for row in result]


def _int_array(values: Sequence[int] | None):
    return list(values) if values else None


# ---------------------------------------------------------------- sectors

SECTOR_COUNTS = """
SELECT t.sector_id, count(DISTINCT oc.organisation_id) AS organisation_count
  FROM category_tree t
  JOIN organisation_category oc ON oc.category_id = t.category_id
  JOIN organisation o ON o.id = oc.organisation_id AND o.publication_state = 'published'
 WHERE (CAST(:sector AS integer) IS NULL OR t.sector_id = CAST(:sector AS integer))
 GROUP BY t.sector_id
"""

SECTORS_SQL = f"""
WITH counts AS ({SECTOR_COUNTS}),
placements AS (
  SELECT sector_id, count(*) AS placements, bool_and(inferred) AS all_inferred
    FROM category_tree GROUP BY sector_id
)
SELECT s.id, s.title_nl, s.title_fr, s.description_nl, s.description_fr, s.position,
       coalesce(c.organisation_count, 0) AS organisation_count,
       coalesce(p.placements, 0) AS placements,
       coalesce(p.all_inferred, false) AS tree_inferred
  FROM sector s
  LEFT JOIN counts c ON c.sector_id = s.id
  LEFT JOIN placements p ON p.sector_id = s.id
 WHERE (CAST(:sector AS integer) IS NULL OR s.id = CAST(:sector AS integer))
 ORDER BY s.position, s.id
"""


async def sectors(conn: AsyncConnection, sector_id: int | None = None) -> list[dict]:
    """Every sector (or one), in display order, with its organisation count and tree provenance."""
    return await _rows(conn, SECTORS_SQL, {"sector": sector_id})


SECTOR_TREE_SQL = """
WITH RECURSIVE closure(ancestor, descendant) AS (
  SELECT category_id, category_id FROM category_tree WHERE sector_id = :sector
  UNION
  SELECT c.ancestor, t.category_id
    FROM closure c JOIN category_tree t ON t.sector_id = :sector AND t.parent_category_id = c.descendant
),
counts AS (
  SELECT c.ancestor AS category_id, count(DISTINCT oc.organisation_id) AS organisation_count
    FROM closure c
    JOIN organisation_category oc ON oc.category_id = c.descendant
    JOIN organisation o ON o.id = oc.organisation_id AND o.publication_state = 'published'
   GROUP BY c.ancestor
)
SELECT t.category_id AS id, t.parent_category_id, t.position, t.inferred,
       k.title_nl, k.title_fr, coalesce(n.organisation_count, 0) AS organisation_count
  FROM category_tree t
  JOIN category k ON k.id = t.category_id
  LEFT JOIN counts n ON n.category_id = t.category_id
 WHERE t.sector_id = :sector
 ORDER BY t.position, t.category_id
"""


async def sector_tree(conn: AsyncConnection, sector_id: int) -> list[dict]:
    """The flat placements of one sector's tree with their (descendant-inclusive) counts."""
    return await _rows(conn, SECTOR_TREE_SQL, {"sector": sector_id})


async def existing_sectors(conn: AsyncConnection, ids: Sequence[int]) -> set[int]:
    result = await conn.execute(text("SELECT id FROM sector WHERE id = ANY(CAST(:ids AS integer[]))"), {"ids": list(ids)})
    return set(result.scalars())


# ---------------------------------------------------------------- categories

# Every category with its published organisations, including those of the categories below it in
# any sector's tree: the number a search with category=<id> finds.
def category_counts_sql(seed: str) -> str:
    """(category_id, organisation_count) for the categories ``seed`` selects (as ``id, id`` rows),
    each counting its own and its descendants' published organisations once. Shared by /v1 and
    /rest so that both report the number a ``category=<id>`` search finds."""
    return f"""
WITH RECURSIVE closure(ancestor, descendant) AS (
  {seed}
  UNION
  SELECT c.ancestor, t.category_id FROM closure c JOIN category_tree t ON t.parent_category_id = c.descendant
)
SELECT c.ancestor AS category_id, count(DISTINCT oc.organisation_id) AS organisation_count
  FROM closure c
  JOIN organisation_category oc ON oc.category_id = c.descendant
  JOIN organisation o ON o.id = oc.organisation_id AND o.publication_state = 'published'
 GROUP BY c.ancestor
"""


CATEGORY_COUNTS = category_counts_sql(
    "SELECT id, id FROM category WHERE (CAST(:only AS integer) IS NULL OR id = CAST(:only AS integer))"
)

CATEGORY_DOC = (
    "bruso_normalise(concat_ws(' ', k.title_nl, k.title_fr, array_to_string(k.keywords_nl, ' '), "
    "array_to_string(k.keywords_fr, ' ')))"
)

CATEGORIES_SQL = f"""
WITH counts AS ({CATEGORY_COUNTS}),
words AS (
  SELECT DISTINCT bruso_normalise(w) AS w FROM unnest(CAST(:tokens AS text[])) AS w
),
scored AS (
  SELECT k.*,
         {CATEGORY_DOC} AS doc,
         bruso_normalise(k.title_nl) AS t_nl, bruso_normalise(k.title_fr) AS t_fr
    FROM category k
   WHERE (CAST(:sectors AS integer[]) IS NULL OR EXISTS (
            SELECT 1 FROM category_tree t
             WHERE t.category_id = k.id AND t.sector_id = ANY(CAST(:sectors AS integer[]))))
     AND (CAST(:only AS integer) IS NULL OR k.id = CAST(:only AS integer))
),
matched AS (
  SELECT s.*,
         CASE WHEN CAST(:q AS text) IS NULL THEN 0.0 ELSE
           (SELECT coalesce(sum(2 * greatest(word_similarity(w.w, s.t_nl), word_similarity(w.w, s.t_fr))
                                + word_similarity(w.w, s.doc)), 0) FROM words w)
           + CASE WHEN strpos(s.t_nl, bruso_normalise(CAST(:q AS text))) > 0
                    OR strpos(s.t_fr, bruso_normalise(CAST(:q AS text))) > 0 THEN 3 ELSE 0 END
         END AS score
    FROM scored s
   WHERE CAST(:q AS text) IS NULL
      OR (
        -- every word of q occurs in a title or keyword, literally or as a close word (typos)
        EXISTS (SELECT 1 FROM words)
        AND NOT EXISTS (SELECT 1 FROM words w
                         WHERE NOT (strpos(s.doc, w.w) > 0 OR word_similarity(w.w, s.doc) >= :threshold))
      )
      OR (NOT EXISTS (SELECT 1 FROM words) AND strpos(s.doc, bruso_normalise(CAST(:q AS text))) > 0)
)
SELECT m.id, m.title_nl, m.title_fr, m.description_nl, m.description_fr,
       m.keywords_nl, m.keywords_fr, m.urls_nl, m.urls_fr, m.position,
       round(CAST(m.score AS numeric), 4)::float AS score,
       coalesce(n.organisation_count, 0) AS organisation_count,
       coalesce((SELECT array_agg(t.sector_id ORDER BY s.position, s.id)
                   FROM category_tree t JOIN sector s ON s.id = t.sector_id
                  WHERE t.category_id = m.id), '{{}}') AS sectors
  FROM matched m
  LEFT JOIN counts n ON n.category_id = m.id
 ORDER BY m.score DESC, m.position, m.id
 LIMIT :limit
"""

# word_similarity() at or above this counts as the same word typed with a typo (categories)
TYPO_THRESHOLD = 0.5


async def categories(
    conn: AsyncConnection,
    *,
    q: str | None = None,
    sectors: Sequence[int] = (),
    limit: int = 100,
    category_id: int | None = None,
) -> list[dict]:
    """Categories best match first (when q), else in display order; with counts and sector ids."""
    params = {
        "q": q or None,
        "tokens": tokens(q) if q else [],
        "sectors": _int_array(sectors),
        "only": category_id,
        "limit": limit,
        "threshold": TYPO_THRESHOLD,
    }
    return await _rows(conn, CATEGORIES_SQL, params)


CATEGORY_PATHS_SQL = """
WITH RECURSIVE up(sector_id, parent, path, depth) AS (
  SELECT t.sector_id, t.parent_category_id, ARRAY[t.category_id], 0
    FROM category_tree t WHERE t.category_id = :id
  UNION ALL
  SELECT u.sector_id, p.parent_category_id, p.category_id || u.path, u.depth + 1
    FROM up u JOIN category_tree p ON p.sector_id = u.sector_id AND p.category_id = u.parent
   WHERE NOT p.category_id = ANY(u.path)
),
top AS (
  SELECT DISTINCT ON (sector_id) sector_id, path FROM up ORDER BY sector_id, depth DESC
)
SELECT s.id AS sector_id, s.title_nl, s.title_fr, top.path, t.inferred
  FROM top
  JOIN sector s ON s.id = top.sector_id
  JOIN category_tree t ON t.sector_id = top.sector_id AND t.category_id = :id
 ORDER BY s.position, s.id
"""


async def category_paths(conn: AsyncConnection, category_id: int) -> list[dict]:
    """Each sector a category sits in, with the category ids from the top of that tree down to it."""
    return await _rows(conn, CATEGORY_PATHS_SQL, {"id": category_id})


# ---------------------------------------------------------------- lookup lists


async def accreditations(conn: AsyncConnection) -> list[dict]:
    return await _rows(
        conn,
        """
        SELECT a.id, a.label_nl, a.label_fr, a.legislation_url,
               au.id AS authority_id, au.name_nl AS authority_nl, au.name_fr AS authority_fr
          FROM accreditation a LEFT JOIN authority au ON au.id = a.authority_id
         ORDER BY a.id
        """,
    )


async def authorities(conn: AsyncConnection) -> list[dict]:
    return await _rows(
        conn,
        """
        SELECT au.id, au.name_nl, au.name_fr,
               (SELECT count(*) FROM accreditation a WHERE a.authority_id = au.id) AS accreditation_count
          FROM authority au ORDER BY au.id
        """,
    )


async def action_zones(conn: AsyncConnection) -> list[dict]:
    return await _rows(
        conn,
        """
        SELECT id, label_nl, label_fr, kind, commune_nis, quartier_code, parent_id
          FROM action_zone ORDER BY id
        """,
    )


LOOKUPS = {
    # table → label stem
    "legal_status": "label",
    "offer_type": "label",
    "language": "name",
}


async def lookup(conn: AsyncConnection, table: str) -> list[dict]:
    """A plain id + bilingual label list (table names come from LOOKUPS, never from the request)."""
    stem = LOOKUPS[table]
    return await _rows(conn, f"SELECT id, {stem}_nl, {stem}_fr FROM {table} ORDER BY id")


# ---------------------------------------------------------------- districts

DISTRICTS = {
    # kind → (table, key column, organisation column, extra columns)
    "commune": ("commune", "nis_code", "commune_nis", ("area_km2",)),
    "quartier": ("quartier", "code", "quartier_code", ("area_km2",)),
    "statistical_sector": ("statistical_sector", "code", "statistical_sector_code", ("commune_nis", "quartier_code")),
}


async def districts(conn: AsyncConnection, kind: str, *, geometry: bool = False) -> list[dict]:
    """Communes, quartiers or statistical sectors with their published organisation counts.

    With ``geometry`` each row has ``geometry`` as GeoJSON text in WGS84 (6 decimals), built in SQL.
    """
    table, key, column, extra = DISTRICTS[kind]
    columns = ", ".join(f"d.{c}" for c in extra)
    geom = f", {GEOJSON.format(col='d.geom')} AS geometry" if geometry else ""
    sql = f"""
    WITH counts AS (
      SELECT {column} AS code, count(*) AS organisation_count
        FROM organisation WHERE publication_state = 'published' AND {column} IS NOT NULL
       GROUP BY {column}
    )
    SELECT d.{key} AS code, d.name_nl, d.name_fr, {columns},
           coalesce(c.organisation_count, 0) AS organisation_count{geom}
      FROM {table} d LEFT JOIN counts c ON c.code = d.{key}
     ORDER BY d.{key}
    """
    return await _rows(conn, sql)


# ---------------------------------------------------------------- suggestions

SUGGEST_TYPES = ("commune", "quartier", "street", "category", "organisation")

# Names folded (bruso_normalise: lower case, no accents) with punctuation turned into spaces, so
# that a prefix test is a plain starts_with()/strpos() (no LIKE escaping) and "saint gilles" matches
# "Saint-Gilles". translate() is used on the rows (cheap); the query itself also collapses spaces.
PUNCTUATION = "-'’‘`´.,;:!?()[]{}/\\\"«»&+*_|"
WORDS = "translate(bruso_normalise(coalesce({v}, '')), :punct, :blanks)"
Q_WORDS = "trim(regexp_replace(translate(bruso_normalise(CAST(:q AS text)), :punct, :blanks), '\\s+', ' ', 'g'))"

# Communes, quartiers, categories and streets come from the materialized view suggest_entry
# (migration 0003: names folded once, trigram-indexed), filtered to the rows that contain q or a
# close word. The organisation sources give type, id (text), label_nl, label_fr, the names to match
# (nl, fr) and extra words (alternative names), folded here. They go through the trigram index on search_text (folded names, activities,
# categories; it starts with the NL then FR official name): a pass for the words of q in order
# (punctuation may sit between them), bounded and name-prefix matches first, and a typo pass
# (word_similarity over the long search_text is costly, so it only runs when the other sources
# leave room, see suggest()).
SUGGEST_SOURCES = {
    "organisation": """
        SELECT 'organisation', id::text, name_official_nl, name_official_fr, name_official_nl, name_official_fr,
               concat_ws(' ', array_to_string(name_alternative_nl, ' '), array_to_string(name_alternative_fr, ' ')), 5
          FROM organisation
         WHERE publication_state = 'published'
           AND length((SELECT nq FROM qq)) >= 3
           AND search_text LIKE '%' || replace((SELECT nq FROM qq), ' ', '%') || '%'
         ORDER BY starts_with(search_text, (SELECT nq FROM qq)) DESC, id
         LIMIT 500""",
    "organisation_typo": """
        SELECT 'organisation', id::text, name_official_nl, name_official_fr, name_official_nl, name_official_fr,
               concat_ws(' ', array_to_string(name_alternative_nl, ' '), array_to_string(name_alternative_fr, ' ')), 5
          FROM organisation
         WHERE publication_state = 'published'
           AND length((SELECT nq FROM qq)) >= 4
           AND search_text %> (SELECT nq FROM qq)
           AND search_text NOT LIKE '%' || replace((SELECT nq FROM qq), ' ', '%') || '%'
         LIMIT 200""",
}

# Scores, best first: a name starting with q 0.7–1.0, a word starting with q 0.4–0.7 (both raised by
# the trigram similarity of q to the whole name, so exact and short names come first), a close word
# (typo) 0–0.4 (0.4 × word_similarity, at least SUGGEST_TYPO_THRESHOLD).
SUGGEST_SQL = """
WITH qq AS (
  SELECT {q_words} AS nq
),
candidates(type, id, label_nl, label_fr, w_nl, w_fr, w_extra, priority) AS ({union}),
measured AS (
  SELECT c.*, qq.nq
    FROM candidates c, qq
   WHERE qq.nq <> ''
),
tiered AS (
  SELECT m.*,
         CASE WHEN starts_with(w_nl, nq) OR starts_with(w_fr, nq) THEN 0
              WHEN strpos(' ' || w_nl, ' ' || nq) > 0 OR strpos(' ' || w_fr, ' ' || nq) > 0
                OR strpos(' ' || w_extra, ' ' || nq) > 0 THEN 1
              ELSE 2 END AS tier
    FROM measured m
),
scored AS (
  -- similarities are only computed where they decide (CASE evaluates one branch)
  SELECT type, id, label_nl, label_fr, priority,
         CASE tier WHEN 0 THEN 0.7 + 0.3 * greatest(similarity(nq, w_nl), similarity(nq, w_fr))
                   WHEN 1 THEN 0.4 + 0.3 * greatest(similarity(nq, w_nl), similarity(nq, w_fr))
                   ELSE 0.4 * greatest(word_similarity(nq, w_nl), word_similarity(nq, w_fr), word_similarity(nq, w_extra))
         END AS score
    FROM tiered
)
SELECT type, id, label_nl, label_fr, priority, round(CAST(score AS numeric), 4)::float AS score
  FROM scored
 WHERE score >= 0.4 * :threshold
 ORDER BY score DESC, priority, label_fr, id
 LIMIT :limit
"""

# Precomputed entries that contain q (any tier 0/1 match) or a close word (tier 2), found through
# the trigram indexes of suggest_entry; %> is word_similarity above pg_trgm's threshold (0.6).
STATIC_CANDIDATES = """
SELECT e.type, e.id, e.label_nl, e.label_fr, e.w_nl, e.w_fr, e.w_extra, e.priority
  FROM suggest_entry e, qq
 WHERE e.type = ANY(CAST(:static_types AS text[]))
   AND (e.w_nl LIKE '%' || qq.nq || '%' OR e.w_fr LIKE '%' || qq.nq || '%' OR e.w_extra LIKE '%' || qq.nq || '%'
        OR e.w_nl %> qq.nq OR e.w_fr %> qq.nq OR e.w_extra %> qq.nq)
"""
STATIC_TYPES = ("commune", "quartier", "category", "street")
FOLDED_SOURCE = "SELECT type, id, label_nl, label_fr, {w_nl}, {w_fr}, {w_extra}, priority FROM ({source}) c(type, id, label_nl, label_fr, m_nl, m_fr, m_extra, priority)"

SUGGEST_TYPO_THRESHOLD = 0.6  # pg_trgm's default word_similarity_threshold


def _suggest_order(row: dict):
    return (-row["score"], row["priority"], row["label_fr"] or "", row["id"])


async def _suggest_pass(conn: AsyncConnection, q: str, sources: Sequence[str], limit: int) -> list[dict]:
    static = [t for t in sources if t in STATIC_TYPES]
    parts = [STATIC_CANDIDATES] if static else []
    parts += [
        FOLDED_SOURCE.format(
            source=SUGGEST_SOURCES[t], w_nl=WORDS.format(v="c.m_nl"), w_fr=WORDS.format(v="c.m_fr"),
            w_extra=WORDS.format(v="c.m_extra"),
        )
        for t in sources
        if t not in STATIC_TYPES
    ]
    sql = SUGGEST_SQL.format(q_words=Q_WORDS, union=" UNION ALL ".join(f"({p})" for p in parts))
    params = {
        "q": q, "limit": limit, "threshold": SUGGEST_TYPO_THRESHOLD, "static_types": static,
        "punct": PUNCTUATION, "blanks": " " * len(PUNCTUATION),
    }
    return await _rows(conn, sql, params)


async def suggest(conn: AsyncConnection, q: str, types: Sequence[str], limit: int = 10) -> list[dict]:
    """Ranked suggestions: whole-name prefix, then word prefix, then close words (trigrams)."""
    sources = [t for t in SUGGEST_TYPES if t in types]
    rows = await _suggest_pass(conn, q, sources, limit)
    # Organisations with a typo can only rank below every prefix match (score < 0.4 ≤ any prefix
    # match): look for them only when prefix matches leave room.
    if "organisation" in sources and sum(r["score"] >= 0.4 for r in rows) < limit:
        rows += await _suggest_pass(conn, q, ["organisation_typo"], limit)
        rows = sorted(rows, key=_suggest_order)[:limit]
    return rows


# ---------------------------------------------------------------- statistics

GROUP_BY = ("sector", "category", "commune", "quartier", "statistical_sector", "authority")
GEO_GROUPS = ("commune", "quartier", "statistical_sector")

_sector = Sector.__table__
_category = Category.__table__
_authority = Authority.__table__
_accreditation = Accreditation.__table__
_tree = CategoryTree.__table__
_DISTRICT_TABLES = {
    "commune": (Commune.__table__, "nis_code", "commune_nis"),
    "quartier": (Quartier.__table__, "code", "quartier_code"),
    "statistical_sector": (StatisticalSector.__table__, "code", "statistical_sector_code"),
}


def _pairs(criteria: Criteria, resolved: Resolved, group_by: str):
    """(key, organisation id) for every matching organisation and each group it belongs to."""
    matching = select(o.c.id, o.c.commune_nis, o.c.quartier_code, o.c.statistical_sector_code).where(
        and_(true(), *filters(criteria, resolved))
    ).cte("matching")
    m = matching.c
    if group_by == "sector":
        pairs = (
            select(_tree.c.sector_id.label("key"), m.id)
            .select_from(matching.join(oc, oc.c.organisation_id == m.id).join(_tree, _tree.c.category_id == oc.c.category_id))
            .distinct()
        )
    elif group_by == "category":
        pairs = select(oc.c.category_id.label("key"), m.id).select_from(matching.join(oc, oc.c.organisation_id == m.id)).distinct()
    elif group_by == "authority":
        pairs = (
            select(_accreditation.c.authority_id.label("key"), m.id)
            .select_from(
                matching.join(oa, oa.c.organisation_id == m.id).join(_accreditation, _accreditation.c.id == oa.c.accreditation_id)
            )
            .where(_accreditation.c.authority_id.is_not(None))
            .distinct()
        )
    else:
        column = _DISTRICT_TABLES[group_by][2]
        pairs = select(m[column].label("key"), m.id).where(m[column].is_not(None))
    return matching, pairs.subquery("pairs")


def _labels(group_by: str):
    """(table, key column, nl label column, fr label column) naming the groups."""
    if group_by == "sector":
        return _sector, _sector.c.id, _sector.c.title_nl, _sector.c.title_fr
    if group_by == "category":
        return _category, _category.c.id, _category.c.title_nl, _category.c.title_fr
    if group_by == "authority":
        return _authority, _authority.c.id, _authority.c.name_nl, _authority.c.name_fr
    table, key, _ = _DISTRICT_TABLES[group_by]
    return table, table.c[key], table.c.name_nl, table.c.name_fr


async def stats(conn: AsyncConnection, criteria: Criteria, group_by: str, *, geometry: bool = False) -> dict:
    """Counts of the organisations matching ``criteria`` per group.

    Returns ``total`` (matching organisations), ``grouped`` (those in at least one group) and
    ``rows`` (key, label_nl, label_fr, count[, geometry]): groups with a count, most first; with
    ``geometry`` (districts only) every district, zero counts included, with its GeoJSON text.
    """
    matching, pairs = _pairs(criteria, await resolve(conn, criteria), group_by)
    summary = select(
        select(func.count()).select_from(matching).scalar_subquery().label("total"),
        select(func.count(distinct(pairs.c.id))).scalar_subquery().label("grouped"),
    ).subquery("summary")
    counts = select(pairs.c.key, func.count().label("count")).group_by(pairs.c.key).subquery("counts")
    table, key, label_nl, label_fr = _labels(group_by)
    if geometry:
        geojson = func.ST_AsGeoJSON(func.ST_Transform(table.c.geom, 4326), 6)
        stmt = (
            select(key.label("key"), label_nl.label("label_nl"), label_fr.label("label_fr"),
                   func.coalesce(counts.c.count, 0).label("count"), geojson.label("geometry"),
                   summary.c.total, summary.c.grouped)
            .select_from(table.outerjoin(counts, counts.c.key == key).join(summary, true()))
            .order_by(key)
        )
    else:
        stmt = (
            select(counts.c.key, label_nl.label("label_nl"), label_fr.label("label_fr"), counts.c.count,
                   summary.c.total, summary.c.grouped)
            .select_from(counts.outerjoin(table, key == counts.c.key).join(summary, true()))
            .order_by(counts.c.count.desc(), counts.c.key)
        )
    # one statement (one snapshot) for the groups and the totals; a second only when no group matched
    rows = [dict(r._mapping) for r in await conn.execute(stmt)]
    head = dict(rows[0]) if rows else dict((await conn.execute(select(summary))).one()._mapping)
    for row in rows:
        del row["total"], row["grouped"]
    return {"total": head["total"], "grouped": head["grouped"], "rows": rows}

