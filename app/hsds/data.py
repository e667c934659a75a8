"""The few reads the HSDS surface needs besides the search core (``app.search``): the vocabulary
behind its taxonomies, organisation UUID → legacy id, and the centroid of a postcode. User input
only ever reaches SQL as bound parameters.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..geo.crs import to_wgs84

# One row per term: kind, code, NL/FR names and descriptions, the parent term (kind + code) and the
# display order. A category sits under one parent in HSDS (parent_id is single): the rubric above it
# in the first sector (by sector order) whose tree places it.
VOCABULARY_SQL = """
SELECT 'sector' AS kind, s.id::text AS code, s.title_nl AS name_nl, s.title_fr AS name_fr,
       s.description_nl, s.description_fr, NULL::text AS parent_kind, NULL::text AS parent_code,
       s.position AS position, NULL::text AS url
  FROM sector s
UNION ALL
SELECT 'category', c.id::text, c.title_nl, c.title_fr, c.description_nl, c.description_fr,
       CASE WHEN p.parent IS NOT NULL THEN 'category' END, p.parent::text, c.position, NULL
  FROM category c
  LEFT JOIN (
    SELECT DISTINCT ON (t.category_id) t.category_id, t.parent_category_id AS parent
      FROM category_tree t JOIN sector s ON s.id = t.sector_id
     ORDER BY t.category_id, s.position, s.id
  ) p ON p.category_id = c.id
UNION ALL
SELECT 'authority', a.id::text, a.name_nl, a.name_fr, NULL, NULL, NULL, NULL, a.id, NULL FROM authority a
UNION ALL
SELECT 'accreditation', a.id::text, a.label_nl, a.label_fr, NULL, NULL,
       CASE WHEN a.authority_id IS NOT NULL THEN 'authority' END, a.authority_id::text, a.id, a.legislation_url
  FROM accreditation a
UNION ALL
SELECT 'offer_type', x.id::text, x.label_nl, x.label_fr, NULL, NULL, NULL, NULL, x.id, NULL FROM offer_type x
UNION ALL
SELECT 'commune', c.nis_code, c.name_nl, c.name_fr, NULL, NULL, NULL, NULL, 0, NULL FROM commune c
UNION ALL
SELECT 'quartier', q.code, q.name_nl, q.name_fr, NULL, NULL, NULL, NULL, 0, NULL FROM quartier q
UNION ALL
SELECT 'statistical_sector', s.code, s.name_nl, s.name_fr, NULL, NULL, NULL, NULL, 0, NULL FROM statistical_sector s
"""


async def vocabulary_rows(conn: AsyncConnection) -> list[dict]:
    result = await conn.execute(text(VOCABULARY_SQL))
    return [dict(row._mapping) for row in result]


async def organisation_ids(conn: AsyncConnection, uuids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Published organisations by UUID → legacy id (unknown and unpublished ones are absent)."""
    if not uuids:
        return {}
    result = await conn.execute(
        text("SELECT uuid, id FROM organisation WHERE uuid = ANY(:uuids) AND publication_state = 'published'"),
        {"uuids": list(uuids)},
    )
    return {row.uuid: row.id for row in result}


# The centroid of a postcode: of its official address points when the reference has some, else of
# the commune polygons it covers (Lambert 72 metres).
POSTCODE_CENTROID_SQL = """
SELECT ST_X(c) AS x, ST_Y(c) AS y FROM (
  SELECT coalesce(
    (SELECT ST_Centroid(ST_Collect(a.geom)) FROM address_point a WHERE a.postcode = p.postcode),
    (SELECT ST_Centroid(ST_Union(m.geom)) FROM commune m
      WHERE m.nis_code = ANY(p.commune_nis_codes) OR m.nis_code = p.commune_nis)
  ) AS c
  FROM postcode p WHERE p.postcode = :postcode
) t WHERE c IS NOT NULL
"""


async def postcode_centroid(conn: AsyncConnection, postcode: int) -> tuple[float, float] | None:
    """(lat, lon) in WGS84 of a postcode's centroid, or None for an unknown postcode."""
    row = (await conn.execute(text(POSTCODE_CENTROID_SQL), {"postcode": postcode})).first()
    if row is None:
        return None
    lon, lat = to_wgs84(row.x, row.y)
    return lat, lon
