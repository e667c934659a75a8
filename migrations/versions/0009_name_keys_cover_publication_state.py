"""name sort indexes carry the publication state: offset pages read only the index

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 05:00:00

OGC ``offset`` pages and HSDS ``page=`` pages are sorted by name and skip ``offset`` published
records. The name indexes held (name key, id) only, so PostgreSQL had to visit the heap of every
skipped row to check its publication state; at 100,000 records it preferred a sequential scan and a
sort of every published record: 1.1 s for a page near the end. With ``publication_state`` as an
INCLUDE column the skip is an index-only scan (the visibility map permitting).
"""

from __future__ import annotations

from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for lang in ("fr", "nl"):
        op.drop_index(f'ix_organisation_name_key_{lang}', table_name='organisation')
        op.create_index(f'ix_organisation_name_key_{lang}', 'organisation', [f'name_key_{lang}', 'id'], unique=False,
                        postgresql_include=['publication_state'])


def downgrade() -> None:
    for lang in ("fr", "nl"):
        op.drop_index(f'ix_organisation_name_key_{lang}', table_name='organisation')
        op.create_index(f'ix_organisation_name_key_{lang}', 'organisation', [f'name_key_{lang}', 'id'], unique=False)
