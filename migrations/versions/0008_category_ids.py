"""category ids on the organisation row, indexed with the point

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 03:00:00

A category filter was an EXISTS probe of organisation_category for every candidate row: a 1 km
circle holds about 34,000 records at 1,000,000, and keeping the 1,500 of one category meant reading
34,000 heap rows (370 ms). ``category_ids`` (sorted, written with ``search_text`` by every writer:
app/loaders/legacy.py) goes into a GiST index beside the point (intarray's ``gist__int_ops``, published
records only): the nearest records of a category are then a KNN walk of that one index that reads
only the rows it returns (about 2 ms for a page of 50), and counting them reads only the matches
(about 11 ms). A GIN index serves category filters without a place. With intarray installed,
``int[] && int[]`` is intarray's operator, which the core GIN ``array_ops`` does not serve: hence
``gin__int_ops``.

The fill changes neither ``updated_at`` nor ``publication_state``: the change-feed trigger would
record nothing, so it is switched off while the fill runs instead of joining two transition tables
of every record.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('organisation', sa.Column('category_ids', postgresql.ARRAY(sa.Integer()), server_default='{}', nullable=False))
    op.execute("ALTER TABLE organisation DISABLE TRIGGER organisation_change_feed_update")
    op.execute("""
        UPDATE organisation o SET category_ids = l.ids
          FROM (SELECT organisation_id, array_agg(category_id ORDER BY category_id) AS ids
                  FROM organisation_category GROUP BY organisation_id) l
         WHERE l.organisation_id = o.id""")
    op.execute("ALTER TABLE organisation ENABLE TRIGGER organisation_change_feed_update")
    op.execute("CREATE EXTENSION IF NOT EXISTS intarray")
    op.create_index('ix_organisation_category_ids', 'organisation', ['category_ids'], unique=False,
                    postgresql_using='gin', postgresql_ops={'category_ids': 'gin__int_ops'})
    op.create_index('ix_organisation_geom_category_ids', 'organisation', ['geom', 'category_ids'], unique=False,
                    postgresql_using='gist', postgresql_ops={'category_ids': 'gist__int_ops'},
                    postgresql_where=sa.text("publication_state = 'published'"))


def downgrade() -> None:
    op.drop_index('ix_organisation_geom_category_ids', table_name='organisation', postgresql_using='gist',
                  postgresql_where=sa.text("publication_state = 'published'"))
    op.drop_index('ix_organisation_category_ids', table_name='organisation', postgresql_using='gin')
    op.drop_column('organisation', 'category_ids')
    op.execute("DROP EXTENSION IF EXISTS intarray")
