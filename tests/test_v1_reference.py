"""The v1 reference endpoints against SQL truth: sectors and their tree, categories (search, counts,
paths), lookup lists, districts (JSON and GeoJSON), suggestions and statistics; languages with their
flagged fallbacks; the 400s and 404s; the OpenAPI description."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text


PROBLEM = "application/problem+json"
GEOJSON = "application/geo+json"
FALLBACK_ID = 990_001  # a category written by one test and deleted after it
FALLBACK_TITLE = "Catégorie d'essai uniquement française"


@pytest.fixture(scope="module")
def api(client) -> TestClient:
    """The application (the reference router is part of v1)."""
    return client


def sql(engine: Engine, query: str, **params) -> list:
    with engine.connect() as conn:
        return conn.execute(text(query), params).all()


def scalar(engine: Engine, query: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(query), params).scalar()


def ok(response, media_type: str = "application/json") -> dict:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    assert response.headers["cache-control"] == "public, max-age=300"
    return response.json()


def problem(response, status: int, parameter: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    if parameter is not None:
        named = body.get("parameter") or [e["parameter"] for e in body.get("errors", [])]
        assert parameter in (named if isinstance(named, list) else [named]), body
        assert parameter in body["detail"]
    return body


def walk(nodes: list[dict], parent: int | None = None, depth: int = 0):
    for node in nodes:
        yield node, parent, depth
        yield from walk(node["children"], node["id"], depth + 1)


def positions(geometry: dict):
    """Every [lon, lat] of a (Multi)Polygon."""
    coords = geometry["coordinates"]
    rings = [ring for polygon in coords for ring in polygon] if geometry["type"] == "MultiPolygon" else coords
    for ring in rings:
        yield from ring


def assert_brussels_feature_collection(body: dict) -> None:
    assert body["type"] == "FeatureCollection"
    assert body["features"]
    for feature in body["features"]:
        assert feature["type"] == "Feature" and "properties" in feature and "id" in feature
        geometry = feature["geometry"]
        assert geometry is not None and geometry["type"] in ("Polygon", "MultiPolygon")
        for ring in (geometry["coordinates"] if geometry["type"] == "Polygon" else [r for p in geometry["coordinates"] for r in p]):
            assert len(ring) >= 4 and ring[0] == ring[-1]  # closed linear rings
        for lon, lat in positions(geometry):
            assert 4.2 < lon < 4.5 and 50.7 < lat < 50.95, (feature["id"], lon, lat)


# ---------------------------------------------------------------- sectors


def test_sectors_in_order_with_counts_from_sql(api, loaded):
    body = ok(api.get("/v1/sectors"))
    expected = sql(
        loaded,
        """
        SELECT s.id,
               (SELECT count(DISTINCT oc.organisation_id) FROM category_tree t
                  JOIN organisation_category oc ON oc.category_id = t.category_id
                  JOIN organisation o ON o.id = oc.organisation_id AND o.publication_state = 'published'
                 WHERE t.sector_id = s.id) AS n
          FROM sector s ORDER BY s.position, s.id
        """,
    )
    assert body["count"] == len(body["items"]) == len(expected) == 21
    assert [(s["id"], s["organisation_count"]) for s in body["items"]] == [tuple(r) for r in expected]
    assert any(s["organisation_count"] > 0 for s in body["items"])
    first = body["items"][0]
    assert set(first["title"]) == {"nl", "fr"} and first["title"]["nl"] and first["title"]["fr"]
    assert first["url"] == f"http://testserver/v1/sectors/{first['id']}"


def test_sector_tree_nests_every_placement_under_its_parent_with_rolled_up_counts(api, loaded):
    sector_id = scalar(
        loaded,
        "SELECT sector_id FROM category_tree GROUP BY sector_id ORDER BY count(parent_category_id) DESC, sector_id LIMIT 1",
    )
    placements = {
        r.category_id: r
        for r in sql(loaded, "SELECT category_id, parent_category_id, inferred FROM category_tree WHERE sector_id = :s", s=sector_id)
    }
    links = {}
    for cat, org in sql(
        loaded,
        """SELECT oc.category_id, oc.organisation_id FROM organisation_category oc
             JOIN organisation o ON o.id = oc.organisation_id WHERE o.publication_state = 'published'""",
    ):
        links.setdefault(cat, set()).add(org)

    body = ok(api.get(f"/v1/sectors/{sector_id}"))
    assert body["id"] == sector_id
    seen = []
    nested = 0

    def orgs_below(node: dict) -> set[int]:
        out = set(links.get(node["id"], set()))
        for child in node["children"]:
            out |= orgs_below(child)
        return out

    for node, parent, depth in walk(body["children"]):
        seen.append(node["id"])
        assert node["parent_id"] == parent == placements[node["id"]].parent_category_id
        assert node["inferred"] == placements[node["id"]].inferred
        assert node["organisation_count"] == len(orgs_below(node))
        assert all(node["organisation_count"] >= c["organisation_count"] for c in node["children"])
        nested += depth > 0
    assert sorted(seen) == sorted(placements)  # every placement exactly once
    assert nested == sum(1 for p in placements.values() if p.parent_category_id is not None) > 0
    assert body["tree_inferred"] is all(p.inferred for p in placements.values())
    union = set().union(*(orgs_below(n) for n in body["children"]))
    assert body["organisation_count"] == len(union)


def test_sector_unknown_is_404_and_bad_id_400(api):
    body = problem(api.get("/v1/sectors/999999"), 404)
    assert "999999" in body["detail"]
    problem(api.get("/v1/sectors/abc"), 400, "id")


# ---------------------------------------------------------------- categories


def test_categories_counts_agree_with_sql(api, loaded):
    body = ok(api.get("/v1/categories", params={"limit": 5000}))  # clamped at 1000, there are 658
    total = scalar(loaded, "SELECT count(*) FROM category")
    assert body["count"] == len(body["items"]) == total
    by_id = {c["id"]: c for c in body["items"]}

    # categories with nothing below them: their count is the plain number of linked published organisations
    leaves = dict(
        sql(
            loaded,
            """
            SELECT c.id, count(DISTINCT o.id) FROM category c
              LEFT JOIN organisation_category oc ON oc.category_id = c.id
              LEFT JOIN organisation o ON o.id = oc.organisation_id AND o.publication_state = 'published'
             WHERE NOT EXISTS (SELECT 1 FROM category_tree t WHERE t.parent_category_id = c.id)
             GROUP BY c.id
            """,
        )
    )
    assert {i: by_id[i]["organisation_count"] for i in leaves} == leaves
    assert sum(by_id[i]["organisation_count"] for i in leaves) == scalar(
        loaded,
        """SELECT count(*) FROM organisation_category oc JOIN organisation o ON o.id = oc.organisation_id
            WHERE o.publication_state = 'published'
              AND NOT EXISTS (SELECT 1 FROM category_tree t WHERE t.parent_category_id = oc.category_id)""",
    )
    # a rubric counts the organisations of the categories below it too (what search category=<id> finds)
    rubric = scalar(loaded, "SELECT min(parent_category_id) FROM category_tree")
    expected = scalar(
        loaded,
        """SELECT count(DISTINCT o.id) FROM organisation o JOIN organisation_category oc ON oc.organisation_id = o.id
            WHERE o.publication_state = 'published'
              AND (oc.category_id = :r OR oc.category_id IN (SELECT category_id FROM category_tree WHERE parent_category_id = :r))""",
        r=rubric,
    )
    assert by_id[rubric]["organisation_count"] == expected > 0
    # sector ids per category
    some = next(iter(leaves))
    assert by_id[some]["sectors"] and sorted(by_id[some]["sectors"]) == sorted(
        r[0] for r in sql(loaded, "SELECT sector_id FROM category_tree WHERE category_id = :c", c=some)
    )


def test_categories_limit_default_and_bad_values(api):
    assert ok(api.get("/v1/categories"))["count"] == 100
    assert ok(api.get("/v1/categories", params={"limit": 3}))["count"] == 3
    problem(api.get("/v1/categories", params={"limit": 0}), 400, "limit")
    problem(api.get("/v1/categories", params={"limit": "many"}), 400, "limit")


def test_categories_filter_by_sector(api, loaded):
    expected = sorted(r[0] for r in sql(loaded, "SELECT category_id FROM category_tree WHERE sector_id = 53"))
    body = ok(api.get("/v1/categories", params={"sector": 53, "limit": 1000}))
    assert sorted(c["id"] for c in body["items"]) == expected
    assert all(53 in c["sectors"] for c in body["items"])
    problem(api.get("/v1/categories", params={"sector": 424242}), 400, "sector")
    problem(api.get("/v1/categories", params={"sector": "x"}), 400, "sector")


def test_categories_q_ignores_accents_case_and_typos(api, loaded):
    wanted = {
        r[0] for r in sql(loaded, "SELECT id FROM category WHERE bruso_normalise(title_fr) LIKE '%maison% medicale%'")
    }
    assert wanted, "the 2019 lists have 'maison(s) médicale(s)' categories"
    for q in ("maison medicale", "MAISON MÉDICALE", "maisn medicale", "maison medicalle"):
        body = ok(api.get("/v1/categories", params={"q": q}))
        ids = [c["id"] for c in body["items"]]
        assert wanted <= set(ids), (q, ids)
        scores = [c["score"] for c in body["items"]]
        assert scores == sorted(scores, reverse=True)
        assert set(ids[: len(wanted)]) == wanted, (q, ids)  # ranked first
    assert ok(api.get("/v1/categories", params={"q": "xyzzyqwv"}))["items"] == []


def test_categories_q_finds_keywords_in_both_languages(api, loaded):
    # a keyword that appears in no title: only the keyword search can find its categories
    for column in ("keywords_nl", "keywords_fr"):
        keyword, ids = sql(
            loaded,
            f"""
            SELECT k, array_agg(c.id) FROM category c, unnest(c.{column}) AS k
             WHERE k ~ '^[[:alpha:]]{{6,}}$'
               AND NOT EXISTS (SELECT 1 FROM category x
                                WHERE strpos(bruso_normalise(x.title_nl || ' ' || x.title_fr), bruso_normalise(k)) > 0)
             GROUP BY k ORDER BY count(*), k LIMIT 1
            """,
        )[0]
        found = [c["id"] for c in ok(api.get("/v1/categories", params={"q": keyword.upper()}))["items"]]
        assert set(ids) <= set(found), (keyword, ids, found)


def test_category_detail_with_urls_and_paths(api, loaded):
    cid, parent, sector_id = sql(
        loaded, "SELECT category_id, parent_category_id, sector_id FROM category_tree WHERE parent_category_id IS NOT NULL ORDER BY 1, 3 LIMIT 1"
    )[0]
    body = ok(api.get(f"/v1/categories/{cid}"))
    assert body["id"] == cid and set(body["urls"]) == {"nl", "fr"} and set(body["keywords"]) == {"nl", "fr"}
    placements = sql(loaded, "SELECT sector_id FROM category_tree WHERE category_id = :c", c=cid)
    assert sorted(p["sector_id"] for p in body["sector_paths"]) == sorted(r[0] for r in placements) == sorted(body["sectors"])
    path = next(p for p in body["sector_paths"] if p["sector_id"] == sector_id)
    assert path["path"][-1] == cid and path["path"][-2] == parent
    top = sql(loaded, "SELECT parent_category_id FROM category_tree WHERE sector_id = :s AND category_id = :c", s=sector_id, c=path["path"][0])
    assert top[0][0] is None
    listed = next(c for c in ok(api.get("/v1/categories", params={"limit": 1000}))["items"] if c["id"] == cid)
    assert listed["organisation_count"] == body["organisation_count"]
    problem(api.get("/v1/categories/999999"), 404)


# ---------------------------------------------------------------- languages


@pytest.fixture
def french_only_category(loaded) -> Iterator[int]:
    """A category whose Dutch title is missing (deleted afterwards)."""
    with loaded.begin() as conn:
        conn.execute(
            text("INSERT INTO category (id, title_nl, title_fr, position) VALUES (:id, '', :fr, 9999)"),
            {"id": FALLBACK_ID, "fr": FALLBACK_TITLE},
        )
    try:
        yield FALLBACK_ID
    finally:
        with loaded.begin() as conn:
            conn.execute(text("DELETE FROM category WHERE id = :id"), {"id": FALLBACK_ID})


def test_lang_gives_strings_and_flags_fallbacks(api, french_only_category):
    url = f"/v1/categories/{french_only_category}"
    bilingual = ok(api.get(url))
    assert bilingual["title"] == {"nl": None, "fr": FALLBACK_TITLE}
    assert "fallback_lang" not in bilingual

    nl = ok(api.get(url, params={"lang": "nl"}))
    assert nl["title"] == FALLBACK_TITLE
    assert nl["fallback_lang"] == "fr" and "title" in nl["fallback_fields"] and nl["lang"] == "nl"

    fr = ok(api.get(url, params={"lang": "fr"}))
    assert fr["title"] == FALLBACK_TITLE and "fallback_lang" not in fr

    by_header = ok(api.get(url, headers={"Accept-Language": "nl-BE,nl;q=0.9,fr;q=0.5"}))
    assert by_header["title"] == FALLBACK_TITLE and by_header["fallback_lang"] == "fr"
    assert "fallback_lang" not in ok(api.get(url, params={"lang": "fr"}, headers={"Accept-Language": "nl"}))  # lang wins
    assert ok(api.get(url, headers={"Accept-Language": "en, fr;q=0.8, nl;q=0.3"}))["lang"] == "fr"

    listed = ok(api.get("/v1/categories", params={"q": "essai uniquement francaise", "lang": "nl"}))
    item = next(c for c in listed["items"] if c["id"] == french_only_category)
    assert item["title"] == FALLBACK_TITLE and item["fallback_lang"] == "fr"


def test_lang_turns_every_label_into_a_string(api, loaded):
    for lang in ("nl", "fr"):
        column = f"title_{lang}"
        expected = dict(sql(loaded, f"SELECT id, {column} FROM sector"))
        body = ok(api.get("/v1/sectors", params={"lang": lang}))
        assert {s["id"]: s["title"] for s in body["items"]} == expected
        assert all("fallback_lang" not in s for s in body["items"])
        tree = ok(api.get("/v1/sectors/53", params={"lang": lang}))
        assert isinstance(tree["title"], str)
        assert all(isinstance(n["title"], str) for n, _, _ in walk(tree["children"]))
        accreditations = ok(api.get("/v1/accreditations", params={"lang": lang}))["items"]
        assert all(isinstance(a["label"], str) and isinstance(a["authority"]["name"], str) for a in accreditations if a["authority"])
        communes = {c["nis_code"]: c["name"] for c in ok(api.get("/v1/communes", params={"lang": lang}))["items"]}
        assert communes["21015"] == {"nl": "Schaarbeek", "fr": "Schaerbeek"}[lang]
    problem(api.get("/v1/sectors", params={"lang": "de"}), 400, "lang")
    problem(api.get("/v1/sectors?lang=nl&lang=fr"), 400, "lang")


# ---------------------------------------------------------------- lookup lists


def test_lookup_lists_match_the_tables(api, loaded):
    accreditations = ok(api.get("/v1/accreditations"))
    assert accreditations["count"] == scalar(loaded, "SELECT count(*) FROM accreditation")
    with_authority = next(a for a in accreditations["items"] if a["authority"])
    assert with_authority["authority"]["id"] == scalar(loaded, "SELECT authority_id FROM accreditation WHERE id = :i", i=with_authority["id"])

    authorities = ok(api.get("/v1/authorities"))
    assert {a["id"]: a["accreditation_count"] for a in authorities["items"]} == dict(
        sql(loaded, "SELECT au.id, count(a.id) FROM authority au LEFT JOIN accreditation a ON a.authority_id = au.id GROUP BY au.id")
    )
    zones = ok(api.get("/v1/action-zones"))
    assert zones["count"] == scalar(loaded, "SELECT count(*) FROM action_zone")
    assert {"id", "label", "kind", "commune_nis", "quartier_code", "parent_id"} <= set(zones["items"][0])
    assert any(z["kind"] == "commune" and z["commune_nis"] for z in zones["items"])
    for path, table, stem in (("legal-statuses", "legal_status", "label"), ("offer-types", "offer_type", "label"), ("languages", "language", "name")):
        body = ok(api.get(f"/v1/{path}"))
        rows = sql(loaded, f"SELECT id, {stem}_nl, {stem}_fr FROM {table} ORDER BY id")
        assert [(i["id"], i[stem]["nl"], i[stem]["fr"]) for i in body["items"]] == [tuple(r) for r in rows]
        assert body["count"] == len(rows)


# ---------------------------------------------------------------- districts


@pytest.mark.parametrize(
    ("path", "table", "key", "column"),
    [
        ("communes", "commune", "nis_code", "commune_nis"),
        ("quartiers", "quartier", "code", "quartier_code"),
        ("statistical-sectors", "statistical_sector", "code", "statistical_sector_code"),
    ],
)
def test_districts_with_counts_and_geojson(api, loaded, path, table, key, column):
    body = ok(api.get(f"/v1/{path}"))
    counts = dict(
        sql(loaded, f"""SELECT d.{key}, count(o.id) FROM {table} d
                         LEFT JOIN organisation o ON o.{column} = d.{key} AND o.publication_state = 'published'
                        GROUP BY d.{key}""")
    )
    assert {d[key]: d["organisation_count"] for d in body["items"]} == counts
    assert body["count"] == len(counts) and sum(counts.values()) > 0
    if table == "statistical_sector":
        sample = body["items"][0]
        assert (sample["commune_nis"], sample["quartier_code"]) == tuple(
            sql(loaded, "SELECT commune_nis, quartier_code FROM statistical_sector WHERE code = :c", c=sample["code"])[0]
        )

    geo = ok(api.get(f"/v1/{path}", params={"f": "geojson"}), GEOJSON)
    assert_brussels_feature_collection(geo)
    assert len(geo["features"]) == len(counts)
    for feature in geo["features"]:
        assert feature["id"] == feature["properties"][key]
        assert feature["properties"]["organisation_count"] == counts[feature["id"]]
    problem(api.get(f"/v1/{path}", params={"f": "xml"}), 400, "f")


def test_geojson_is_the_transformed_polygon(api, loaded):
    lon, lat = sql(loaded, "SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Transform(ST_Centroid(geom), 4326) c FROM commune WHERE nis_code = '21015') x")[0]
    feature = next(f for f in ok(api.get("/v1/communes", params={"f": "geojson"}), GEOJSON)["features"] if f["id"] == "21015")
    points = list(positions(feature["geometry"]))
    assert min(p[0] for p in points) < lon < max(p[0] for p in points)
    assert min(p[1] for p in points) < lat < max(p[1] for p in points)
    assert all(len(str(c).split(".")[-1]) <= 6 for p in points[:50] for c in p)  # 6 decimals


# ---------------------------------------------------------------- suggestions


def test_suggest_finds_schaerbeek_in_both_languages(api):
    for q in ("schaer", "Schaarbeek", "SCHAERBEEK", "schaerbek"):
        body = ok(api.get("/v1/suggest", params={"q": q}))
        assert 0 < len(body["items"]) <= 10
        scores = [s["score"] for s in body["items"]]
        assert scores == sorted(scores, reverse=True)
        commune = [s for s in body["items"] if s["type"] == "commune" and s["id"] == "21015"]
        assert commune and commune[0]["label"] == {"nl": "Schaarbeek", "fr": "Schaerbeek"}, (q, body)
    top = ok(api.get("/v1/suggest", params={"q": "schaer"}))["items"][0]
    assert (top["type"], top["id"]) == ("commune", "21015")  # a name starting with q comes first
    fr = ok(api.get("/v1/suggest", params={"q": "Schaarbeek", "lang": "fr", "type": "commune"}))
    assert fr["items"] == [{"type": "commune", "id": "21015", "label": "Schaerbeek", "score": 1.0}]


def test_suggest_types_streets_and_categories(api, loaded):
    streets = ok(api.get("/v1/suggest", params={"q": "Reyers", "type": "street"}))["items"]
    assert streets and all(s["type"] == "street" for s in streets)
    assert any(s["label"]["fr"] == "Boulevard Auguste Reyers (1030)" for s in streets)
    names = [(s["label"]["nl"], s["label"]["fr"]) for s in streets]
    assert len(names) == len(set(names))  # BeST duplicates suggested once

    mixed = ok(api.get("/v1/suggest?q=Reyers&type=street,quartier&type=commune"))["items"]
    assert {s["type"] for s in mixed} <= {"street", "quartier", "commune"} and any(s["type"] == "quartier" for s in mixed)

    categories = ok(api.get("/v1/suggest", params={"q": "maison medicale", "type": "category"}))["items"]
    assert categories and all(s["type"] == "category" and isinstance(s["id"], int) for s in categories)
    assert "maison" in categories[0]["label"]["fr"].lower()


def test_suggest_organisations_are_published_only(api, loaded):
    oid, name = sql(
        loaded,
        """SELECT id, name_official_fr FROM organisation
            WHERE publication_state <> 'published' AND name_official_fr IS NOT NULL ORDER BY id LIMIT 1""",
    )[0]
    body = ok(api.get("/v1/suggest", params={"q": name, "type": "organisation"}))
    ids = [s["id"] for s in body["items"]]
    assert oid not in ids
    if ids:
        states = {r[0] for r in sql(loaded, "SELECT publication_state FROM organisation WHERE id = ANY(:ids)", ids=ids)}
        assert states == {"published"}
    published = ok(api.get("/v1/suggest", params={"q": "COORDINATION DE L'ACTION SOCIALE DE SCHAERBEEK", "type": "organisation"}))
    assert published["items"][0]["id"] == 13219


def test_suggest_bad_requests(api):
    problem(api.get("/v1/suggest"), 400, "q")
    problem(api.get("/v1/suggest", params={"q": ""}), 400, "q")
    problem(api.get("/v1/suggest", params={"q": "   "}), 400, "q")
    problem(api.get("/v1/suggest", params={"q": "x" * 101}), 400, "q")
    problem(api.get("/v1/suggest", params={"q": "schaer", "type": "planet"}), 400, "type")
    problem(api.get("/v1/suggest", params={"q": "schaer", "limit": 3}), 400, "limit")


# ---------------------------------------------------------------- statistics


def test_stats_total_and_groups_equal_sql(api, loaded):
    published_in_21015 = "o.publication_state = 'published' AND o.commune_nis = '21015'"
    total = scalar(loaded, f"SELECT count(*) FROM organisation o WHERE {published_in_21015}")
    assert total > 0

    body = ok(api.get("/v1/stats", params={"group_by": "commune", "commune": "21015"}))
    assert body["group_by"] == "commune" and body["total"] == total
    assert body["items"] == [{"key": "21015", "label": {"nl": "Schaarbeek", "fr": "Schaerbeek"}, "count": total}]

    sectors = ok(api.get("/v1/stats", params={"group_by": "sector", "commune": "21015"}))
    assert sectors["total"] == total
    expected = dict(
        sql(loaded, f"""SELECT t.sector_id, count(DISTINCT o.id) FROM organisation o
                          JOIN organisation_category oc ON oc.organisation_id = o.id
                          JOIN category_tree t ON t.category_id = oc.category_id
                         WHERE {published_in_21015} GROUP BY t.sector_id""")
    )
    assert {i["key"]: i["count"] for i in sectors["items"]} == expected
    counts = [i["count"] for i in sectors["items"]]
    assert counts == sorted(counts, reverse=True)
    assert sectors["ungrouped"] == scalar(
        loaded, f"""SELECT count(*) FROM organisation o WHERE {published_in_21015} AND NOT EXISTS (
                      SELECT 1 FROM organisation_category oc JOIN category_tree t ON t.category_id = oc.category_id
                       WHERE oc.organisation_id = o.id)"""
    )

    sector_id = max(expected, key=expected.get)
    combined = ok(api.get("/v1/stats", params={"group_by": "authority", "commune": "21015", "sector": sector_id, "lang": "nl"}))
    assert combined["total"] == expected[sector_id]
    authority = dict(
        sql(loaded, f"""SELECT a.authority_id, count(DISTINCT o.id) FROM organisation o
                          JOIN organisation_accreditation oa ON oa.organisation_id = o.id
                          JOIN accreditation a ON a.id = oa.accreditation_id
                         WHERE {published_in_21015} AND a.authority_id IS NOT NULL
                           AND EXISTS (SELECT 1 FROM organisation_category oc JOIN category_tree t ON t.category_id = oc.category_id
                                        WHERE oc.organisation_id = o.id AND t.sector_id = :s)
                         GROUP BY a.authority_id""", s=sector_id)
    )
    assert {i["key"]: i["count"] for i in combined["items"]} == authority
    assert all(isinstance(i["label"], str) for i in combined["items"])


def test_stats_goes_through_the_search_core(api, loaded):
    """Same criteria, same number as the organisation search (one core: app.search.query.filters)."""
    params = {"commune": "21015", "q": "cpas"}
    stats = ok(api.get("/v1/stats", params={"group_by": "quartier", **params}))
    search = api.get("/v1/organisations", params={**params, "limit": 1}).json()
    assert stats["total"] == search["numberMatched"] > 0
    assert sum(i["count"] for i in stats["items"]) + stats["ungrouped"] == stats["total"]  # one quartier each
    no_match = ok(api.get("/v1/stats", params={"group_by": "category", "q": "xyzzyqwv"}))
    assert no_match["total"] == 0 and no_match["items"] == []


def test_stats_geojson_for_a_choropleth(api, loaded):
    body = ok(api.get("/v1/stats", params={"group_by": "commune", "f": "geojson", "commune": "21015"}), GEOJSON)
    assert_brussels_feature_collection(body)
    assert len(body["features"]) == scalar(loaded, "SELECT count(*) FROM commune")  # all, zeros included
    counts = {f["id"]: f["properties"]["count"] for f in body["features"]}
    assert counts.pop("21015") == body["total"] > 0
    assert set(counts.values()) == {0}

    quartiers = ok(api.get("/v1/stats", params={"group_by": "quartier", "f": "geojson"}), GEOJSON)
    expected = dict(
        sql(loaded, """SELECT q.code, count(o.id) FROM quartier q
                        LEFT JOIN organisation o ON o.quartier_code = q.code AND o.publication_state = 'published'
                       GROUP BY q.code""")
    )
    assert {f["id"]: f["properties"]["count"] for f in quartiers["features"]} == expected


def test_stats_bad_requests(api):
    problem(api.get("/v1/stats"), 400, "group_by")
    problem(api.get("/v1/stats", params={"group_by": "planet"}), 400, "group_by")
    problem(api.get("/v1/stats", params={"group_by": "sector", "f": "geojson"}), 400, "f")
    problem(api.get("/v1/stats", params={"group_by": "commune", "f": "csv"}), 400, "f")
    problem(api.get("/v1/stats", params={"group_by": "commune", "colour": "red"}), 400, "colour")
    problem(api.get("/v1/stats", params={"group_by": "commune", "commune": "99999"}), 400, "commune")
    problem(api.get("/v1/stats", params={"group_by": "commune", "category": 424242}), 400, "category")
    problem(api.get("/v1/stats", params={"group_by": "commune", "radius": 100}), 400, "radius")


# ---------------------------------------------------------------- errors and documentation


@pytest.mark.parametrize(
    "path",
    ["/v1/sectors", "/v1/sectors/53", "/v1/categories", "/v1/categories/291", "/v1/accreditations", "/v1/authorities",
     "/v1/action-zones", "/v1/legal-statuses", "/v1/offer-types", "/v1/languages", "/v1/communes", "/v1/quartiers",
     "/v1/statistical-sectors", "/v1/suggest?q=a", "/v1/stats?group_by=sector"],
)
def test_unknown_parameter_is_400_naming_it(api, path):
    sep = "&" if "?" in path else "?"
    body = problem(api.get(f"{path}{sep}bogus=1"), 400, "bogus")
    assert body["detail"] == "bogus: unknown parameter"


def test_openapi_documents_parameters_and_problems(api):
    spec = api.get("/openapi.json").json()
    for path in ("/v1/sectors", "/v1/sectors/{id}", "/v1/categories", "/v1/categories/{id}", "/v1/communes",
                 "/v1/suggest", "/v1/stats", "/v1/languages"):
        operation = spec["paths"][path]["get"]
        assert "application/problem+json" in operation["responses"]["400"]["content"], path
        for parameter in operation["parameters"]:
            assert parameter.get("description"), (path, parameter["name"])
    assert "application/problem+json" in spec["paths"]["/v1/sectors/{id}"]["get"]["responses"]["404"]["content"]
    stats = {p["name"]: p for p in spec["paths"]["/v1/stats"]["get"]["parameters"]}
    assert stats["group_by"]["schema"]["enum"] == ["sector", "category", "commune", "quartier", "statistical_sector", "authority"]
    assert {"commune", "category", "near", "bbox", "q"} <= set(stats)  # the search criteria, documented
    suggest = {p["name"]: p for p in spec["paths"]["/v1/suggest"]["get"]["parameters"]}
    assert suggest["q"]["required"] is True and suggest["type"]["schema"]["items"]["enum"]
    assert GEOJSON in spec["paths"]["/v1/communes"]["get"]["responses"]["200"]["content"]
