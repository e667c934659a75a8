"""operations: import runs, quarantine, geocode cache, change feed, tombstones, api keys, audit

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 21:09:35

The change feed is written by statement-level triggers on organisation (transition tables, so a bulk
import costs one INSERT ... SELECT per statement). Each trigger first takes one transaction-scoped
advisory lock, so writers to organisation commit one after the other from their first change on:
change_event.seq then follows commit order and a reader paging by seq never skips an event that
commits later with a smaller number.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


CHANGE_FEED_LOCK = 4_205_171  # any constant: the one advisory lock all writers to organisation share

CHANGE_FEED_FUNCTION = f"""
CREATE FUNCTION bruso_change_feed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock({CHANGE_FEED_LOCK});
  IF TG_OP = 'INSERT' THEN
    INSERT INTO change_event (organisation_id, uuid, kind)
    SELECT id, uuid, 'created' FROM new_rows WHERE publication_state = 'published' ORDER BY id;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO change_event (organisation_id, uuid, kind)
    SELECT n.id, n.uuid,
           CASE WHEN o.publication_state <> 'published' THEN 'created'
                WHEN n.publication_state <> 'published' THEN 'deleted'
                ELSE 'updated' END
      FROM new_rows n JOIN old_rows o ON o.id = n.id
     WHERE (o.publication_state = 'published' OR n.publication_state = 'published')
       AND (n.updated_at IS DISTINCT FROM o.updated_at OR n.publication_state IS DISTINCT FROM o.publication_state)
     ORDER BY n.id;
  ELSE
    INSERT INTO change_event (organisation_id, uuid, kind)
    SELECT id, uuid, 'deleted' FROM old_rows WHERE publication_state = 'published' ORDER BY id;
  END IF;
  RETURN NULL;
END $$
"""

TRIGGERS = {
    "INSERT": "NEW TABLE AS new_rows",
    "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "DELETE": "OLD TABLE AS old_rows",
}


def upgrade() -> None:
    op.create_table('api_key',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('prefix', sa.Text(), nullable=False),
    sa.Column('secret_sha256', sa.Text(), nullable=False),
    sa.Column('scopes', sa.ARRAY(sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("scopes <@ ARRAY['import', 'edit', 'admin']::text[]", name=op.f('ck_api_key_scopes')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_key')),
    sa.UniqueConstraint('prefix', name=op.f('uq_api_key_prefix')),
    sa.UniqueConstraint('secret_sha256', name=op.f('uq_api_key_secret_sha256'))
    )
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('actor', sa.Text(), nullable=False),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('target', sa.Text(), nullable=True),
    sa.Column('before', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('after', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('request_id', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    op.create_index('ix_audit_log_at', 'audit_log', ['at'], unique=False)
    op.create_table('change_event',
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind IN ('created', 'updated', 'deleted')", name=op.f('ck_change_event_kind')),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_change_event'))
    )
    op.create_index('ix_change_event_at', 'change_event', ['at', 'seq'], unique=False)
    op.create_index('ix_change_event_organisation_id', 'change_event', ['organisation_id', 'seq'], unique=False)
    op.create_table('geocode_cache',
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('request', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('response', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_geocode_cache'))
    )
    op.create_table('import_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False, comment='legacy | table | harvest | geocode | admin'),
    sa.Column('status', sa.Text(), server_default='running', nullable=False),
    sa.Column('actor', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('read', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created', sa.Integer(), server_default='0', nullable=False),
    sa.Column('updated', sa.Integer(), server_default='0', nullable=False),
    sa.Column('unchanged', sa.Integer(), server_default='0', nullable=False),
    sa.Column('deleted', sa.Integer(), server_default='0', nullable=False),
    sa.Column('rejected', sa.Integer(), server_default='0', nullable=False),
    sa.Column('pending', sa.Integer(), server_default='0', nullable=False),
    sa.Column('geocoded', sa.Integer(), server_default='0', nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('running', 'succeeded', 'failed', 'dry-run')", name=op.f('ck_import_run_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_import_run'))
    )
    op.create_table('organisation_tombstone',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('uuid', sa.Uuid(), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('merged_into', sa.Integer(), nullable=True, comment="successor's id when merged"),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organisation_tombstone'))
    )
    op.create_table('quarantine',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('record_id', sa.Text(), nullable=True, comment="the record's id as the source gave it"),
    sa.Column('location', sa.Text(), nullable=False, comment='file and line/record number'),
    sa.Column('record', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('problems', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['import_run.id'], name=op.f('fk_quarantine_run_id_import_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quarantine'))
    )
    op.create_index('ix_quarantine_run_id', 'quarantine', ['run_id'], unique=False)
    op.add_column('organisation', sa.Column('geocode_status', sa.Text(), server_default='source', nullable=False, comment='source | ok | pending | failed'))
    op.add_column('organisation', sa.Column('quality_score', sa.Integer(), nullable=True, comment="0-100, from the importer's checks"))
    op.add_column('organisation', sa.Column('quality_flags', sa.ARRAY(sa.Text()), server_default='{}', nullable=False, comment='importer findings, e.g. postcode-commune-mismatch'))
    op.add_column('organisation', sa.Column('phones_e164', sa.ARRAY(sa.Text()), server_default='{}', nullable=False, comment='NL+FR phone numbers normalised to E.164'))
    op.create_index('ix_organisation_geocode_pending', 'organisation', ['id'], unique=False, postgresql_where=sa.text("geocode_status = 'pending'"))
    op.create_check_constraint('geocode_status', 'organisation', "geocode_status IN ('source', 'ok', 'pending', 'failed')")
    # the feed starts with what is already published, so a client can sync from the beginning
    op.execute(
        "INSERT INTO change_event (organisation_id, uuid, kind, at) SELECT id, uuid, 'created', updated_at "
        "FROM organisation WHERE publication_state = 'published' ORDER BY updated_at, id"
    )
    op.execute(CHANGE_FEED_FUNCTION)
    for event, tables in TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER organisation_change_feed_{event.lower()} AFTER {event} ON organisation "
            f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION bruso_change_feed()"
        )


def downgrade() -> None:
    for event in TRIGGERS:
        op.execute(f"DROP TRIGGER organisation_change_feed_{event.lower()} ON organisation")
    op.execute("DROP FUNCTION bruso_change_feed()")
    op.drop_constraint('geocode_status', 'organisation', type_='check')
    op.drop_index('ix_organisation_geocode_pending', table_name='organisation', postgresql_where=sa.text("geocode_status = 'pending'"))
    op.drop_column('organisation', 'phones_e164')
    op.drop_column('organisation', 'quality_flags')
    op.drop_column('organisation', 'quality_score')
    op.drop_column('organisation', 'geocode_status')
    op.drop_index('ix_quarantine_run_id', table_name='quarantine')
    op.drop_table('quarantine')
    op.drop_table('organisation_tombstone')
    op.drop_table('import_run')
    op.drop_table('geocode_cache')
    op.drop_index('ix_change_event_organisation_id', table_name='change_event')
    op.drop_index('ix_change_event_at', table_name='change_event')
    op.drop_table('change_event')
    op.drop_index('ix_audit_log_at', table_name='audit_log')
    op.drop_table('audit_log')
    op.drop_table('api_key')
