"""The per-process answer cache of the public GET surfaces (app/http.py ResponseCache): keyed by the
data version and everything an answer varies on, bounded in bytes and in age."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.demo import iter_records
from app.http import ResponseCache
from app.loaders.legacy import load_organisations
from app.main import create_app
from app.search import documents
from app.settings import Settings
from tests.conftest import REFERENCE_DIR, scratch_fixtures

db, engine = scratch_fixtures()  # module-scoped: a writable database of its own


@pytest.fixture(scope="module")
def loaded(engine):
    with engine.begin() as conn:
        load_organisations(conn, (("demo", r) for r in iter_records(60, 41, REFERENCE_DIR) if r["id"] != 13219))
    return engine


def client_for(db, **overrides) -> TestClient:
    settings = Settings(BRUSO_DATABASE_URL=db, reference_dir=REFERENCE_DIR, rate_limit_per_minute=0, **overrides)
    return TestClient(create_app(settings))


def first_id(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT min(id) FROM organisation WHERE publication_state = 'published'")).scalar()


def test_an_answer_is_reused_until_max_age_then_asked_again(db, loaded):
    oid = first_id(loaded)
    with client_for(db, response_cache_max_age_s=1.5, data_version_ttl_s=0) as client:
        before = client.get(f"/v1/organisations/{oid}", params={"fields": "name"})
        assert before.status_code == 200
        with loaded.begin() as conn:  # a change the version does not see: answers stay as they were ...
            conn.execute(text("UPDATE record_document SET v1 = replace(v1, :old, :new) WHERE organisation_id = :id"),
                         {"old": '"name":{', "new": '"name":{"x":1,', "id": oid})
        again = client.get(f"/v1/organisations/{oid}", params={"fields": "name"})
        assert again.content == before.content and again.headers["etag"] == before.headers["etag"]
        time.sleep(1.6)  # ... for max_age at most
        later = client.get(f"/v1/organisations/{oid}", params={"fields": "name"})
        assert later.json()["name"].get("x") == 1


def test_a_data_change_is_served_at_once(db, loaded):
    oid = first_id(loaded)
    with client_for(db, data_version_ttl_s=0) as client:
        assert client.get(f"/v1/organisations/{oid}").status_code == 200
        with loaded.begin() as conn:
            conn.execute(text("UPDATE organisation SET name_official_nl = 'Nieuwe naam', updated_at = now() WHERE id = :id"),
                         {"id": oid})
        assert client.get(f"/v1/organisations/{oid}").json()["name"]["nl"] == "Nieuwe naam"


def test_answers_vary_on_language_and_host(db, loaded):
    oid = first_id(loaded)
    with client_for(db) as client:
        nl = client.get(f"/v1/organisations/{oid}", headers={"Accept-Language": "nl"}).json()
        fr = client.get(f"/v1/organisations/{oid}", headers={"Accept-Language": "fr"}).json()
        assert nl["lang"] == "nl" and fr["lang"] == "fr"
        one = client.get(f"/v1/organisations/{oid}", headers={"Host": "one.example"}).json()
        two = client.get(f"/v1/organisations/{oid}", headers={"Host": "two.example"}).json()
        assert one["url"].startswith("http://one.example/") and two["url"].startswith("http://two.example/")
        assert client.get(f"/v1/organisations/{oid}", headers={"If-None-Match": client.get(
            f"/v1/organisations/{oid}").headers["etag"]}).status_code == 304


def test_errors_are_not_remembered(db, loaded):
    with client_for(db) as client:
        assert client.get("/v1/organisations/999999999").status_code == 404
        assert client.get("/v1/organisations", params={"nope": 1}).status_code == 400


def test_cache_off(db, loaded):
    oid = first_id(loaded)
    with loaded.begin() as conn:
        documents.refresh(conn)  # the earlier tests' changes
    with client_for(db, response_cache_mb=0, data_version_ttl_s=0) as client:
        first = client.get(f"/v1/organisations/{oid}", params={"fields": "name"})
        with loaded.begin() as conn:
            conn.execute(text("UPDATE record_document SET v1 = replace(v1, :old, :new) WHERE organisation_id = :id"),
                         {"old": '"name":{', "new": '"name":{"y":2,', "id": oid})
        second = client.get(f"/v1/organisations/{oid}", params={"fields": "name"})
        assert first.json()["name"] != second.json()["name"] and second.json()["name"]["y"] == 2


def test_the_budget_is_bytes_least_recently_used_first():
    cache = ResponseCache(max_bytes=8 * 1000, max_age=60)
    for i in range(20):
        cache.put(("k", i), [], b"x" * 500)
    assert cache.size <= 8000
    assert cache.get(("k", 0)) is None and cache.get(("k", 19)) is not None
    cache.put(("big",), [], b"x" * 1500)  # more than an eighth of the budget: never kept
    assert cache.get(("big",)) is None
