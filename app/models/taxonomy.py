"""The thematic tree and the lookup lists of the social map (legacy ids kept as primary keys).

Ids overlap between entity types in the legacy data (sector 53 is not category 53): each type has its
own table and every foreign key names the table it points to.
"""

from __future__ import annotations

from sqlalchemy import ARRAY, Boolean, ForeignKey, Index, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, multipolygon

TEXTS = ARRAY(Text)


class Sector(Base):
    __tablename__ = "sector"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    title_nl: Mapped[str] = mapped_column(Text)
    title_fr: Mapped[str] = mapped_column(Text)
    description_nl: Mapped[str | None] = mapped_column(Text)
    description_fr: Mapped[str | None] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer, default=0)


class Category(Base):
    __tablename__ = "category"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    title_nl: Mapped[str] = mapped_column(Text)
    title_fr: Mapped[str] = mapped_column(Text)
    description_nl: Mapped[str | None] = mapped_column(Text)
    description_fr: Mapped[str | None] = mapped_column(Text)
    keywords_nl: Mapped[list[str]] = mapped_column(TEXTS, server_default="{}")
    keywords_fr: Mapped[list[str]] = mapped_column(TEXTS, server_default="{}")
    urls_nl: Mapped[list[str]] = mapped_column(TEXTS, server_default="{}")
    urls_fr: Mapped[list[str]] = mapped_column(TEXTS, server_default="{}")
    position: Mapped[int] = mapped_column(Integer, default=0)
    legacy_organisation_count: Mapped[int | None] = mapped_column(Integer)


class CategoryTree(Base):
    """One placement of a category in a sector's tree (sector → rubric → category).

    A category may appear under several sectors; ``parent_category_id`` is the rubric above it in
    that sector (NULL at the top). ``inferred`` marks placements Bruso derived itself because the
    source gave no tree (see ``app/taxonomy_tree.py``).
    """

    __tablename__ = "category_tree"
    sector_id: Mapped[int] = mapped_column(ForeignKey("sector.id", ondelete="CASCADE"), primary_key=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("category.id", ondelete="CASCADE"), primary_key=True)
    parent_category_id: Mapped[int | None] = mapped_column(ForeignKey("category.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    inferred: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("ix_category_tree_category", "category_id"),
        Index("ix_category_tree_parent", "sector_id", "parent_category_id"),
    )


class Authority(Base):
    """An accrediting authority (legacy "agreement power")."""

    __tablename__ = "authority"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name_nl: Mapped[str] = mapped_column(Text)
    name_fr: Mapped[str] = mapped_column(Text)


class Accreditation(Base):
    """An accreditation (legacy "agreement") granted under an authority's legislation."""

    __tablename__ = "accreditation"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    label_nl: Mapped[str] = mapped_column(Text)
    label_fr: Mapped[str] = mapped_column(Text)
    authority_id: Mapped[int | None] = mapped_column(ForeignKey("authority.id"), index=True)
    legislation_url: Mapped[str | None] = mapped_column(Text)


class ActionZone(Base):
    """Where a service acts: the region, a commune, a part of a commune or a quartier."""

    __tablename__ = "action_zone"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    label_nl: Mapped[str] = mapped_column(Text)
    label_fr: Mapped[str] = mapped_column(Text)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("action_zone.id"))
    kind: Mapped[str] = mapped_column(Text, server_default="area")  # region | commune | commune-part | quartier | area
    commune_nis: Mapped[str | None] = mapped_column(ForeignKey("commune.nis_code"))
    quartier_code: Mapped[str | None] = mapped_column(ForeignKey("quartier.code"))
    geom = mapped_column(multipolygon(), nullable=True)

    __table_args__ = (Index("ix_action_zone_geom", "geom", postgresql_using="gist"),)


class LegalStatus(Base):
    __tablename__ = "legal_status"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    label_nl: Mapped[str] = mapped_column(Text)
    label_fr: Mapped[str] = mapped_column(Text)


class OfferType(Base):
    __tablename__ = "offer_type"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    label_nl: Mapped[str] = mapped_column(Text)
    label_fr: Mapped[str] = mapped_column(Text)


class Language(Base):
    """A language in which a service can be offered."""

    __tablename__ = "language"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name_nl: Mapped[str] = mapped_column(Text)
    name_fr: Mapped[str] = mapped_column(Text)
