"""Precomputed public documents of each organisation (``app/search/documents.py``).

A page of 100 records then costs PostgreSQL 100 index lookups of stored JSON text, and the API
concatenates it: no per-request joins over six link tables, no per-record shaping in Python. A
document is only served while ``built_from`` equals the record's ``updated_at``; a stale or missing
one falls back to shaping the record on the fly, so a write path that forgets to rebuild is slower,
never wrong.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, ForeignKey, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class RecordDocument(Base):
    __tablename__ = "record_document"

    organisation_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("organisation.id", ondelete="CASCADE"), primary_key=True)
    built_from: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, comment="organisation.updated_at these documents were built from")
    v1: Mapped[str] = mapped_column(
        Text, nullable=False, comment="the bilingual /v1 document (JSON); the public base URL is written \\u0001")
    ogc: Mapped[str] = mapped_column(
        Text, nullable=False, comment="the OGC API Features properties (JSON); the public base URL is written \\u0001")
