"""downloads: precomputed bulk files, chunked (raw and pre-gzipped), one current version per name

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 10:00:00

The chunk bytes are stored uncompressed out of line (STORAGE EXTERNAL): gzip chunks do not compress
again, and raw chunks are served as they are, with no pglz decompression per request.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('download',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False, comment='file name under /downloads/'),
    sa.Column('data_version', sa.Text(), nullable=False, comment='fingerprint of the data it was built from'),
    sa.Column('media_type', sa.Text(), nullable=False),
    sa.Column('sha256', sa.Text(), server_default='', nullable=False, comment='hex, of the raw bytes'),
    sa.Column('byte_size', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('gzip_sha256', sa.Text(), nullable=True, comment='hex, of the gzip bytes; null: no gzip variant'),
    sa.Column('gzip_size', sa.BigInteger(), nullable=True),
    sa.Column('chunk_size', sa.Integer(), nullable=False, comment='bytes per chunk (the last may be shorter)'),
    sa.Column('records', sa.Integer(), nullable=True, comment='features, rows or items in the file'),
    sa.Column('modified', sa.DateTime(timezone=True), nullable=True, comment='when these bytes last changed (Last-Modified, dct:modified)'),
    sa.Column('issued', sa.DateTime(timezone=True), nullable=True, comment='first build of this name'),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('current', sa.Boolean(), server_default='false', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_download'))
    )
    op.create_index('ix_download_data_version', 'download', ['data_version'], unique=False)
    op.create_index('uq_download_current_name', 'download', ['name'], unique=True, postgresql_where=sa.text('current'))
    op.create_table('download_chunk',
    sa.Column('download_id', sa.BigInteger(), nullable=False),
    sa.Column('encoding', sa.Text(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.CheckConstraint("encoding IN ('identity', 'gzip')", name=op.f('ck_download_chunk_encoding')),
    sa.ForeignKeyConstraint(['download_id'], ['download.id'], name=op.f('fk_download_chunk_download_id_download'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('download_id', 'encoding', 'seq', name=op.f('pk_download_chunk'))
    )
    op.execute("ALTER TABLE download_chunk ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table('download_chunk')
    op.drop_index('uq_download_current_name', table_name='download', postgresql_where=sa.text('current'))
    op.drop_index('ix_download_data_version', table_name='download')
    op.drop_table('download')
