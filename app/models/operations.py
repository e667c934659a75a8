"""Operations: import runs, quarantine, geocoding cache, the change feed, tombstones, API keys, audit."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Text,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base

RUN_STATUSES = ("running", "succeeded", "failed", "dry-run")
CHANGE_KINDS = ("created", "updated", "deleted")
SCOPES = ("import", "edit", "admin")


class ImportRun(Base):
    """One run of the importer (or loader): what it read, what it did, how long it took."""

    __tablename__ = "import_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False, comment="legacy | table | harvest | geocode | admin")
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="running")
    actor: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    duration_s: Mapped[float | None] = mapped_column(Float)
    read: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    created: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    updated: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    unchanged: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    deleted: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    rejected: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    pending: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    geocoded: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (CheckConstraint(f"status IN {RUN_STATUSES}", name="status"),)


class Quarantine(Base):
    """A rejected record, kept whole with every reason it was rejected."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("import_run.id", ondelete="CASCADE"), nullable=False)
    record_id: Mapped[str | None] = mapped_column(Text, comment="the record's id as the source gave it")
    location: Mapped[str] = mapped_column(Text, nullable=False, comment="file and line/record number")
    record: Mapped[dict | None] = mapped_column(JSONB)
    problems: Mapped[list] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())

    __table_args__ = (Index("ix_quarantine_run_id", "run_id"),)


class GeocodeCache(Base):
    """Every URBIS answer, keyed by the normalised request: an address is never geocoded twice."""

    __tablename__ = "geocode_cache"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    request: Mapped[dict] = mapped_column(JSONB, nullable=False)
    response: Mapped[dict] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class ChangeEvent(Base):
    """The change feed: written by triggers on organisation (migration 0004), in commit order."""

    __tablename__ = "change_event"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(Integer, nullable=False)
    uuid: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())

    __table_args__ = (
        CheckConstraint(f"kind IN {CHANGE_KINDS}", name="kind"),
        Index("ix_change_event_at", "at", "seq"),
        Index("ix_change_event_organisation_id", "organisation_id", "seq"),
    )


class Tombstone(Base):
    """A record that no longer exists: deleted, or merged into a successor."""

    __tablename__ = "organisation_tombstone"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    uuid: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    deleted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    merged_into: Mapped[int | None] = mapped_column(Integer, comment="successor's id when merged")
    reason: Mapped[str | None] = mapped_column(Text)


class ApiKey(Base):
    """A write-side key: only its SHA-256 is stored; the prefix identifies it in logs and audit."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    prefix: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    secret_sha256: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (CheckConstraint(f"scopes <@ ARRAY{list(SCOPES)}::text[]", name="scopes"),)


class AuditEntry(Base):
    """Every write: who, when, what, before and after."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    action: Mapped[str] = mapped_column(Text, nullable=False)
    target: Mapped[str | None] = mapped_column(Text)
    before: Mapped[dict | None] = mapped_column(JSONB)
    after: Mapped[dict | None] = mapped_column(JSONB)
    request_id: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_audit_log_at", "at"),)
