"""Stored documents (app/search/documents.py): built by every write path, identical to shaping the
record on the fly, never served stale, and relayed by /v1 and OGC API Features."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.demo import iter_records
from app.loaders.legacy import load_lookups, load_organisations
from app.main import create_app
from app.search import RECORD_SQL, documents
from app.serialize import ogc as ogc_shape
from app.serialize import v1 as v1_shape
from app.settings import Settings
from tests.conftest import LEGACY_DIR, REFERENCE_DIR, scratch_fixtures

db, engine = scratch_fixtures()  # module-scoped: a writable database of its own
BASE = "http://testserver"


@pytest.fixture(scope="module")
def loaded(engine):
    with engine.begin() as conn:
        load_organisations(conn, (("demo", r) for r in iter_records(120, 31, REFERENCE_DIR) if r["id"] != 13219))
    return engine


@pytest.fixture(scope="module")
def client(db, loaded):
    settings = Settings(BRUSO_DATABASE_URL=db, reference_dir=REFERENCE_DIR, public_base_url=BASE,
                        rate_limit_per_minute=0, data_version_ttl_s=0)
    with TestClient(create_app(settings)) as c:
        yield c


def shaped(engine, oid: int) -> dict:
    """The record shaped on the fly, as before documents existed."""
    with engine.connect() as conn:
        row = conn.execute(text(RECORD_SQL.format(public="")), {"ids": [oid]}).mappings().one()
    return v1_shape.organisation(dict(row), BASE)


def stale(engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(text(documents.STALE_SQL)).scalars())


def published_ids(engine, limit: int = 1000) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(text(
            "SELECT id FROM organisation WHERE publication_state = 'published' ORDER BY id LIMIT :n"), {"n": limit}).scalars())


def test_a_load_builds_every_document(loaded):
    assert stale(loaded) == []
    with loaded.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM record_document")).scalar() == \
            conn.execute(text("SELECT count(*) FROM organisation")).scalar()


def test_served_documents_equal_the_record_shaped_on_the_fly(client, loaded):
    for oid in published_ids(loaded, 40):
        body = client.get(f"/v1/organisations/{oid}").json()
        assert body == shaped(loaded, oid)
        assert body["url"] == f"{BASE}/v1/organisations/{oid}"


def test_a_page_relays_the_same_documents_with_distance(client, loaded):
    page = client.get("/v1/organisations", params={"near": "50.8466,4.3528", "limit": 20}).json()
    assert page["numberReturned"] == len(page["items"]) > 0
    distances = [item.pop("distance_m") for item in page["items"]]
    assert distances == sorted(distances)
    for item in page["items"]:
        assert item == shaped(loaded, item["id"])


def test_lang_and_fields_are_applied_to_stored_documents(client, loaded):
    oid = published_ids(loaded, 1)[0]
    nl = client.get(f"/v1/organisations/{oid}", params={"lang": "nl", "fields": "name,url"}).json()
    expected = v1_shape.in_language(shaped(loaded, oid), "nl")
    assert nl == {"id": oid, "name": expected["name"], "url": expected["url"]}


def test_a_stale_document_is_never_served(client, loaded):
    oid = published_ids(loaded, 1)[0]
    with loaded.begin() as conn:  # a write that does not rebuild (as a forgetful tool would)
        conn.execute(text("UPDATE organisation SET name_official_fr = 'Nom changé en douce', updated_at = now() "
                          "WHERE id = :id"), {"id": oid})
    assert stale(loaded) == [oid]
    assert client.get(f"/v1/organisations/{oid}").json()["name"]["fr"] == "Nom changé en douce"
    item = client.get(f"/ogc/collections/organisations/items/{oid}").json()
    assert item["properties"]["name_fr"] == "Nom changé en douce"
    with loaded.begin() as conn:
        assert documents.refresh(conn) == 1
    assert stale(loaded) == []
    assert client.get(f"/v1/organisations/{oid}").json() == shaped(loaded, oid)


def test_unpublished_records_have_no_public_document(client, loaded):
    oid = published_ids(loaded, 2)[1]
    with loaded.begin() as conn:
        conn.execute(text("UPDATE organisation SET publication_state = 'unpublished', updated_at = now() WHERE id = :id"),
                     {"id": oid})
        documents.refresh(conn, [oid])
    try:
        assert client.get(f"/v1/organisations/{oid}").status_code == 404
        assert client.get(f"/ogc/collections/organisations/items/{oid}").status_code == 404
    finally:
        with loaded.begin() as conn:
            conn.execute(text("UPDATE organisation SET publication_state = 'published', updated_at = now() WHERE id = :id"),
                         {"id": oid})
            documents.refresh(conn, [oid])


def test_a_lookup_list_load_drops_documents_and_the_next_load_rebuilds_them(client, loaded):
    with loaded.begin() as conn:
        load_lookups(conn, LEGACY_DIR)
    with loaded.connect() as conn:
        assert stale(loaded) == list(conn.execute(text("SELECT id FROM organisation ORDER BY id")).scalars())
    oid = published_ids(loaded, 1)[0]
    assert client.get(f"/v1/organisations/{oid}").json() == shaped(loaded, oid)  # shaped on the fly meanwhile
    with loaded.begin() as conn:
        load_organisations(conn, iter([]))
    assert stale(loaded) == []


def test_ogc_features_from_documents_equal_the_shaped_feature(client, loaded):
    page = client.get("/ogc/collections/organisations/items", params={"limit": 5}).json()
    assert len(page["features"]) == 5
    for feature in page["features"]:
        with loaded.connect() as conn:
            row = conn.execute(text(RECORD_SQL.format(public="")), {"ids": [feature["id"]]}).mappings().one()
        expected = ogc_shape.organisation_feature(dict(row), None, BASE)["properties"]
        assert feature["properties"] == expected
        assert feature["geometry"]["type"] == "Point"


def test_with_base_rewrites_only_the_placeholder():
    body = b'{"url":"\\u0001/v1/organisations/1","text":"a \\u0001/ b","x":"\\u0001/v1"}'
    out = documents.with_base(body, "https://api.example")
    assert out == b'{"url":"https://api.example/v1/organisations/1","text":"a \\u0001/ b","x":"https://api.example/v1"}'
