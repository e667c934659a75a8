"""change feed: plan the UPDATE join of the change-feed trigger at every call

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 00:10:00

The statement-level trigger of 0004 joins its two transition tables (``new_rows JOIN old_rows``) for
UPDATE. PL/pgSQL prepares that statement once per session and keeps the plan: the first UPDATE of a
session, often the empty one that ``INSERT ... ON CONFLICT DO UPDATE`` fires when nothing
conflicted, fixed a nested loop sized for zero rows, and the next UPDATE of 100,000 rows in that
session (the search-text refresh of a bulk load) then compared 100,000 × 100,000 pairs (hours).
The UPDATE branch now runs through ``EXECUTE``, so it is planned with the transition tables' real
sizes every time (a hash or merge join). Same events, same order, same lock.
"""

from __future__ import annotations

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

CHANGE_FEED_LOCK = 4_205_171  # as in 0004: the one advisory lock all writers to organisation share

UPDATE_EVENTS = """
    INSERT INTO change_event (organisation_id, uuid, kind)
    SELECT n.id, n.uuid,
           CASE WHEN o.publication_state <> 'published' THEN 'created'
                WHEN n.publication_state <> 'published' THEN 'deleted'
                ELSE 'updated' END
      FROM new_rows n JOIN old_rows o ON o.id = n.id
     WHERE (o.publication_state = 'published' OR n.publication_state = 'published')
       AND (n.updated_at IS DISTINCT FROM o.updated_at OR n.publication_state IS DISTINCT FROM o.publication_state)
     ORDER BY n.id"""


def _function(update_branch: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION bruso_change_feed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock({CHANGE_FEED_LOCK});
  IF TG_OP = 'INSERT' THEN
    INSERT INTO change_event (organisation_id, uuid, kind)
    SELECT id, uuid, 'created' FROM new_rows WHERE publication_state = 'published' ORDER BY id;
  ELSIF TG_OP = 'UPDATE' THEN
{update_branch};
  ELSE
    INSERT INTO change_event (organisation_id, uuid, kind)
    SELECT id, uuid, 'deleted' FROM old_rows WHERE publication_state = 'published' ORDER BY id;
  END IF;
  RETURN NULL;
END $$
"""


def upgrade() -> None:
    # planned per call: the transition tables' sizes are known at EXECUTE time
    op.execute(_function(f"    EXECUTE $q${UPDATE_EVENTS}$q$"))


def downgrade() -> None:
    op.execute(_function(UPDATE_EVENTS))
