"""documents: stored name sort keys and precomputed public documents per organisation

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 12:00:00

name_key_fr/nl replace the expression indexes of 0002: a page sorted by name reads the stored key
instead of folding (unaccent) every matching row. record_document holds each record's bilingual /v1
document and OGC properties as JSON text; app/search/documents.py builds them after every write, and
`bruso db upgrade` builds those of records stored before (until then they are shaped per request).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_organisation_name_key_fr', table_name='organisation')
    op.drop_index('ix_organisation_name_key_nl', table_name='organisation')
    op.add_column('organisation', sa.Column(
        'name_key_fr', sa.Text(),
        sa.Computed("bruso_normalise(COALESCE(name_official_fr, name_official_nl, ''))", persisted=True), nullable=True))
    op.add_column('organisation', sa.Column(
        'name_key_nl', sa.Text(),
        sa.Computed("bruso_normalise(COALESCE(name_official_nl, name_official_fr, ''))", persisted=True), nullable=True))
    op.create_index('ix_organisation_name_key_fr', 'organisation', ['name_key_fr', 'id'], unique=False)
    op.create_index('ix_organisation_name_key_nl', 'organisation', ['name_key_nl', 'id'], unique=False)
    op.create_table('record_document',
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('built_from', sa.DateTime(timezone=True), nullable=False, comment='organisation.updated_at these documents were built from'),
    sa.Column('v1', sa.Text(), nullable=False, comment='the bilingual /v1 document (JSON); the public base URL is written \\u0001'),
    sa.Column('ogc', sa.Text(), nullable=False, comment='the OGC API Features properties (JSON); the public base URL is written \\u0001'),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisation.id'], name=op.f('fk_record_document_organisation_id_organisation'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('organisation_id', name=op.f('pk_record_document'))
    )


def downgrade() -> None:
    op.drop_table('record_document')
    op.drop_index('ix_organisation_name_key_nl', table_name='organisation')
    op.drop_index('ix_organisation_name_key_fr', table_name='organisation')
    op.drop_column('organisation', 'name_key_nl')
    op.drop_column('organisation', 'name_key_fr')
    op.create_index('ix_organisation_name_key_fr', 'organisation', [sa.literal_column("bruso_normalise(COALESCE(name_official_fr, name_official_nl, ''))"), 'id'], unique=False)
    op.create_index('ix_organisation_name_key_nl', 'organisation', [sa.literal_column("bruso_normalise(COALESCE(name_official_nl, name_official_fr, ''))"), 'id'], unique=False)
