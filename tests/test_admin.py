"""The authenticated write side (/admin): API keys (hashed, revocable, scoped), imports by upload,
edits with optimistic concurrency, publication, merges, the quarantine and the audit log."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.auth import create_key, list_keys, revoke_key
from app.demo import iter_records
from app.importer import sources
from app.importer.run import run_import
from app.main import create_app
from app.routers import admin
from app.settings import Settings
from tests.conftest import REFERENCE_DIR, scratch_fixtures

INJECTION = "Robert'); DROP TABLE organisation; -- \" OR 1=1 /* ${x} %s \\"


def demo(count: int, seed: int = 31) -> list[dict]:
    out = [r for r in iter_records(count + 10, seed, REFERENCE_DIR)
           if r["id"] != 13219 and r.get("publicationState", "published") == "published"]
    return out[:count]


def ndjson(records: list) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records).encode()


db, engine = scratch_fixtures()  # module-scoped: a writable database of its own


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return demo(16)


@pytest.fixture(scope="module")
def loaded(engine, records, tmp_path_factory):
    path = tmp_path_factory.mktemp("admin") / "start.ndjson"
    path.write_bytes(ndjson(records[:10]))
    result = run_import(engine, sources.legacy_path(path))
    assert result.report.created == 10
    return [r["id"] for r in records[:10]]


@pytest.fixture(scope="module")
def keys(engine) -> dict[str, str]:
    made = {scope: create_key(engine, f"test {scope}", [scope]) for scope in ("import", "edit", "admin")}
    made["revoked"] = create_key(engine, "test revoked", ["admin"])
    assert revoke_key(engine, made["revoked"].split("_")[1])
    return made


@pytest.fixture(scope="module")
def client(db, loaded, keys):
    app = create_app(Settings(BRUSO_DATABASE_URL=db, reference_dir=REFERENCE_DIR, public_base_url="http://testserver"))
    if not any(getattr(route, "path", "").startswith("/admin/") for route in app.routes):
        app.include_router(admin.router)
    with TestClient(app) as c:
        yield c


def bearer(key: str, **extra) -> dict:
    return {"Authorization": f"Bearer {key}", **extra}


def is_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()


def read(client, keys, oid: int):
    response = client.get(f"/admin/organisations/{oid}", headers=bearer(keys["edit"]))
    assert response.status_code == 200, response.text
    return response.json(), response.headers["etag"]


def feed(client) -> list[tuple[int, str]]:
    events, token = [], None
    while True:
        body = client.get("/v1/changes", params={"limit": 1000, **({"since": token} if token else {})}).json()
        if not body["events"]:
            return events
        events += [(e["id"], e["type"]) for e in body["events"]]
        token = body["next"]


def audit(client, keys, **params) -> list[dict]:
    response = client.get("/admin/audit", params={"limit": 1000, **params}, headers=bearer(keys["admin"]))
    assert response.status_code == 200, response.text
    return response.json()["items"]


# ---------------------------------------------------------------- keys and authentication


def test_keys_are_shown_once_and_stored_hashed(engine, keys):
    for key in keys.values():
        assert key.startswith("bruso_") and len(key.split("_", 2)[2]) == 43
    listed = {k["prefix"]: k for k in list_keys(engine)}
    assert {k.split("_")[1] for k in keys.values()} <= set(listed)
    assert all("secret_sha256" not in k and "key" not in k for k in listed.values())
    assert listed[keys["revoked"].split("_")[1]]["revoked_at"] is not None
    with engine.connect() as conn:
        dump = conn.execute(text("SELECT string_agg(k::text, '|') FROM api_key k")).scalar_one()
        audit_dump = conn.execute(text("SELECT coalesce(string_agg(a::text, '|'), '') FROM audit_log a")).scalar_one()
        stored = conn.execute(text("SELECT secret_sha256 FROM api_key WHERE prefix = :p"),
                              {"p": keys["edit"].split("_")[1]}).scalar_one()
    for key in keys.values():
        secret = key.split("_", 2)[2]
        assert secret not in dump and secret not in audit_dump
    assert stored == hashlib.sha256(keys["edit"].encode()).hexdigest()
    with pytest.raises(ValueError):
        create_key(engine, "bad", ["root"])
    with pytest.raises(ValueError):
        create_key(engine, " ", ["edit"])
    assert not revoke_key(engine, "000000000000")


def test_401_without_or_with_a_bad_or_revoked_key(client, keys, loaded):
    oid = loaded[0]
    url = f"/admin/organisations/{oid}"
    cases = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        bearer("nonsense"),
        bearer("bruso_000000000000_" + "A" * 43),
        bearer(keys["edit"][:-1] + ("B" if keys["edit"][-1] != "B" else "C")),  # right prefix, wrong secret
        bearer(keys["revoked"]),
    ]
    for headers in cases:
        problem = is_problem(client.get(url, headers=headers), 401)
        assert problem["title"] == "Unauthorized"
    response = client.get(url)
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert 'error="invalid_token"' in client.get(url, headers=bearer(keys["revoked"])).headers["www-authenticate"]
    # writes too, before any body is read
    assert client.patch(url, json={"name": {"fr": "x"}}, headers={"If-Match": "*"}).status_code == 401
    assert client.post("/admin/imports", files={"file": ("a.ndjson", b"{}\n")}).status_code == 401


def test_403_for_a_key_without_the_scope(client, keys, loaded):
    oid = loaded[0]
    problem = is_problem(client.get(f"/admin/organisations/{oid}", headers=bearer(keys["import"])), 403)
    assert problem["required_scope"] == "edit"
    assert 'error="insufficient_scope"' in client.get(f"/admin/organisations/{oid}", headers=bearer(keys["import"])).headers["www-authenticate"]
    is_problem(client.post("/admin/imports", files={"file": ("a.ndjson", b"{}\n")}, headers=bearer(keys["edit"])), 403)
    is_problem(client.get("/admin/audit", headers=bearer(keys["edit"])), 403)
    is_problem(client.get("/admin/audit", headers=bearer(keys["import"])), 403)
    is_problem(client.get("/admin/keys", headers=bearer(keys["edit"])), 403)
    is_problem(client.post(f"/admin/organisations/{oid}/unpublish", headers=bearer(keys["import"], **{"If-Match": "*"})), 403)
    # admin may do everything
    assert client.get(f"/admin/organisations/{oid}", headers=bearer(keys["admin"])).status_code == 200
    assert client.get("/admin/audit", headers=bearer(keys["admin"])).status_code == 200


def test_keys_through_the_api(client, keys):
    made = client.post("/admin/keys", json={"name": "robot", "scopes": ["edit"]}, headers=bearer(keys["admin"]))
    assert made.status_code == 201, made.text
    key, prefix = made.json()["key"], made.json()["prefix"]
    assert client.get(f"/admin/organisations/{13219}", headers=bearer(key)).status_code in (200, 404)
    assert prefix in {k["prefix"] for k in client.get("/admin/keys", headers=bearer(keys["admin"])).json()["items"]}
    assert all("key" not in k and "secret_sha256" not in k
               for k in client.get("/admin/keys", headers=bearer(keys["admin"])).json()["items"])
    is_problem(client.post("/admin/keys", json={"name": "x", "scopes": ["root"]}, headers=bearer(keys["admin"])), 400)
    is_problem(client.post("/admin/keys", json={"name": "x"}, headers=bearer(keys["admin"])), 400)
    assert client.delete(f"/admin/keys/{prefix}", headers=bearer(keys["admin"])).status_code == 200
    is_problem(client.get("/admin/organisations/13219", headers=bearer(key)), 401)
    is_problem(client.delete(f"/admin/keys/{prefix}", headers=bearer(keys["admin"])), 404)
    actions = [(e["action"], e["target"]) for e in audit(client, keys, target=f"api_key:{prefix}")]
    assert actions == [("key.revoke", f"api_key:{prefix}"), ("key.create", f"api_key:{prefix}")]


# ---------------------------------------------------------------- imports


def test_upload_three_good_one_bad(client, keys, records, engine):
    good = records[10:13]
    bad = copy.deepcopy(records[13])
    bad["id"], bad["emailFr"] = 990001, ["info@@example"]
    body = ndjson([good[0], bad, good[1], good[2]])
    for oid in [r["id"] for r in good]:
        assert client.get(f"/v1/organisations/{oid}").status_code == 404

    dry = client.post("/admin/imports", files={"file": ("new.ndjson", body)}, data={"dry_run": "true"},
                      headers=bearer(keys["import"], **{"X-Request-ID": "dry-1"}))
    assert dry.status_code == 200, dry.text
    assert dry.json()["status"] == "dry-run" and dry.json()["counts"]["created"] == 3
    assert client.get(f"/v1/organisations/{good[0]['id']}").status_code == 404

    response = client.post("/admin/imports", files={"file": ("new records.ndjson", body, "application/x-ndjson")},
                           headers=bearer(keys["import"], **{"X-Request-ID": "upload-1"}))
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["status"] == "succeeded" and report["dry_run"] is False
    assert report["counts"]["read"] == 4 and report["counts"]["created"] == 3 and report["counts"]["rejected"] == 1
    assert report["source"] == "upload:new_records.ndjson"
    assert report["actor"].startswith("test import (")
    [rejected] = report["rejected"]
    assert rejected["record_id"] == "990001"
    assert rejected["problems"][0]["field"] == "email_fr" and "e-mail" in rejected["problems"][0]["reason"]
    for rec in good:
        assert client.get(f"/v1/organisations/{rec['id']}").status_code == 200
    assert client.get("/v1/organisations/990001").status_code == 404

    run = client.get(f"/admin/imports/{report['run_id']}", headers=bearer(keys["import"])).json()
    assert run["actor"] == report["actor"] and run["rejected"] == 1
    is_problem(client.get(f"/admin/imports/{report['run_id']}/quarantine", headers=bearer(keys["import"])), 403)
    quarantine = client.get(f"/admin/imports/{report['run_id']}/quarantine", headers=bearer(keys["admin"])).json()
    [item] = quarantine["items"]
    assert item["record"]["id"] == 990001 and item["problems"][0]["field"] == "email_fr"
    is_problem(client.get("/admin/imports/999999/quarantine", headers=bearer(keys["admin"])), 404)

    entry = audit(client, keys, action="import")[0]
    assert entry["target"] == f"import_run:{report['run_id']}" and entry["request_id"] == "upload-1"
    assert entry["after"]["created"] == 3 and entry["after"]["rejected"] == 1 and entry["before"] is None
    assert audit(client, keys, action="import.dry-run")[0]["request_id"] == "dry-1"


def test_upload_csv_table_and_bad_uploads(client, keys, loaded):
    # the v1 CSV export edited and sent back: the table source of the importer
    oid = loaded[1]
    csv = client.get("/v1/organisations", params={"f": "csv", "q": "", "limit": 1000}).content.decode("utf-8-sig")
    assert str(oid) in csv
    response = client.post("/admin/imports", files={"file": ("export.csv", csv.encode("utf-8-sig"))},
                           headers=bearer(keys["import"]))
    assert response.status_code == 200, response.text
    assert response.json()["counts"]["rejected"] == 0 and response.json()["counts"]["created"] == 0

    h = bearer(keys["import"])
    is_problem(client.post("/admin/imports", files={"file": ("records.txt", b"{}")}, headers=h), 400)
    is_problem(client.post("/admin/imports", data={"dry_run": "true"}, files={"other": ("a.json", b"{}")}, headers=h), 400)
    is_problem(client.post("/admin/imports", files={"file": ("a.ndjson", b"{}\n")}, data={"dry_run": "maybe"}, headers=h), 400)
    is_problem(client.post("/admin/imports", files={"file": ("a.ndjson", b"{}\n")}, data={"geocode": "everything"}, headers=h), 400)
    is_problem(client.post("/admin/imports", content=b"{}", headers={**h, "Content-Type": "application/json"}), 415)
    is_problem(client.post("/admin/imports", content=b"garbage",
                           headers={**h, "Content-Type": "multipart/form-data; boundary=xyz"}), 400)
    is_problem(client.post("/admin/imports?bogus=1", files={"file": ("a.ndjson", b"{}\n")}, headers=h), 400)


def test_upload_too_big_is_413(client, keys, monkeypatch):
    monkeypatch.setattr(admin, "MAX_UPLOAD_BYTES", 10_000)
    big = b"\n".join(b'{"id": 1}' for _ in range(2000))
    problem = is_problem(client.post("/admin/imports", files={"file": ("big.ndjson", big)}, headers=bearer(keys["import"])), 413)
    assert problem["limit"] == 10_000

    def chunked():  # no Content-Length: counted while streaming
        for _ in range(30):
            yield b"x" * 1000

    response = client.post("/admin/imports", content=chunked(),
                           headers=bearer(keys["import"], **{"Content-Type": "multipart/form-data; boundary=abc"}))
    is_problem(response, 413)


# ---------------------------------------------------------------- edits


def test_patch_with_if_match_and_the_change_feed(client, keys, loaded, engine):
    oid = loaded[2]
    doc, etag = read(client, keys, oid)
    assert doc["publication_state"] == "published" and doc["links"]["self"].endswith(f"/admin/organisations/{oid}")
    assert client.get(f"/admin/organisations/{oid}", headers=bearer(keys["edit"])).headers["etag"] == etag  # stable
    before_events = len(feed(client))

    patch = {"name": {"fr": "  Centre d'essai Bruso  "}, "contact": {"emails": {"nl": ["info@bruso.example.be"]}},
             "activities": {"nl": "Nieuwe activiteiten: zwartkopvogelkunde"}}
    response = client.patch(f"/admin/organisations/{oid}", json=patch,
                            headers=bearer(keys["edit"], **{"If-Match": etag, "X-Request-ID": "edit-1"}))
    assert response.status_code == 200, response.text
    new_etag = response.headers["etag"]
    assert new_etag != etag and response.headers["x-request-id"] == "edit-1"
    edited = response.json()
    assert edited["name"]["fr"] == "Centre d'essai Bruso"  # trimmed as the importer trims
    assert edited["name"]["nl"] == doc["name"]["nl"]  # merge patch: the other language untouched
    assert edited["contact"]["emails"]["nl"] == ["info@bruso.example.be"]
    assert edited["updated_at"] > doc["updated_at"]
    assert read(client, keys, oid)[1] == new_etag

    public = client.get(f"/v1/organisations/{oid}").json()
    assert public["name"]["fr"] == "Centre d'essai Bruso"
    assert oid in [r["id"] for r in client.get("/v1/organisations", params={"q": "nieuwe activiteiten"}).json()["items"]]
    # the search text and the typo-tolerant vocabulary follow the edit
    assert [r["id"] for r in client.get("/v1/organisations", params={"q": "zwartkopvogelkunde"}).json()["items"]] == [oid]
    assert [r["id"] for r in client.get("/v1/organisations", params={"q": "zwartkopvoglkunde"}).json()["items"]] == [oid]
    events = feed(client)
    assert events[before_events:] == [(oid, "updated")]

    # the same ETag again: stale
    stale = client.patch(f"/admin/organisations/{oid}", json={"name": {"fr": "Autre"}}, headers=bearer(keys["edit"], **{"If-Match": etag}))
    problem = is_problem(stale, 412)
    assert problem["current_etag"] == new_etag and stale.headers["etag"] == new_etag
    # none at all
    is_problem(client.patch(f"/admin/organisations/{oid}", json={"name": {"fr": "Autre"}}, headers=bearer(keys["edit"])), 428)
    assert client.get(f"/v1/organisations/{oid}").json()["name"]["fr"] == "Centre d'essai Bruso"

    # a patch that changes nothing writes nothing
    same = client.patch(f"/admin/organisations/{oid}", json={"name": {"fr": "Centre d'essai Bruso"}},
                        headers=bearer(keys["edit"], **{"If-Match": new_etag}))
    assert same.status_code == 200 and same.headers["etag"] == new_etag
    assert len(feed(client)) == len(events)

    [entry] = [e for e in audit(client, keys, target=f"organisation:{oid}") if e["request_id"] == "edit-1"]
    assert entry["action"] == "organisation.update" and entry["actor"].startswith("test edit (")
    assert entry["before"]["name.fr"] == doc["name"]["fr"] and entry["after"]["name.fr"] == "Centre d'essai Bruso"
    assert entry["before"]["contact.emails.nl"] == doc["contact"]["emails"]["nl"]
    assert entry["after"]["contact.emails.nl"] == ["info@bruso.example.be"]
    assert "activities.nl" in entry["after"] and "name.nl" not in entry["after"]


@pytest.mark.parametrize(
    "patch, field, reason",
    [
        ({"contact": {"emails": {"fr": ["info@@example"]}}}, "contact.emails.fr", "e-mail"),
        ({"contact": {"phones": {"nl": ["02/12"]}}}, "contact.phones.nl", "phone"),
        ({"contact": {"websites": {"official": {"fr": ["javascript:alert(1)"]}}}}, "contact.websites.official.fr", "http"),
        ({"lang_status": "DE"}, "lang_status", "FR, NL"),
        ({"publication_state": "deleted"}, "publication_state", "published"),
        ({"publication_state": None}, "publication_state", "published"),
        ({"is_interpreting": "yes"}, "is_interpreting", "true or false"),
        ({"name": None}, "name", "official name"),
        ({"name": {"nl": "", "fr": "  "}}, "name", "official name"),
        ({"name": {"fr": 12}}, "name.fr", "string"),
        ({"name": "X"}, "name", "object"),
        ({"alternative_names": {"nl": "not a list"}}, "alternative_names.nl", "list of strings"),
        ({"description": {"fr": "nul \x00 byte"}}, "description.fr", "NUL"),
        ({"address": {"postcode": 9999}}, "address", "importer"),
        ({"categories": [1]}, "categories", "import"),
        ({"id": 5}, "id", "read-only"),
        ({"colour": "red"}, "colour", "unknown field"),
        ({"contact": {"pigeons": {"nl": []}}}, "contact.pigeons", "unknown field"),
    ],
)
def test_patch_rejects_bad_fields_naming_them(client, keys, loaded, patch, field, reason):
    oid = loaded[3]
    _, etag = read(client, keys, oid)
    response = client.patch(f"/admin/organisations/{oid}", json=patch, headers=bearer(keys["edit"], **{"If-Match": etag}))
    problem = is_problem(response, 400)
    assert problem["field"] == field, problem
    assert reason in problem["detail"], problem
    assert read(client, keys, oid)[1] == etag  # nothing written


def test_patch_bad_bodies(client, keys, loaded):
    oid = loaded[3]
    _, etag = read(client, keys, oid)
    h = bearer(keys["edit"], **{"If-Match": etag})
    is_problem(client.patch(f"/admin/organisations/{oid}", content=b"{not json", headers={**h, "Content-Type": "application/json"}), 400)
    is_problem(client.patch(f"/admin/organisations/{oid}", json=[1, 2], headers=h), 400)
    is_problem(client.patch(f"/admin/organisations/{oid}", content=b"name=x", headers={**h, "Content-Type": "text/plain"}), 415)
    is_problem(client.patch(f"/admin/organisations/{oid}", content=b"{}", headers={**h, "Content-Type": "application/json",
                                                                                 "Content-Length": str(10**8)}), 413)
    is_problem(client.patch("/admin/organisations/abc", json={}, headers=h), 400)
    is_problem(client.patch("/admin/organisations/987654", json={}, headers=h), 404)
    ok = client.patch(f"/admin/organisations/{oid}", content=b'{"remark": {"nl": "via merge-patch"}}',
                      headers={**h, "Content-Type": "application/merge-patch+json"})
    assert ok.status_code == 200 and ok.json()["remark"]["nl"] == "via merge-patch"


def test_sql_injection_strings_are_stored_verbatim(client, keys, loaded, engine):
    oid = loaded[4]
    _, etag = read(client, keys, oid)
    patch = {"name": {"nl": INJECTION}, "description": {"fr": INJECTION}, "alternative_names": {"fr": [INJECTION, "' OR ''='"]}}
    response = client.patch(f"/admin/organisations/{oid}", json=patch, headers=bearer(keys["edit"], **{"If-Match": etag}))
    assert response.status_code == 200, response.text
    with engine.connect() as conn:
        row = conn.execute(text("SELECT name_official_nl, description_fr, name_alternative_fr FROM organisation WHERE id = :id"),
                           {"id": oid}).one()
        assert conn.execute(text("SELECT count(*) FROM organisation")).scalar_one() > 10
    assert row.name_official_nl == INJECTION.strip() and row.description_fr == INJECTION.strip()
    assert row.name_alternative_fr == [INJECTION.strip(), "' OR ''='"]
    assert client.get(f"/v1/organisations/{oid}").json()["name"]["nl"] == INJECTION.strip()
    entry = audit(client, keys, target=f"organisation:{oid}")[0]
    assert entry["after"]["name.nl"] == INJECTION.strip()


# ---------------------------------------------------------------- publication and merges


def test_unpublish_and_publish(client, keys, loaded):
    oid = loaded[5]
    url = f"/admin/organisations/{oid}"
    _, etag = read(client, keys, oid)
    is_problem(client.post(f"{url}/unpublish", headers=bearer(keys["edit"])), 428)
    is_problem(client.post(f"{url}/unpublish", headers=bearer(keys["edit"], **{"If-Match": '"stale"'})), 412)
    assert client.get(f"/v1/organisations/{oid}").status_code == 200
    start = len(feed(client))

    response = client.post(f"{url}/unpublish", headers=bearer(keys["edit"], **{"If-Match": etag, "X-Request-ID": "unpub-1"}))
    assert response.status_code == 200, response.text
    assert response.json()["publication_state"] == "unpublished"
    is_problem(client.get(f"/v1/organisations/{oid}"), 404)
    assert read(client, keys, oid)[0]["publication_state"] == "unpublished"  # the admin still sees it
    assert feed(client)[start:] == [(oid, "deleted")]

    again = client.post(f"{url}/unpublish", headers=bearer(keys["edit"], **{"If-Match": response.headers["etag"]}))
    assert again.status_code == 200 and again.headers["etag"] == response.headers["etag"]  # idempotent, nothing written
    assert len(feed(client)) == start + 1

    published = client.post(f"{url}/publish", headers=bearer(keys["edit"], **{"If-Match": response.headers["etag"], "X-Request-ID": "pub-1"}))
    assert published.status_code == 200 and published.json()["publication_state"] == "published"
    assert client.get(f"/v1/organisations/{oid}").status_code == 200
    assert feed(client)[start:] == [(oid, "deleted"), (oid, "created")]

    entries = {e["request_id"]: e for e in audit(client, keys, target=f"organisation:{oid}")}
    assert entries["unpub-1"]["action"] == "organisation.unpublish"
    assert entries["unpub-1"]["before"] == {"publication_state": "published"}
    assert entries["unpub-1"]["after"] == {"publication_state": "unpublished"}
    assert entries["pub-1"]["action"] == "organisation.publish"
    assert entries["pub-1"]["after"] == {"publication_state": "published"}


def test_merge(client, keys, loaded):
    old, successor, other = loaded[6], loaded[7], loaded[8]
    url = f"/admin/organisations/{old}/merge"
    doc, etag = read(client, keys, old)
    h = bearer(keys["edit"], **{"If-Match": etag, "X-Request-ID": "merge-1"})
    is_problem(client.post(url, json={"into": successor}, headers=bearer(keys["edit"])), 428)
    assert is_problem(client.post(url, json={"into": old}, headers=h), 400)["field"] == "into"
    assert is_problem(client.post(url, json={"into": 987654}, headers=h), 400)["field"] == "into"
    assert is_problem(client.post(url, json={"into": "x"}, headers=h), 400)["field"] == "into"
    is_problem(client.post(url, json={"into": successor, "extra": 1}, headers=h), 400)
    is_problem(client.post(url, json={"into": successor}, headers={**h, "If-Match": '"stale"'}), 412)

    # an unpublished successor: 409 (the old id would point to a 404)
    _, other_etag = read(client, keys, other)
    client.post(f"/admin/organisations/{other}/unpublish", headers=bearer(keys["edit"], **{"If-Match": other_etag}))
    is_problem(client.post(url, json={"into": other}, headers=h), 409)

    start = len(feed(client))
    response = client.post(url, json={"into": successor}, headers=h)
    assert response.status_code == 200, response.text
    assert response.json()["merged_into"] == successor

    gone = is_problem(client.get(f"/v1/organisations/{old}"), 410)
    assert gone["merged_into"] == successor and gone["successor"].endswith(f"/v1/organisations/{successor}")
    assert is_problem(client.get(f"/admin/organisations/{old}", headers=bearer(keys["edit"])), 410)["merged_into"] == successor
    assert client.get(f"/v1/organisations/{successor}").status_code == 200
    assert feed(client)[start:] == [(old, "deleted")]
    is_problem(client.post(url, json={"into": successor}, headers=h), 410)  # merged already

    [entry] = [e for e in audit(client, keys, target=f"organisation:{old}") if e["request_id"] == "merge-1"]
    assert entry["action"] == "organisation.merge"
    assert entry["before"]["id"] == old and entry["before"]["name"] == doc["name"]  # the whole record is kept
    assert entry["after"] == {"merged_into": successor}

    # a record merged into one that is merged in turn points to the last successor
    _, etag = read(client, keys, successor)
    final = loaded[9]
    chained = client.post(f"/admin/organisations/{successor}/merge", json={"into": final},
                          headers=bearer(keys["edit"], **{"If-Match": etag, "X-Request-ID": "merge-2"}))
    assert chained.status_code == 200, chained.text
    assert is_problem(client.get(f"/v1/organisations/{old}"), 410)["merged_into"] == final
    [entry] = [e for e in audit(client, keys, target=f"organisation:{successor}") if e["request_id"] == "merge-2"]
    assert entry["after"] == {"merged_into": final, "repointed": [old]}


# ---------------------------------------------------------------- the audit log and the document


def test_audit_log_paging_and_parameters(client, keys):
    everything = audit(client, keys)
    assert len(everything) >= 8
    assert {"organisation.update", "organisation.publish", "organisation.unpublish", "organisation.merge", "import",
            "key.create", "key.revoke"} <= {e["action"] for e in everything}
    assert all(e["actor"] for e in everything)
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids, reverse=True)
    page = client.get("/admin/audit", params={"limit": 3}, headers=bearer(keys["admin"])).json()
    assert [e["id"] for e in page["items"]] == ids[:3]
    second = client.get("/admin/audit", params={"limit": 3, "before": page["next"]}, headers=bearer(keys["admin"])).json()
    assert [e["id"] for e in second["items"]] == ids[3:6]
    middle = everything[len(everything) // 2]
    since = audit(client, keys, since=middle["at"])
    assert since and all(e["at"] >= middle["at"] for e in since)
    for bad in ({"limit": "0"}, {"limit": "x"}, {"since": "yesterday"}, {"before": "-1"}, {"bogus": "1"}):
        is_problem(client.get("/admin/audit", params=bad, headers=bearer(keys["admin"])), 400)


def test_openapi_marks_admin_routes_with_bearer_security(client):
    doc = client.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["apiKey"]["type"] == "http" and schemes["apiKey"]["scheme"] == "bearer"
    admin_operations = [(path, op) for path, item in doc["paths"].items() if path.startswith("/admin/") for op in item.values()]
    assert len(admin_operations) >= 11
    for path, operation in admin_operations:
        assert operation["security"] == [{"apiKey": []}], path
        assert "422" not in operation["responses"], path
        assert "401" in operation["responses"] and "403" in operation["responses"], path
    assert "multipart/form-data" in doc["paths"]["/admin/imports"]["post"]["requestBody"]["content"]
    assert "If-Match" in {p["name"] for p in doc["paths"]["/admin/organisations/{id}"]["patch"]["parameters"]}


def test_cli_creates_lists_and_revokes_keys(db, client):
    from tests.test_import import invoke

    created = invoke(db, "keys", "create", "cli-test", "--scope", "edit")
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]
    assert key.startswith("bruso_")
    assert client.get("/admin/audit", headers=bearer(key)).status_code == 403  # edit ≠ admin
    listed = invoke(db, "keys", "list")
    assert "cli-test" in listed.output and key not in listed.output
    prefix = key.split("_")[1]
    assert invoke(db, "keys", "revoke", prefix).exit_code == 0
    assert client.get(f"/admin/organisations/{13219}", headers=bearer(key)).status_code == 401
    assert invoke(db, "keys", "revoke", "nope").exit_code == 1
    assert invoke(db, "keys", "create", "x", "--scope", "root").exit_code != 0
