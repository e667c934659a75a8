"""Legacy social.brussels ``/rest``: the 2019 shapes (keys, order, types, ids) against the captures,
organisation searches through the core (same ids as /v1), JSON 404s and 400s, ETags."""

from __future__ import annotations

import itertools
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.routers import legacy
from tests.conftest import LEGACY_DIR

PROBLEM = "application/problem+json"
CAPTURES = {
    "/rest/sectors": "sectors.json",
    "/rest/search/category?activity=*": "categories.json",
    "/rest/agreements": "accreditations.json",
    "/rest/agreementpowers": "accreditors.json",
    "/rest/legalstatus": "legal-status.json",
    "/rest/languageoffer": "languages.json",
    "/rest/offertypes": "service-types.json",
    "/rest/actionzones": "zones.json",
}
# cleaned by the loader (hard-wrapped lines joined): compared by type only
REWRAPPED = {"descriptionFr", "descriptionNl"}


def capture(name: str):
    return json.loads((LEGACY_DIR / name).read_text(encoding="utf-8"))


RECORD_13219 = capture("organisation-13219.json")


@pytest.fixture(scope="module")
def rest(client) -> TestClient:
    return client


def stripped(value):
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        return [stripped(v) for v in value]
    if isinstance(value, dict):
        return {k: stripped(v) for k, v in value.items()}
    return value


def assert_same_shape(ours, theirs, where: str) -> None:
    """Same keys in the same order, same JSON types, recursively (objects and lists of objects)."""
    assert type(ours) is type(theirs), f"{where}: {type(ours).__name__} != {type(theirs).__name__}"
    if isinstance(theirs, dict):
        assert list(ours) == list(theirs), where
        for key in theirs:
            assert_same_shape(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list) and theirs and isinstance(theirs[0], dict):
        for i, item in enumerate(ours):
            assert_same_shape(item, theirs[0], f"{where}[{i}]")


