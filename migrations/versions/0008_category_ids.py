"""category ids on the organisation row, GIN-indexed

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 03:00:00

A category filter was an EXISTS probe of organisation_category for every candidate row: a 1 km
circle holds about 34,000 records at 1,000,000, and keeping the 1,500 of one category meant reading
34,000 heap rows (370 ms). ``category_ids`` (sorted, written with ``search_text`` by every writer:
app/loaders/legacy.py) lets the planner AND a GIN bitmap of the category with the GiST bitmap of
the circle and read only the rows in both (about 15 ms).

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
    op.create_index('ix_organisation_category_ids', 'organisation', ['category_ids'], unique=False, postgresql_using='gin')


def downgrade() -> None:
    op.drop_index('ix_organisation_category_ids', table_name='organisation', postgresql_using='gin')
    op.drop_column('organisation', 'category_ids')
