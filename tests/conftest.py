"""Test fixtures: a fresh PostGIS database per test session, migrated by Alembic, loaded with the
reference layers, the 2019 lookup lists, record 13219 and a small generated demo directory.

The cluster is the one ``scripts/db.sh up`` starts (``scripts/test`` does that); point
``BRUSO_TEST_ADMIN_URL`` elsewhere to use another server.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine

from app.settings import Settings

# Tests change data (from this process and others) and read it back at once: every request asks
# for the data version, so remembered counts and answers never outlive a change (the bounded
# staleness of the defaults is tested in test_response_cache.py).
os.environ.setdefault("BRUSO_DATA_VERSION_TTL_S", "0")

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("BRUSO_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5433/postgres")
REFERENCE_DIR = Path(os.environ.get("BRUSO_REFERENCE_DIR", ROOT.parent / "shared" / "reference"))
LEGACY_DIR = REFERENCE_DIR / "socialbrussels-2019"
DEMO_COUNT = 300
DEMO_SEED = 7


def _sqlalchemy_url(dbname: str) -> str:
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{dbname}"


def create_database(prefix: str = "bruso_test") -> str:
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def alembic_config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["configure_logger"] = False
    return cfg


@pytest.fixture
def empty_db() -> Iterator[str]:
    """A brand-new database with nothing in it (per test); yields its SQLAlchemy URL."""
    name = create_database("bruso_empty")
    try:
        yield _sqlalchemy_url(name)
    finally:
        drop_database(name)


@pytest.fixture(scope="session")
def db_url() -> Iterator[str]:
    """The session database, migrated to head by Alembic."""
    name = create_database()
    url = _sqlalchemy_url(name)
    command.upgrade(alembic_config(url), "head")
    try:
        yield url
    finally:
        drop_database(name)


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[Engine]:
    eng = create_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def loaded(engine: Engine) -> Engine:
    """Reference layers + 2019 lookup lists + record 13219 + DEMO_COUNT generated records."""
    from app.demo import iter_records
    from app.loaders.legacy import load_legacy, load_organisations
    from app.loaders.reference import load_reference

    with engine.begin() as conn:
        load_reference(conn, REFERENCE_DIR)
        load_legacy(conn, LEGACY_DIR)
        records = (("demo", r) for r in iter_records(DEMO_COUNT, DEMO_SEED, REFERENCE_DIR) if r["id"] != 13219)
        load_organisations(conn, records)
    return engine


@pytest.fixture(scope="session")
def settings(db_url: str) -> Settings:
    return Settings(BRUSO_DATABASE_URL=db_url, reference_dir=REFERENCE_DIR, public_base_url="http://testserver",
                    rate_limit_per_minute=0,  # the suite makes thousands of requests; limits: test_edge.py
                    data_version_ttl_s=0)  # tests change data and read it back at once


@pytest.fixture(scope="session")
def client(settings: Settings, loaded: Engine) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app(settings)) as c:
        yield c


@contextlib.contextmanager
def scratch_database(*, lookups: bool = True) -> Iterator[str]:
    """A database of its own (for tests that write): migrated, with the reference layers and,
    unless ``lookups=False``, the 2019 lookup lists. Yields its SQLAlchemy URL."""
    from app.loaders.legacy import load_lookups
    from app.loaders.reference import load_reference

    name = create_database("bruso_scratch")
    url = _sqlalchemy_url(name)
    try:
        command.upgrade(alembic_config(url), "head")
        eng = create_engine(url)
        with eng.begin() as conn:
            load_reference(conn, REFERENCE_DIR)
            if lookups:
                load_lookups(conn, LEGACY_DIR)
        eng.dispose()
        yield url
    finally:
        drop_database(name)


def scratch_fixtures():
    """Module-scoped ``db`` (URL) and ``engine`` fixtures over a :func:`scratch_database`, for the
    test modules that write: ``db, engine = scratch_fixtures()``."""

    @pytest.fixture(scope="module")
    def db() -> Iterator[str]:
        with scratch_database() as url:
            yield url

    @pytest.fixture(scope="module")
    def engine(db: str) -> Iterator[Engine]:
        eng = create_engine(db)
        yield eng
        eng.dispose()

    return db, engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_in_thread(asgi_app, port: int | None = None, expose: dict | None = None) -> Iterator[str]:
    """Run an ASGI app with uvicorn on 127.0.0.1 in a thread; yields its base URL (``expose``
    receives the uvicorn server as "server", for tests that stop it)."""
    import threading
    import time

    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(asgi_app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    if expose is not None:
        expose["server"] = server
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