def v1_ids(client: TestClient, params: dict) -> set[int]:
    ids: list[int] = []
    cursor = None
    while True:
        query = dict(params, limit=1000, fields="id")
        if cursor:
            query["cursor"] = cursor
        r = client.get("/v1/organisations", params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        ids += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(ids) == len(set(ids))
    return set(ids)


def rest_ids(client: TestClient, url: str, params: dict | None = None) -> list[int]:
    r = client.get(url, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert isinstance(body, list)
    for doc in body:
        assert list(doc) == list(RECORD_13219)
        assert list(doc["address"]) == list(RECORD_13219["address"])
    ids = [doc["id"] for doc in body]
    assert len(ids) == len(set(ids)), "an organisation appears twice"
    return ids


# ---------------------------------------------------------------- one organisation


def test_organisation_13219_is_the_2019_record(rest):
    r = rest.get("/rest/organisation/13219")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == list(RECORD_13219)
    assert list(body["address"]) == list(RECORD_13219["address"])
    assert_same_shape(body, RECORD_13219, "organisation")
    assert body == RECORD_13219
    assert isinstance(body["address"]["zipCode"], int)
    assert body["lastUpdate"] == RECORD_13219["lastUpdate"]


def test_unknown_and_unpublished_organisations_are_json_404(rest, loaded):
    with loaded.connect() as conn:
        hidden = conn.execute(text("SELECT id FROM organisation WHERE publication_state <> 'published' ORDER BY id LIMIT 1")).scalar()
    assert hidden is not None, "the demo directory has unpublished records"
    for path in (f"/rest/organisation/{hidden}", "/rest/organisation/999999", "/rest/organisation/abc", "/rest/organisation/0",
                 "/rest/nope", "/rest/", "/rest/organisation/13219/extra", "/rest/sector/999999",
                 "/rest/sector/999999/paths", "/rest/sector/999999/organisations", "/rest/sector/x"):
        r = rest.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"] == PROBLEM, path
        problem = r.json()
        assert problem["status"] == 404 and problem["instance"] == path


# ---------------------------------------------------------------- lookup lists against the captures


@pytest.mark.parametrize("url", list(CAPTURES), ids=[CAPTURES[u] for u in CAPTURES])
def test_list_matches_its_capture(rest, url):
    theirs = capture(CAPTURES[url])
    r = rest.get(url)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    ours = r.json()
    assert len(ours) == len(theirs)
    assert {o["id"] for o in ours} == {t["id"] for t in theirs}
    by_id = {t["id"]: t for t in theirs}
    for obj in ours:
        ref = by_id[obj["id"]]
        assert list(obj) == list(ref), obj["id"]
        for key, value in ref.items():
            assert type(obj[key]) is type(value), (CAPTURES[url], obj["id"], key, obj[key], value)
            if key == "organisationsCount":
                continue  # the current count, not the 2019 one
            if key in REWRAPPED:
                continue
            assert stripped(obj[key]) == stripped(value), (CAPTURES[url], obj["id"], key)


def test_sectors_come_in_display_order(rest):
    orders = [s["order"] for s in rest.get("/rest/sectors").json()]
    assert orders == sorted(orders)


def test_category_counts_are_what_the_category_search_returns(rest, loaded):
    with loaded.connect() as conn:
        busiest = conn.execute(
            text(
                "SELECT oc.category_id FROM organisation_category oc JOIN organisation o ON o.id = oc.organisation_id "
                "WHERE o.publication_state = 'published' GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
            )
        ).scalar()
        parent = conn.execute(text("SELECT parent_category_id FROM category_tree WHERE parent_category_id IS NOT NULL ORDER BY 1 LIMIT 1")).scalar()
    counts = {c["id"]: c["organisationsCount"] for c in rest.get("/rest/search/category", params={"activity": "*"}).json()}
    for cid in (busiest, parent):
        assert counts[cid] == len(rest_ids(rest, "/rest/search/organisation", {"categories": cid})), cid
    assert counts[busiest] > 0


def test_category_search_filters_titles_and_keywords_in_both_languages(rest):
    everything = rest.get("/rest/search/category").json()
    assert len(everything) == 658
    fr = rest.get("/rest/search/category", params={"activity": "coordination sociale"}).json()
    nl = rest.get("/rest/search/category", params={"activity": "COORDINATIE"}).json()  # coördinatie, folded
    assert 489 in {c["id"] for c in fr} and 489 in {c["id"] for c in nl}
    assert 0 < len(fr) < 658 and 0 < len(nl) < 658
    from app.text import fold

    for c in fr:
        doc = fold(" ".join([c["titleFr"], c["titleNl"], *c["keywordsFr"], *c["keywordsNl"]]))
        assert "coordination" in doc and "sociale" in doc, c["id"]
    assert rest.get("/rest/search/category", params={"activity": "zzzqqq"}).json() == []
    bad = rest.get("/rest/search/category", params={"activity": "x", "sort": "name"})
    assert bad.status_code == 400 and bad.headers["content-type"] == PROBLEM


# ---------------------------------------------------------------- sectors: detail, paths, organisations


@pytest.fixture(scope="module")
def sector_id(loaded) -> int:
    with loaded.connect() as conn:
        return conn.execute(
            text("SELECT sector_id FROM category_tree GROUP BY 1 ORDER BY count(parent_category_id) DESC, count(*) DESC, 1 LIMIT 1")
        ).scalar()


def test_sector_detail_is_the_sector_and_its_categories(rest, loaded, sector_id):
    body = rest.get(f"/rest/sector/{sector_id}").json()
    sectors = {s["id"]: s for s in capture("sectors.json")}
    category_ref = capture("categories.json")[0]
    assert list(body) == [*sectors[sector_id], "categories"]
    assert body["titleFr"] == sectors[sector_id]["titleFr"].strip()
    with loaded.connect() as conn:
        placed = set(conn.execute(text("SELECT category_id FROM category_tree WHERE sector_id = :s"), {"s": sector_id}).scalars())
    assert {c["id"] for c in body["categories"]} == placed
    assert len(body["categories"]) == len(placed)
    for c in body["categories"]:
        assert_same_shape({k: v for k, v in c.items() if k not in REWRAPPED}, {k: v for k, v in category_ref.items() if k not in REWRAPPED}, "category")


def test_sector_paths_follow_the_category_tree(rest, loaded, sector_id):
    paths = rest.get(f"/rest/sector/{sector_id}/paths").json()
    with loaded.connect() as conn:
        parents = dict(conn.execute(text("SELECT category_id, parent_category_id FROM category_tree WHERE sector_id = :s"), {"s": sector_id}).all())
    assert {p[-1]["id"] for p in paths} == set(parents)
    assert len(paths) == len(parents)
    assert any(len(p) > 2 for p in paths), "the chosen sector has rubrics"
    for path in paths:
        assert path[0]["id"] == sector_id
        for step in path:
            assert list(step) == ["id", "titleFr", "titleNl"]
        ids = [step["id"] for step in path[1:]]
        assert parents[ids[0]] is None
        for parent, child in itertools.pairwise(ids):
            assert parents[child] == parent
    # depth first: every rubric comes right before its own sub-paths
    seen: set[int] = set()
    for path in paths:
        assert all(step["id"] in seen for step in path[1:-1])
        seen.add(path[-1]["id"])


def test_sector_organisations_are_the_core_sector_search(rest, sector_id):
    ids = rest_ids(rest, f"/rest/sector/{sector_id}/organisations")
    assert ids and set(ids) == v1_ids(rest, {"sector": sector_id})


# ---------------------------------------------------------------- organisation searches


@pytest.mark.parametrize("term", ["CASS", "schaerbeek", "Schaarbeekse", "coordination action sociale"])
def test_search_by_term_finds_13219(rest, term):
    ids = rest_ids(rest, f"/rest/search/organisation/{term}")
    assert 13219 in ids
    assert set(ids) == v1_ids(rest, {"q": term})


def test_star_and_no_filter_are_every_published_organisation(rest, loaded):
    with loaded.connect() as conn:
        published = set(conn.execute(text("SELECT id FROM organisation WHERE publication_state = 'published'")).scalars())
    assert len(published) > 200
    for url in ("/rest/search/organisation/*", "/rest/search/organisation", "/rest/search/organisation/"):
        ids = rest_ids(rest, url)
        assert set(ids) == published, url
        assert len(ids) == len(published)


@pytest.fixture(scope="module")
def popular(loaded) -> dict:
    """For each legacy filter, a well-used id and a second one (for comma lists)."""
    queries = {
        "agreements": "SELECT l.accreditation_id FROM organisation_accreditation l",
        "categories": "SELECT l.category_id FROM organisation_category l",
        "zones": "SELECT l.action_zone_id FROM organisation_action_zone l",
        "sectors": "SELECT t.sector_id FROM organisation_category l JOIN category_tree t ON t.category_id = l.category_id",
    }
    out = {}
    with loaded.connect() as conn:
        for name, sql in queries.items():
            out[name] = list(conn.execute(text(
                f"{sql} JOIN organisation o ON o.id = l.organisation_id WHERE o.publication_state = 'published' "
                "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 2"
            )).scalars())
    return out


@pytest.mark.parametrize(("legacy_name", "core_name"), list(legacy.ALIASES.items()))
def test_legacy_filters_return_the_v1_ids(rest, popular, legacy_name, core_name):
    one, two = popular[legacy_name]
    ids = rest_ids(rest, "/rest/search/organisation", {legacy_name: one})
    assert ids and set(ids) == v1_ids(rest, {core_name: one})
    both = rest_ids(rest, "/rest/search/organisation", {legacy_name: f"{one},{two}"})
    assert set(both) == v1_ids(rest, {core_name: f"{one},{two}"})
    assert set(ids) <= set(both)


def test_legacy_filters_combine_with_and(rest, popular):
    params = {"sectors": popular["sectors"][0], "zones": popular["zones"][0]}
    ids = rest_ids(rest, "/rest/search/organisation", params)
    assert set(ids) == v1_ids(rest, {"sector": params["sectors"], "action_zone": params["zones"]})
    term = rest_ids(rest, "/rest/search/organisation/CASS", {"zones": popular["zones"][0]})
    assert set(term) == v1_ids(rest, {"q": "CASS", "action_zone": popular["zones"][0]})


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"color": "red"}, "color"),
        ({"agreements": "abc"}, "agreements"),
        ({"zones": "999999"}, "zones"),
        ({"sectors": "1,999999"}, "sectors"),
        ({"category": "999999"}, "category"),
        ({"limit": "5"}, "limit"),
    ],
)
def test_bad_search_parameters_are_400_naming_them(rest, params, parameter):
    r = rest.get("/rest/search/organisation", params=params)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["parameter"] == parameter
    r = rest.get("/rest/search/organisation/CASS", params=params)
    assert r.status_code == 400 and r.json()["parameter"] == parameter


