"""The change feed (/v1/changes) and tombstones (410 Gone): a client that pages the feed while
imports create, update and delete records ends with exactly the server's state."""

from __future__ import annotations

import random
import threading

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.demo import iter_records
from app.importer import sources
from app.importer.run import run_import
from app.loaders.legacy import delete_organisations
from app.main import create_app
from app.settings import Settings
from tests.conftest import REFERENCE_DIR, scratch_fixtures
from tests.test_import import write_ndjson

START = 60


db, engine = scratch_fixtures()  # module-scoped: a writable database of its own


@pytest.fixture(scope="module")
def client(db):
    with TestClient(create_app(Settings(BRUSO_DATABASE_URL=db, reference_dir=REFERENCE_DIR, public_base_url="http://testserver"))) as c:
        yield c


def published(engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT id FROM organisation WHERE publication_state = 'published'")).scalars())


def records(count: int, seed: int) -> list[dict]:
    return [r for r in iter_records(count + 1, seed, REFERENCE_DIR) if r["id"] != 13219][:count]


def test_a_client_paging_during_imports_ends_with_the_server_state(engine, client, tmp_path):
    rng = random.Random(5)
    pool = records(START + 40, seed=21)
    current = {r["id"]: r for r in pool[:START]}
    run_import(engine, sources.legacy_path(write_ndjson(tmp_path / "start.ndjson", list(current.values()))))

    mirror: dict[int, dict] = {}
    token = None

    def page(limit: int = 7) -> int:
        nonlocal token
        params = {"limit": limit, **({"since": token} if token else {})}
        body = client.get("/v1/changes", params=params).json()
        for event in body["events"]:
            if event["type"] == "deleted":
                mirror.pop(event["id"], None)
                continue
            response = client.get(f"/v1/organisations/{event['id']}")
            if response.status_code == 200:
                mirror[event["id"]] = response.json()
            else:  # already gone again: its deleted event follows
                assert response.status_code in (404, 410)
                mirror.pop(event["id"], None)
        token = body["next"]
        return len(body["events"])

    fresh = iter(pool[START:])

    def imports() -> None:
        for step in range(8):
            snapshot = dict(current)
            for oid in rng.sample(sorted(snapshot), 4):  # updates
                snapshot[oid] = {**snapshot[oid], "nameOfficialFr": f"Renommé {step} {oid}"}
            for oid in rng.sample(sorted(snapshot), 2):  # deletions
                del snapshot[oid]
            for _ in range(3):  # creations
                rec = next(fresh)
                snapshot[rec["id"]] = rec
            if step % 3 == 0:  # one becomes unpublished: a deleted event for the public feed
                oid = rng.choice(sorted(snapshot))
                snapshot[oid] = {**snapshot[oid], "publicationState": "unpublished"}
            path = write_ndjson(tmp_path / f"step{step}.ndjson", list(snapshot.values()))
            run_import(engine, sources.legacy_path(path), delete_missing=True)
            current.clear()
            current.update(snapshot)

    worker = threading.Thread(target=imports)
    worker.start()
    while worker.is_alive():
        page()
    worker.join()
    while page(100):
        pass

    assert set(mirror) == published(engine)
    for oid, doc in mirror.items():
        assert client.get(f"/v1/organisations/{oid}").json() == doc


def test_feed_tokens_and_dates(client):
    everything = client.get("/v1/changes", params={"limit": 1000}).json()["events"]
    assert everything, "the first test filled the feed"
    middle = everything[len(everything) // 2]
    since = client.get("/v1/changes", params={"since": middle["at"], "limit": 1000}).json()["events"]
    assert since and all(e["at"] >= middle["at"] for e in since)
    assert middle in since
    for bad in ("nonsense", "2024-13-45", "c2VxOi0x"):
        r = client.get("/v1/changes", params={"since": bad})
        assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/changes", params={"bogus": "1"}).status_code == 400
    last = client.get("/v1/changes", params={"limit": 1000}).json()
    empty = client.get("/v1/changes", params={"since": last["next"]}).json()
    while empty["events"]:
        empty = client.get("/v1/changes", params={"since": empty["next"]}).json()
    assert empty["next"] == client.get("/v1/changes", params={"since": empty["next"]}).json()["next"]


def test_deleted_and_merged_records_answer_410_and_legacy_404(engine, client):
    ids = sorted(published(engine))
    deleted, merged, successor = ids[0], ids[1], ids[2]
    with engine.begin() as conn:
        delete_organisations(conn, "SELECT :d", {"d": deleted}, reason="test")
        delete_organisations(conn, "SELECT :m", {"m": merged}, reason="duplicate", merged_into=successor)
    gone = client.get(f"/v1/organisations/{deleted}")
    assert gone.status_code == 410 and gone.headers["content-type"] == "application/problem+json"
    assert "deleted" in gone.json()["detail"]
    moved = client.get(f"/v1/organisations/{merged}")
    assert moved.status_code == 410
    assert moved.json()["merged_into"] == successor
    assert moved.json()["successor"] == f"http://testserver/v1/organisations/{successor}"
    assert f'/v1/organisations/{successor}>; rel="successor-version"' in moved.headers["link"]
    legacy = client.get(f"/rest/organisation/{merged}")
    assert legacy.status_code == 404 and legacy.json()["successor"] == f"http://testserver/rest/organisation/{successor}"
    assert client.get("/v1/organisations/987654321").status_code == 404
    # the two deletions are the feed's last events
    all_events = []
    token = None
    while True:
        body = client.get("/v1/changes", params={"limit": 1000, **({"since": token} if token else {})}).json()
        if not body["events"]:
            break
        all_events += body["events"]
        token = body["next"]
    tail = [(e["id"], e["type"]) for e in all_events[-2:]]
    assert tail == [(deleted, "deleted"), (merged, "deleted")]
