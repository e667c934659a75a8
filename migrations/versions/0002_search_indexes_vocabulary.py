"""search: name-key and lang_status indexes, search vocabulary

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 19:58:33.279831
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


# The words of every published record's search text: typo-tolerant search expands a query word to
# the close words of this vocabulary (trigram similarity), then matches them with indexed LIKEs.
VOCABULARY = """
CREATE MATERIALIZED VIEW search_word AS
SELECT DISTINCT word
FROM organisation o, regexp_split_to_table(o.search_text, '[^[:alnum:]]+') AS word
WHERE length(word) >= 3 AND o.publication_state = 'published'
"""


def upgrade() -> None:
    op.execute(VOCABULARY)
    op.execute("CREATE UNIQUE INDEX ix_search_word ON search_word (word)")
    op.execute("CREATE INDEX ix_search_word_trgm ON search_word USING gin (word gin_trgm_ops)")
    op.create_index('ix_organisation_lang_status', 'organisation', ['lang_status'], unique=False)
    op.create_index('ix_organisation_name_key_fr', 'organisation', [sa.literal_column("bruso_normalise(COALESCE(name_official_fr, name_official_nl, ''))"), 'id'], unique=False)
    op.create_index('ix_organisation_name_key_nl', 'organisation', [sa.literal_column("bruso_normalise(COALESCE(name_official_nl, name_official_fr, ''))"), 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_organisation_name_key_nl', table_name='organisation')
    op.drop_index('ix_organisation_name_key_fr', table_name='organisation')
    op.drop_index('ix_organisation_lang_status', table_name='organisation')
    op.execute("DROP MATERIALIZED VIEW search_word")
