"""The search core: every public surface reads organisations through this module.

This first part fetches whole records by id (with their linked categories, sectors,
accreditations, languages, offer types and action zones, and the names of their legal status).
Published records only, unless ``public=False`` (data-team tools).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..models import Organisation

# Every stored column of a record: not the search support (search_text, category_ids, the generated
# name keys) nor the geometry (lon/lat and x/y carry the point). RECORD_SQL and documents.BULK_SQL.
RECORD_COLUMNS = [c for c in Organisation.__table__.columns
                  if c.name not in ("search_text", "category_ids", "geom") and c.computed is None]
_COLUMNS = ", ".join(f"o.{c.name}" for c in RECORD_COLUMNS)

RECORD_SQL = """
SELECT {columns},
  (SELECT json_build_object('id', l.id, 'label_nl', l.label_nl, 'label_fr', l.label_fr)
     FROM legal_status l WHERE l.id = o.legal_status_id) AS legal_status,
  (SELECT coalesce(json_agg(json_build_object('id', c.id, 'title_nl', c.title_nl, 'title_fr', c.title_fr)
                            ORDER BY oc.position), '[]')
     FROM organisation_category oc JOIN category c ON c.id = oc.category_id WHERE oc.organisation_id = o.id) AS categories,
  (SELECT coalesce(json_agg(json_build_object('id', s.id, 'title_nl', s.title_nl, 'title_fr', s.title_fr,
                                              'inferred', t.inferred) ORDER BY s.position), '[]')
     FROM (SELECT ct.sector_id, bool_and(ct.inferred) AS inferred FROM organisation_category oc
             JOIN category_tree ct ON ct.category_id = oc.category_id
            WHERE oc.organisation_id = o.id GROUP BY ct.sector_id) t
     JOIN sector s ON s.id = t.sector_id) AS sectors,
  (SELECT coalesce(json_agg(json_build_object('id', a.id, 'label_nl', a.label_nl, 'label_fr', a.label_fr,
            'authority', (SELECT json_build_object('id', au.id, 'name_nl', au.name_nl, 'name_fr', au.name_fr)
                            FROM authority au WHERE au.id = a.authority_id)) ORDER BY oa.position), '[]')
     FROM organisation_accreditation oa JOIN accreditation a ON a.id = oa.accreditation_id
    WHERE oa.organisation_id = o.id) AS accreditations,
  (SELECT coalesce(json_agg(json_build_object('id', x.id, 'name_nl', x.name_nl, 'name_fr', x.name_fr)
                            ORDER BY ol.position), '[]')
     FROM organisation_language ol JOIN language x ON x.id = ol.language_id WHERE ol.organisation_id = o.id) AS languages,
  (SELECT coalesce(json_agg(json_build_object('id', x.id, 'label_nl', x.label_nl, 'label_fr', x.label_fr)
                            ORDER BY ot.position), '[]')
     FROM organisation_offer_type ot JOIN offer_type x ON x.id = ot.offer_type_id WHERE ot.organisation_id = o.id) AS offer_types,
  (SELECT coalesce(json_agg(json_build_object('id', z.id, 'label_nl', z.label_nl, 'label_fr', z.label_fr, 'kind', z.kind)
                            ORDER BY oz.position), '[]')
     FROM organisation_action_zone oz JOIN action_zone z ON z.id = oz.action_zone_id WHERE oz.organisation_id = o.id) AS action_zones,
  (SELECT json_build_object('nl', c.name_nl, 'fr', c.name_fr) FROM commune c WHERE c.nis_code = o.commune_nis) AS commune_ref
FROM organisation o
WHERE o.id = ANY(:ids) {public}
ORDER BY o.id
""".replace("{columns}", _COLUMNS)


async def fetch_records(conn: AsyncConnection, ids: Sequence[int], public: bool = True) -> list[dict]:
    """Whole records by legacy id, in id order; unpublished and archived ones only when not public."""
    sql = RECORD_SQL.format(public="AND o.publication_state = 'published'" if public else "")
    result = await conn.execute(text(sql), {"ids": list(ids)})
    return [dict(row._mapping) for row in result]
