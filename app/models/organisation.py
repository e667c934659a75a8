"""An organisation is one activity place: the legacy "fiche" (record), with its address inline."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    ARRAY,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, point

TEXTS = ARRAY(Text)
PUBLICATION_STATES = ("published", "unpublished", "archived")
LANG_STATUSES = ("FR", "NL", "FR-NL")
GEOCODE_STATUSES = ("source", "ok", "pending", "failed")


def _texts(comment: str | None = None):
    return mapped_column(TEXTS, nullable=False, server_default="{}", comment=comment)


class Organisation(Base):
    __tablename__ = "organisation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, comment="legacy id, public")
    uuid: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False, unique=True)
    publication_state: Mapped[str] = mapped_column(Text, nullable=False, server_default="published")

    # names
    name_official_nl: Mapped[str | None] = mapped_column(Text)
    name_official_fr: Mapped[str | None] = mapped_column(Text)
    name_alternative_nl: Mapped[list[str]] = _texts()
    name_alternative_fr: Mapped[list[str]] = _texts()
    name_former_nl: Mapped[list[str]] = _texts()
    name_former_fr: Mapped[list[str]] = _texts()
    name_service_nl: Mapped[list[str]] = _texts()
    name_service_fr: Mapped[list[str]] = _texts()

    # descriptive texts
    description_nl: Mapped[str | None] = mapped_column(Text)
    description_fr: Mapped[str | None] = mapped_column(Text)
    activities_nl: Mapped[str | None] = mapped_column(Text)
    activities_fr: Mapped[str | None] = mapped_column(Text)
    public_nl: Mapped[str | None] = mapped_column(Text, comment="target public")
    public_fr: Mapped[str | None] = mapped_column(Text, comment="target public")
    permanency_nl: Mapped[str | None] = mapped_column(Text, comment="opening hours, free text")
    permanency_fr: Mapped[str | None] = mapped_column(Text, comment="opening hours, free text")
    remark_nl: Mapped[str | None] = mapped_column(Text)
    remark_fr: Mapped[str | None] = mapped_column(Text)
    access_nl: Mapped[list[str]] = _texts("access modes")
    access_fr: Mapped[list[str]] = _texts("access modes")
    publication_nl: Mapped[list[str]] = _texts()
    publication_fr: Mapped[list[str]] = _texts()
    other_accreditation_nl: Mapped[list[str]] = _texts("other accreditations, free text")
    other_accreditation_fr: Mapped[list[str]] = _texts("other accreditations, free text")
    subsidy_nl: Mapped[list[str]] = _texts("subsidies, free text")
    subsidy_fr: Mapped[list[str]] = _texts("subsidies, free text")

    # contact, per language
    phone_nl: Mapped[list[str]] = _texts()
    phone_fr: Mapped[list[str]] = _texts()
    fax_nl: Mapped[list[str]] = _texts()
    fax_fr: Mapped[list[str]] = _texts()
    email_nl: Mapped[list[str]] = _texts()
    email_fr: Mapped[list[str]] = _texts()
    website_official_nl: Mapped[list[str]] = _texts()
    website_official_fr: Mapped[list[str]] = _texts()
    website_unofficial_nl: Mapped[list[str]] = _texts()
    website_unofficial_fr: Mapped[list[str]] = _texts()
    website_info_nl: Mapped[list[str]] = _texts()
    website_info_fr: Mapped[list[str]] = _texts()

    # identity and status
    enterprise_numbers: Mapped[list[str]] = _texts("BCE/KBO numbers as 0123.456.789 (mod-97 checked)")
    legal_status_id: Mapped[int | None] = mapped_column(ForeignKey("legal_status.id"), index=True)
    lang_status: Mapped[str | None] = mapped_column(Text)
    is_interpreting: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    legacy_type: Mapped[str | None] = mapped_column(Text, comment="legacy 'type' field, kept verbatim")
    start_date: Mapped[dt.date | None] = mapped_column(Date)
    last_update: Mapped[dt.date | None] = mapped_column(Date)

    # address (one per activity place)
    address_id: Mapped[int | None] = mapped_column(Integer, comment="legacy address id")
    street_nl: Mapped[str | None] = mapped_column(Text)
    street_fr: Mapped[str | None] = mapped_column(Text)
    number: Mapped[str | None] = mapped_column(Text)
    number_building: Mapped[str | None] = mapped_column(Text)
    postal_box: Mapped[str | None] = mapped_column(Text)
    postcode: Mapped[int | None] = mapped_column(Integer)
    commune_nis: Mapped[str | None] = mapped_column(Text)
    commune_nl: Mapped[str | None] = mapped_column(Text)
    commune_fr: Mapped[str | None] = mapped_column(Text)
    quartier_code: Mapped[str | None] = mapped_column(Text)
    quartier_nl: Mapped[str | None] = mapped_column(Text)
    quartier_fr: Mapped[str | None] = mapped_column(Text)
    statistical_sector_code: Mapped[str | None] = mapped_column(Text)
    statistical_sector_nl: Mapped[str | None] = mapped_column(Text)
    statistical_sector_fr: Mapped[str | None] = mapped_column(Text)
    x_31370: Mapped[float | None] = mapped_column(Float, comment="Lambert 72 x as given by the source")
    y_31370: Mapped[float | None] = mapped_column(Float, comment="Lambert 72 y as given by the source")
    lon: Mapped[float | None] = mapped_column(Float, comment="WGS84 longitude as given by the source")
    lat: Mapped[float | None] = mapped_column(Float, comment="WGS84 latitude as given by the source")
    address_remark_nl: Mapped[str | None] = mapped_column(Text)
    address_remark_fr: Mapped[str | None] = mapped_column(Text)
    geom = mapped_column(point(), nullable=True)

    # importer: how the point was obtained, how much the record can be trusted, normalised phones
    geocode_status: Mapped[str] = mapped_column(Text, nullable=False, server_default="source",
                                                comment="source | ok | pending | failed")
    quality_score: Mapped[int | None] = mapped_column(Integer, comment="0-100, from the importer's checks")
    quality_flags: Mapped[list[str]] = _texts("importer findings, e.g. postcode-commune-mismatch")
    phones_e164: Mapped[list[str]] = _texts("NL+FR phone numbers normalised to E.164")

    # search support: accent- and case-folded text of names, activities, categories and keywords
    search_text: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    # the record's category ids, sorted: written with search_text from organisation_category, so
    # that a category (or sector) filter is an index condition, with the point in one GiST index,
    # instead of a probe of the link table per candidate row (migration 0008)
    category_ids: Mapped[list[int]] = mapped_column(ARRAY(Integer), nullable=False, server_default="{}")
    # name sort keys (folded, the other language when one is missing), stored so that sorting a
    # page by name reads them instead of folding every matching row (see app/search/query.py)
    name_key_fr: Mapped[str] = mapped_column(
        Text, Computed("bruso_normalise(COALESCE(name_official_fr, name_official_nl, ''))", persisted=True))
    name_key_nl: Mapped[str] = mapped_column(
        Text, Computed("bruso_normalise(COALESCE(name_official_nl, name_official_fr, ''))", persisted=True))

    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())

    __table_args__ = (
        CheckConstraint(f"publication_state IN {PUBLICATION_STATES}", name="publication_state"),
        CheckConstraint(f"lang_status IS NULL OR lang_status IN {LANG_STATUSES}", name="lang_status"),
        CheckConstraint(f"geocode_status IN {GEOCODE_STATUSES}", name="geocode_status"),
        Index("ix_organisation_geom", "geom", postgresql_using="gist"),
        Index("ix_organisation_commune_nis", "commune_nis"),
        Index("ix_organisation_quartier_code", "quartier_code"),
        Index("ix_organisation_statistical_sector_code", "statistical_sector_code"),
        Index("ix_organisation_postcode", "postcode"),
        Index("ix_organisation_updated_at", "updated_at", "id"),
        Index("ix_organisation_lang_status", "lang_status"),
        Index("ix_organisation_geocode_pending", "id", postgresql_where=text("geocode_status = 'pending'")),
        # paging by name walks these (see app/search/query.py name_key): keyset pages, and offset
        # pages (OGC offset, HSDS page) read only the index, publication state included (0009)
        Index("ix_organisation_name_key_fr", "name_key_fr", "id", postgresql_include=["publication_state"]),
        Index("ix_organisation_name_key_nl", "name_key_nl", "id", postgresql_include=["publication_state"]),
        Index("ix_organisation_enterprise_numbers", "enterprise_numbers", postgresql_using="gin"),
        # category filters (intarray operator classes, migration 0008): alone, and with the point,
        # so that the nearest published records of a category are one KNN walk of one index
        Index("ix_organisation_category_ids", "category_ids", postgresql_using="gin",
              postgresql_ops={"category_ids": "gin__int_ops"}),
        Index("ix_organisation_geom_category_ids", "geom", "category_ids", postgresql_using="gist",
              postgresql_ops={"category_ids": "gist__int_ops"}, postgresql_where=text("publication_state = 'published'")),
        Index(
            "ix_organisation_search_text_trgm",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ),
    )


def _link(name: str, target: str) -> Table:
    """A many-to-many link from organisation to a lookup table, keeping the source's order."""
    return Table(
        f"organisation_{name}",
        Base.metadata,
        Column("organisation_id", ForeignKey("organisation.id", ondelete="CASCADE"), primary_key=True),
        Column(f"{name}_id", ForeignKey(f"{target}.id"), primary_key=True),
        Column("position", Integer, nullable=False, server_default="0"),
        Index(f"ix_organisation_{name}_reverse", f"{name}_id", "organisation_id"),
    )


LINKS: dict[str, Table] = {
    name: _link(name, name) for name in ("category", "accreditation", "action_zone", "language", "offer_type")
}
