"""Alembic: the migration chain works both ways and matches the models."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.models import Base, include_object
from tests.conftest import alembic_config


def test_upgrade_downgrade_upgrade_on_empty_database(empty_db):
    cfg = alembic_config(empty_db)
    command.upgrade(cfg, "head")
    engine = create_engine(empty_db)
    assert "organisation" in inspect(engine).get_table_names()
    command.downgrade(cfg, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version", "spatial_ref_sys"}
    command.upgrade(cfg, "head")
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_migration_head_matches_models(engine):
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_object, "compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