# ---------------------------------------------------------------- caching and documentation


@pytest.mark.parametrize("path", ["/rest/organisation/13219", "/rest/sectors", "/rest/search/organisation/CASS"])
def test_etag_and_conditional_requests(rest, path):
    first = rest.get(path)
    again = rest.get(path)
    assert first.status_code == 200
    assert first.content == again.content  # stable bytes, stable key order
    etag = first.headers.get("etag")
    assert etag and not etag.startswith("W/"), "strong ETag (app/http.py must cover /rest/)"
    assert "last-modified" in first.headers
    not_modified = rest.get(path, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert rest.get(path, headers={"If-None-Match": '"other"'}).status_code == 200


def test_routes_are_documented(rest):
    from openapi_spec_validator import validate

    doc = rest.get("/openapi.json").json()
    validate(doc)
    expected = {
        "/rest/organisation/{id}", "/rest/search/organisation", "/rest/search/organisation/{term}", "/rest/search/category",
        "/rest/sectors", "/rest/sector/{id}", "/rest/sector/{id}/paths", "/rest/sector/{id}/organisations",
        "/rest/agreements", "/rest/agreementpowers", "/rest/legalstatus", "/rest/languageoffer", "/rest/offertypes",
        "/rest/actionzones",
    }
    paths = {p for p in doc["paths"] if p.startswith("/rest")}
    assert paths == expected
    for path in expected:
        operation = doc["paths"][path]["get"]
        assert operation["tags"] == ["legacy"]
        assert "422" not in operation["responses"]
        for parameter in operation.get("parameters", []):
            assert parameter.get("description"), (path, parameter["name"])
    names = {p["name"] for p in doc["paths"]["/rest/search/organisation"]["get"]["parameters"]}
    assert set(legacy.ALIASES) <= names


def test_searches_page_through_the_core_with_cursors(rest, monkeypatch):
    """All matches, whatever the internal page size: the same ids, in the same order, each once."""
    whole = rest_ids(rest, "/rest/search/organisation/*")
    by_term = rest_ids(rest, "/rest/search/organisation/sociale")
    monkeypatch.setattr(legacy, "PAGE", 37)
    monkeypatch.setattr(legacy, "FETCH_CHUNK", 10)
    assert rest_ids(rest, "/rest/search/organisation/*") == whole
    assert rest_ids(rest, "/rest/search/organisation/sociale") == by_term
    assert len(by_term) > 37
