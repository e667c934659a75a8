"""suggest: precomputed folded names of communes, quartiers, categories and streets

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 21:15:00
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Folding as app/search/reference.py does for organisations: bruso_normalise, punctuation → spaces.
PUNCTUATION = "-'’‘`´.,;:!?()[]{}/\\\"«»&+*_|"
FOLD = "translate(bruso_normalise(coalesce({v}, '')), $p${p}$p$, $p${b}$p$)"


def _fold(value: str) -> str:
    return FOLD.format(v=value, p=PUNCTUATION, b=" " * len(PUNCTUATION))


ENTRIES = f"""
CREATE MATERIALIZED VIEW suggest_entry AS
SELECT 'commune'::text AS type, nis_code AS id, name_nl AS label_nl, name_fr AS label_fr,
       {_fold('name_nl')} AS w_nl, {_fold('name_fr')} AS w_fr, ''::text AS w_extra, 1 AS priority
  FROM commune
UNION ALL
SELECT 'quartier', code, name_nl, name_fr, {_fold('name_nl')}, {_fold('name_fr')},
       {_fold("concat_ws(' ', name_nl_official, name_fr_official)")}, 2
  FROM quartier
UNION ALL
SELECT 'category', id::text, title_nl, title_fr, {_fold('title_nl')}, {_fold('title_fr')},
       {_fold("concat_ws(' ', array_to_string(keywords_nl, ' '), array_to_string(keywords_fr, ' '))")}, 3
  FROM category
UNION ALL
SELECT * FROM (
  SELECT DISTINCT ON (name_nl, name_fr, postcode)
         'street', id::text, name_nl || ' (' || postcode || ')', name_fr || ' (' || postcode || ')',
         {_fold('name_nl')}, {_fold('name_fr')}, '', 4
    FROM street
   ORDER BY name_nl, name_fr, postcode, id) s
"""


def upgrade() -> None:
    op.execute(ENTRIES)
    op.execute("CREATE UNIQUE INDEX ix_suggest_entry ON suggest_entry (type, id)")
    for column in ("w_nl", "w_fr", "w_extra"):
        op.execute(f"CREATE INDEX ix_suggest_entry_{column} ON suggest_entry USING gin ({column} gin_trgm_ops)")


def downgrade() -> None:
    op.execute("DROP MATERIALIZED VIEW suggest_entry")
