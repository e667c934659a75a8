"""Declarative base shared by every table; constraint names are deterministic for Alembic."""

from __future__ import annotations

from geoalchemy2 import Geometry
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Every geometry is stored once, in Belgian Lambert 72 (EPSG:31370): metres, so radius queries are
# plain planar ST_DWithin on a GiST index (no geography casts), and WGS84 bboxes are transformed once
# per query (the envelope, never the column).
SRID = 31370

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def point() -> Geometry:
    return Geometry("POINT", srid=SRID, spatial_index=False)


def multipolygon() -> Geometry:
    return Geometry("MULTIPOLYGON", srid=SRID, spatial_index=False)


def multilinestring() -> Geometry:
    return Geometry("MULTILINESTRING", srid=SRID, spatial_index=False)


# PostGIS' own table is not ours to migrate.
_FOREIGN_TABLES = {"spatial_ref_sys"}


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic filter shared by migrations/env.py and the models-vs-migrations test."""
    from geoalchemy2 import alembic_helpers

    if type_ == "table" and name in _FOREIGN_TABLES:
        return False
    return alembic_helpers.include_object(obj, name, type_, reflected, compare_to)
