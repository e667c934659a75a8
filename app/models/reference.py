"""Reference layers of the Brussels-Capital Region (Lambert 72 geometries)."""

from __future__ import annotations

from sqlalchemy import ARRAY, Float, ForeignKey, Index, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, multilinestring, multipolygon, point


class Commune(Base):
    __tablename__ = "commune"
    nis_code: Mapped[str] = mapped_column(Text, primary_key=True)
    name_nl: Mapped[str] = mapped_column(Text)
    name_fr: Mapped[str] = mapped_column(Text)
    area_km2: Mapped[float | None] = mapped_column(Float)
    geom = mapped_column(multipolygon(), nullable=False)
    __table_args__ = (Index("ix_commune_geom", "geom", postgresql_using="gist"),)


class Quartier(Base):
    """A Monitoring des Quartiers / Wijkmonitoring unit (``mdrc``; legacy ``districtCode``)."""

    __tablename__ = "quartier"
    code: Mapped[str] = mapped_column(Text, primary_key=True)
    name_nl: Mapped[str] = mapped_column(Text)
    name_fr: Mapped[str] = mapped_column(Text)
    name_nl_official: Mapped[str | None] = mapped_column(Text)
    name_fr_official: Mapped[str | None] = mapped_column(Text)
    inspire_id: Mapped[str | None] = mapped_column(Text)
    area_km2: Mapped[float | None] = mapped_column(Float)
    geom = mapped_column(multipolygon(), nullable=False)
    __table_args__ = (Index("ix_quartier_geom", "geom", postgresql_using="gist"),)


class StatisticalSector(Base):
    __tablename__ = "statistical_sector"
    code: Mapped[str] = mapped_column(Text, primary_key=True)
    name_nl: Mapped[str] = mapped_column(Text)
    name_fr: Mapped[str] = mapped_column(Text)
    name_nl_official: Mapped[str | None] = mapped_column(Text)
    name_fr_official: Mapped[str | None] = mapped_column(Text)
    commune_nis: Mapped[str] = mapped_column(ForeignKey("commune.nis_code"), index=True)
    quartier_code: Mapped[str | None] = mapped_column(ForeignKey("quartier.code"), index=True)
    geom = mapped_column(multipolygon(), nullable=True)
    __table_args__ = (Index("ix_statistical_sector_geom", "geom", postgresql_using="gist"),)


class Postcode(Base):
    __tablename__ = "postcode"
    postcode: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name_nl: Mapped[str] = mapped_column(Text)
    name_fr: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)  # geographic | special | ...
    commune_nis: Mapped[str | None] = mapped_column(ForeignKey("commune.nis_code"), comment="main commune")
    commune_nis_codes: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default="{}", comment="every commune the postcode covers"
    )


class Street(Base):
    """An official bilingual street name per postcode (BeST), with a representative point."""

    __tablename__ = "street"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    best_id: Mapped[str | None] = mapped_column(Text, index=True)
    postcode: Mapped[int] = mapped_column(Integer, index=True)
    commune_nis: Mapped[str | None] = mapped_column(Text)
    name_nl: Mapped[str | None] = mapped_column(Text)
    name_fr: Mapped[str | None] = mapped_column(Text)
    name_de: Mapped[str | None] = mapped_column(Text)
    geom = mapped_column(point(), nullable=True)
    __table_args__ = (Index("ix_street_geom", "geom", postgresql_using="gist"),)


class StreetLine(Base):
    """A named street line (OpenStreetMap), used by the geocoder for interpolation."""

    __tablename__ = "street_line"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    osm_id: Mapped[str] = mapped_column(Text)
    name_nl: Mapped[str | None] = mapped_column(Text)
    name_fr: Mapped[str | None] = mapped_column(Text)
    commune_nis: Mapped[str | None] = mapped_column(Text, index=True)
    geom = mapped_column(multilinestring(), nullable=False)
    __table_args__ = (Index("ix_street_line_geom", "geom", postgresql_using="gist"),)


class AddressPoint(Base):
    __tablename__ = "address_point"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(Text)  # best | osm2013
    source_id: Mapped[str] = mapped_column(Text)
    street_nl: Mapped[str | None] = mapped_column(Text)
    street_fr: Mapped[str | None] = mapped_column(Text)
    number: Mapped[str | None] = mapped_column(Text)
    box: Mapped[str | None] = mapped_column(Text)
    postcode: Mapped[int | None] = mapped_column(Integer, index=True)
    commune_nis: Mapped[str | None] = mapped_column(Text)
    statistical_sector_code: Mapped[str | None] = mapped_column(Text)
    quartier_code: Mapped[str | None] = mapped_column(Text)
    geom = mapped_column(point(), nullable=False)
    __table_args__ = (
        Index("ix_address_point_geom", "geom", postgresql_using="gist"),
        Index("uq_address_point_source", "source", "source_id", unique=True),
    )
