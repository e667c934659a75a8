"""Precomputed bulk downloads (``app/downloads.py``): one row per file and data version, the bytes in
chunks of ~1 MiB (raw, and pre-gzipped where that helps), so that every API replica serves the same
bytes from PostgreSQL, files of any size stay far below the 1 GB bytea limit, and a response is
streamed chunk by chunk (a Range request reads only the chunks it needs).

Exactly one row per name is ``current``; a build writes its rows next to the current ones and swaps
the flag in one transaction. The previous version is kept until the next build so that downloads in
flight when the swap commits can finish.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base

ENCODINGS = ("identity", "gzip")


class Download(Base):
    """One precomputed file of one data version."""

    __tablename__ = "download"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False, comment="file name under /downloads/")
    data_version: Mapped[str] = mapped_column(Text, nullable=False, comment="fingerprint of the data it was built from")
    media_type: Mapped[str] = mapped_column(Text, nullable=False)
    sha256: Mapped[str] = mapped_column(Text, nullable=False, server_default="", comment="hex, of the raw bytes")
    byte_size: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    gzip_sha256: Mapped[str | None] = mapped_column(Text, comment="hex, of the gzip bytes; null: no gzip variant")
    gzip_size: Mapped[int | None] = mapped_column(BigInteger)
    chunk_size: Mapped[int] = mapped_column(Integer, nullable=False, comment="bytes per chunk (the last may be shorter)")
    records: Mapped[int | None] = mapped_column(Integer, comment="features, rows or items in the file")
    modified: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), comment="when these bytes last changed (Last-Modified, dct:modified)"
    )
    issued: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), comment="first build of this name")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    current: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")

    __table_args__ = (
        Index("uq_download_current_name", "name", unique=True, postgresql_where=text("current")),
        Index("ix_download_data_version", "data_version"),
    )


class DownloadChunk(Base):
    """A slice of a file: bytes [seq × chunk_size, (seq + 1) × chunk_size) of one encoding."""

    __tablename__ = "download_chunk"

    download_id: Mapped[int] = mapped_column(ForeignKey("download.id", ondelete="CASCADE"), primary_key=True)
    encoding: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)

    __table_args__ = (CheckConstraint(f"encoding IN {ENCODINGS}", name="encoding"),)
