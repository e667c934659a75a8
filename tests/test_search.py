"""GET /v1/organisations: every criterion alone and combined, against SQL truth; ranking, paging,
languages, formats and the 400s."""

from __future__ import annotations

import copy
import json
import math

import pytest
from sqlalchemy import text

from app.loaders.legacy import load_organisations
from tests.conftest import LEGACY_DIR

PROBLEM = "application/problem+json"
BASE = json.loads((LEGACY_DIR / "organisation-13219.json").read_text(encoding="utf-8"))


def fixture_record(oid: int, *, fr: str | None, nl: str | None, x: float, y: float, categories=(), **extra) -> dict:
    rec = copy.deepcopy(BASE)
    rec.update(id=oid, nameOfficialFr=fr, nameOfficialNl=nl, nameAlternativeFr=[], nameAlternativeNl=[],
               activitiesFr=None, activitiesNl=None, remarkFr=None, remarkNl=None, pmRp=[],
               langStatus="FR-NL" if fr and nl else ("FR" if fr else "NL"))
    rec["address"] = dict(rec["address"], x=x, y=y, lon=None, lat=None, districtCode=None, statisticsCode=None,
                          districtFr=None, districtNl=None, statisticsNameFr=None, statisticsNameNl=None)
    rec["categoriesObject"] = [{"id": c} for c in categories]
    rec.update(extra)
    return rec


@pytest.fixture(scope="module")
def fixtures(loaded):
    """A handful of known records: names for text search, a parent/child category pair, points."""
    with loaded.connect() as conn:
        parent, child = conn.execute(
            text("SELECT parent_category_id, category_id FROM category_tree WHERE parent_category_id IS NOT NULL ORDER BY 1, 2 LIMIT 1")
        ).one()
    records = [
        fixture_record(900001, fr="CPAS DE TESTVILLE - ANTENNE NORD", nl=None, x=149000, y=170500),
        fixture_record(900002, fr=None, nl="OCMW TESTSTAD - ANTENNE ZUID", x=149200, y=170400),
        fixture_record(900003, fr="Crèche Les Hirondelles", nl="Kinderdagverblijf De Zwaluwen", x=150000, y=169000),
        fixture_record(900004, fr="Maison Témoin Parent", nl="Testhuis Ouder", x=150100, y=169100, categories=[parent]),
        fixture_record(900005, fr="Maison Témoin Enfant", nl="Testhuis Kind", x=150200, y=169200, categories=[child]),
    ]
    with loaded.begin() as conn:
        load_organisations(conn, (("fixtures", r) for r in records))
    return {"parent": parent, "child": child}


def all_items(client, params: dict, limit: int = 37, fields: str = "id") -> list[dict]:
    """Page through every result with cursors; each id must appear exactly once."""
    items: list[dict] = []
    cursor = None
    for _ in range(1000):
        query = dict(params, limit=limit, fields=fields)
        if cursor:
            query["cursor"] = cursor
        r = client.get("/v1/organisations", params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if not cursor:
            break
    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids)), "a record came twice while paging"
    assert len(ids) == body["numberMatched"]
    return items


def all_ids(client, params: dict, limit: int = 37) -> list[int]:
    return [item["id"] for item in all_items(client, params, limit)]


def truth(engine, where: str, **params) -> set[int]:
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT o.id FROM organisation o WHERE o.publication_state = 'published' AND ({where})"), params)
        return {r[0] for r in rows}


CRITERIA = [
    ({"commune": "21015"}, "o.commune_nis = '21015'"),
    ({"postcode": "1030,1000"}, "o.postcode IN (1030, 1000)"),
    ({"quartier": "87"}, "o.quartier_code = '87'"),
    ({"statistical_sector": "21015A77-"}, "o.statistical_sector_code = '21015A77-'"),
    ({"lang_status": "NL"}, "o.lang_status = 'NL'"),
    ({"legal_status": "932"}, "o.legal_status_id = 932"),
    ({"enterprise_number": "BE 0212347945"}, "'0212.347.945' = ANY(o.enterprise_numbers)"),
    ({"sector": "5"}, "EXISTS (SELECT 1 FROM organisation_category oc JOIN category_tree t ON t.category_id = oc.category_id WHERE oc.organisation_id = o.id AND t.sector_id = 5)"),
    ({"accreditation": "SELECT_ONE"}, "EXISTS (SELECT 1 FROM organisation_accreditation a WHERE a.organisation_id = o.id AND a.accreditation_id = :v)"),
    ({"authority": "SELECT_AUTH"}, "EXISTS (SELECT 1 FROM organisation_accreditation a JOIN accreditation x ON x.id = a.accreditation_id WHERE a.organisation_id = o.id AND x.authority_id = :v)"),
    ({"action_zone": "268"}, "EXISTS (SELECT 1 FROM organisation_action_zone z WHERE z.organisation_id = o.id AND z.action_zone_id = 268)"),
    ({"offer_type": "733"}, "EXISTS (SELECT 1 FROM organisation_offer_type t WHERE t.organisation_id = o.id AND t.offer_type_id = 733)"),
    ({"language": "SELECT_LANG"}, "EXISTS (SELECT 1 FROM organisation_language l WHERE l.organisation_id = o.id AND l.language_id = :v)"),
    ({"updated_since": "2000-01-01"}, "o.updated_at >= '2000-01-01'"),
    ({"bbox": "4.36,50.84,4.40,50.87"}, "ST_Intersects(o.geom, ST_Transform(ST_Segmentize(ST_MakeEnvelope(4.36,50.84,4.40,50.87,4326), 0.001), 31370))"),
    ({"bbox": "148000,169000,151000,171000", "bbox-crs": "EPSG:31370"}, "ST_Intersects(o.geom, ST_MakeEnvelope(148000,169000,151000,171000,31370))"),
    ({"within": "21015"}, "ST_Intersects((SELECT geom FROM commune WHERE nis_code = '21015'), o.geom)"),
    ({"within": "statistical_sector:21015A77-"}, "ST_Intersects((SELECT geom FROM statistical_sector WHERE code = '21015A77-'), o.geom)"),
]

PICKS = {
    "SELECT_ONE": "SELECT accreditation_id FROM organisation_accreditation GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
    "SELECT_AUTH": "SELECT x.authority_id FROM organisation_accreditation a JOIN accreditation x ON x.id = a.accreditation_id GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
    "SELECT_LANG": "SELECT language_id FROM organisation_language GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
}


@pytest.mark.parametrize(("params", "where"), CRITERIA, ids=[next(iter(p)) + "=" + next(iter(p.values())) for p, _ in CRITERIA])
def test_each_criterion_alone_matches_sql_truth(client, loaded, fixtures, params, where):
    params = dict(params)
    bind = {}
    for key, value in params.items():
        if value in PICKS:
            with loaded.connect() as conn:
                bind["v"] = conn.execute(text(PICKS[value])).scalar()
            params[key] = str(bind["v"])
    expected = truth(loaded, where, **bind)
    assert expected, f"fixture data should match {params}"
    assert set(all_ids(client, params)) == expected


def test_criteria_combine_with_and_and_or_within(client, loaded, fixtures):
    params = {"commune": "21015,21004", "lang_status": "FR-NL", "offer_type": "733"}
    expected = truth(
        loaded,
        "o.commune_nis IN ('21015', '21004') AND o.lang_status = 'FR-NL' AND EXISTS "
        "(SELECT 1 FROM organisation_offer_type t WHERE t.organisation_id = o.id AND t.offer_type_id = 733)",
    )
    assert expected
    assert set(all_ids(client, params)) == expected
    repeated = [("commune", "21015"), ("commune", "21004"), ("lang_status", "FR-NL"), ("offer_type", "733"), ("fields", "id"), ("limit", "1000")]
    assert {i["id"] for i in client.get("/v1/organisations", params=repeated).json()["items"]} == expected


def test_category_includes_descendants(client, fixtures):
    parent_ids = set(all_ids(client, {"category": fixtures["parent"]}))
    child_ids = set(all_ids(client, {"category": fixtures["child"]}))
    assert {900004, 900005} <= parent_ids
    assert 900005 in child_ids and 900004 not in child_ids


def test_category_filter_follows_an_import_that_changes_the_categories(client, loaded, fixtures):
    """category and sector filters read organisation.category_ids (migration 0008): a re-import
    that moves a record to another category must move it in the results, as the links say."""
    parent, child = fixtures["parent"], fixtures["child"]
    record = fixture_record(900006, fr="Zzyzx Catégorie mobile", nl="Zzyzx Verhuizende categorie", x=150300, y=169300,
                            categories=[child])
    near = {"near": "50.8466,4.3528", "radius": "5000"}
    for categories in ([child], [parent], []):
        record["categoriesObject"] = [{"id": c} for c in categories]
        with loaded.begin() as conn:
            load_organisations(conn, [("moves", record)])
        with loaded.connect() as conn:
            stored, linked = conn.execute(text(
                "SELECT category_ids, ARRAY(SELECT category_id FROM organisation_category WHERE organisation_id = 900006 "
                "ORDER BY 1) FROM organisation WHERE id = 900006")).one()
            sector = conn.execute(text("SELECT min(sector_id) FROM category_tree WHERE category_id = :c"), {"c": child}).scalar()
            sector_expected = conn.execute(text(
                "SELECT EXISTS (SELECT 1 FROM category_tree WHERE sector_id = :s AND category_id = ANY(:c))"),
                {"s": sector, "c": categories}).scalar()
        assert stored == linked == sorted(categories)
        in_child = 900006 in set(all_ids(client, {"category": child}))
        in_parent = 900006 in set(all_ids(client, {"category": parent}))
        in_child_near = 900006 in set(all_ids(client, {"category": child, **near}))
        in_sector = 900006 in set(all_ids(client, {"sector": sector}))
        assert in_child == in_child_near == (categories == [child])
        assert in_parent == bool(categories)  # the parent's filter includes its child
        assert in_sector == sector_expected


def test_category_subtrees_are_remembered_per_data_version(client, loaded, fixtures):
    """A search remembers the categories below the one asked for (app.search.query.subtrees), keyed
    by the data version: once the tree and the data change, the next search expands anew."""
    parent, child = fixtures["parent"], fixtures["child"]
    near = {"near": "50.8466,4.3528", "radius": "5000"}
    marker = fixture_record(900008, fr="Zzyzx Version", nl="Zzyzx Versie", x=150400, y=169400)

    def searched() -> tuple[bool, bool]:
        return (900005 in set(all_ids(client, {"category": parent})),
                900005 in set(all_ids(client, {"category": parent, **near})))

    assert searched() == (True, True)  # remembered for this version
    with loaded.begin() as conn:
        moved = conn.execute(text("UPDATE category_tree SET parent_category_id = NULL WHERE category_id = :c "
                                  "AND parent_category_id = :p RETURNING sector_id"), {"c": child, "p": parent}).scalars().all()
        load_organisations(conn, [("version", marker)])  # the data changes with the tree
    try:
        assert moved and searched() == (False, False)
    finally:
        with loaded.begin() as conn:
            conn.execute(text("UPDATE category_tree SET parent_category_id = :p WHERE category_id = :c AND sector_id = ANY(:s)"),
                         {"c": child, "p": parent, "s": moved})
            marker["nameOfficialFr"] = "Zzyzx Version 2"
            load_organisations(conn, [("version", marker)])
    assert searched() == (True, True)


def test_radius_results_within_radius_sorted_by_distance(client, loaded, fixtures):
    lat, lon, radius = 50.8466, 4.3528, 1500
    items = []
    cursor = None
    while True:
        params = {"near": f"{lat},{lon}", "radius": radius, "limit": 40, "fields": "distance_m"}
        if cursor:
            params["cursor"] = cursor
        body = client.get("/v1/organisations", params=params).json()
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            break
    distances = [i["distance_m"] for i in items]
    assert distances == sorted(distances)
    assert all(0 <= d <= radius for d in distances)
    expected = truth(
        loaded, "ST_DWithin(o.geom, ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 31370), :r)", lon=lon, lat=lat, r=radius
    )
    assert {i["id"] for i in items} == expected and len(items) == len(expected) > 5


def test_distance_pages_split_groups_of_records_at_one_address(client, loaded, fixtures):
    """Forty records at one point (a building of services) and paging by distance from there: the
    KNN walk meets groups of equal distances at the page boundaries; each record must come once,
    in (distance, id) order, with the numbers PostGIS gives."""
    x, y = 151234.0, 171234.0
    group = [fixture_record(910000 + k, fr=f"Service {k} du bâtiment", nl=None, x=x, y=y) for k in range(40)]
    near = [fixture_record(910100 + k, fr=f"Voisin {k}", nl=None, x=x + 3 * (k % 4), y=y) for k in range(12)]
    with loaded.begin() as conn:
        load_organisations(conn, [("building", r) for r in group + near])
        lon, lat = conn.execute(text("SELECT ST_X(p), ST_Y(p) FROM ST_Transform(ST_SetSRID(ST_MakePoint(:x, :y), 31370), 4326) p"),
                                {"x": x + 4, "y": y}).one()
    params = {"near": f"{lat},{lon}", "radius": 30, "sort": "distance"}
    for limit in (1, 7, 23, 39, 41):
        pages = [(round(i["distance_m"], 3), i["id"]) for i in all_items(client, params, limit, "distance_m")]
        assert pages == sorted(pages), limit
        expected = truth(loaded, "ST_DWithin(o.geom, ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 31370), 30)",
                         lon=lon, lat=lat)
        assert {i for _, i in pages} == expected and len(pages) == len(expected) >= 52, limit


def test_within_quartier_equals_point_in_polygon(client, loaded, fixtures):
    expected = truth(loaded, "ST_Contains((SELECT geom FROM quartier WHERE code = '87'), o.geom)")
    assert 13219 in expected
    assert set(all_ids(client, {"within": "quartier:87"})) == expected


def test_q_ocmw_finds_both_cpas_and_ocmw_titles(client, fixtures):
    ids = set(all_ids(client, {"q": "ocmw"}))
    assert {900001, 900002} <= ids  # the FR-only "CPAS …" and the NL-only "OCMW …"
    assert set(all_ids(client, {"q": "cpas"})) == ids


def test_q_is_accent_case_and_typo_tolerant(client, fixtures):
    for q in ("creche hirondelles", "CRÈCHE", "hirondeles", "Kinderdagverblijf zwaluwen", "crech hirondelle"):
        ids = [i["id"] for i in client.get("/v1/organisations", params={"q": q, "fields": "id", "limit": 20}).json()["items"]]
        assert 900003 in ids, q


def test_q_ranks_name_matches_first(client, fixtures):
    items = client.get("/v1/organisations", params={"q": "hirondelles", "fields": "score"}).json()["items"]
    assert items[0]["id"] == 900003
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)


@pytest.mark.parametrize("sort", ["name", "updated", "distance", "relevance"])
def test_paging_returns_every_match_once_for_each_sort(client, loaded, fixtures, sort):
    params = {"sort": sort}
    if sort == "distance":
        params["near"] = "50.85,4.37"
    if sort == "relevance":
        params["q"] = "antenne"
    ids = all_ids(client, params, limit=23)
    if sort == "relevance":  # typo tolerance may add near matches, never lose exact ones
        assert set(ids) >= truth(loaded, "o.search_text LIKE '%antenne%'")
    else:
        assert set(ids) == truth(loaded, "TRUE")


def test_paging_is_stable_under_concurrent_inserts(client, loaded, fixtures):
    first = client.get("/v1/organisations", params={"sort": "name", "limit": 50, "fields": "id"}).json()
    with loaded.begin() as conn:  # a record sorting first arrives between two pages
        load_organisations(conn, [("late", fixture_record(900099, fr="AAA Arrivée tardive", nl="AAA Late", x=150000, y=170000))])
    cursor, seen = first["next_cursor"], [i["id"] for i in first["items"]]
    while cursor:
        body = client.get("/v1/organisations", params={"sort": "name", "limit": 50, "fields": "id", "cursor": cursor}).json()
        seen += [i["id"] for i in body["items"]]
        cursor = body["next_cursor"]
    assert len(seen) == len(set(seen))
    assert 900099 not in seen  # sorted before the cursor: not served twice nor shifting the pages


def test_lang_chooses_labels_and_says_when_falling_back(client, fixtures):
    nl = client.get("/v1/organisations/900001", params={"lang": "nl"}).json()
    assert nl["name"] == "CPAS DE TESTVILLE - ANTENNE NORD"
    assert nl["lang"] == "nl" and nl["lang_fallbacks"]["name"] == "fr"
    fr = client.get("/v1/organisations/900003", headers={"Accept-Language": "fr-BE,fr;q=0.9"}).json()
    assert fr["name"] == "Crèche Les Hirondelles" and "name" not in fr["lang_fallbacks"]
    both = client.get("/v1/organisations/900003").json()
    assert both["name"] == {"nl": "Kinderdagverblijf De Zwaluwen", "fr": "Crèche Les Hirondelles"}


def test_every_result_has_its_public_url(client, fixtures):
    body = client.get("/v1/organisations", params={"limit": 5}).json()
    for item in body["items"]:
        assert item["url"] == f"http://testserver/v1/organisations/{item['id']}"
        assert client.get(item["url"]).status_code == 200


def test_geojson_is_rfc7946(client, fixtures):
    r = client.get("/v1/organisations", params={"f": "geojson", "commune": "21015", "limit": 10})
    assert r.headers["content-type"] == "application/geo+json"
    body = r.json()
    assert body["type"] == "FeatureCollection" and body["numberReturned"] == len(body["features"]) > 0
    for feature in body["features"]:
        lon, lat = feature["geometry"]["coordinates"]
        assert 4.2 < lon < 4.5 and 50.7 < lat < 50.95
        assert feature["id"] == feature["properties"]["id"]
    accept = client.get("/v1/organisations", params={"limit": 1}, headers={"Accept": "application/geo+json"})
    assert accept.headers["content-type"] == "application/geo+json"


def test_conditional_get_cache_headers_gzip_and_cors(client, fixtures):
    r = client.get("/v1/organisations", params={"limit": 30}, headers={"Accept-Encoding": "gzip", "Origin": "https://example.org"})
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["cache-control"].startswith("public")
    etag, modified = r.headers["etag"], r.headers["last-modified"]
    again = client.get("/v1/organisations", params={"limit": 30}, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    since = client.get("/v1/organisations/13219", headers={"If-Modified-Since": modified})
    assert since.status_code == 304


BAD = [
    ({"unknown": "1"}, "unknown"),
    ({"near": "50.8"}, "near"),
    ({"near": "abc,def"}, "near"),
    ({"near": "50.8,4.3", "radius": "0"}, "radius"),
    ({"near": "50.8,4.3", "radius": "-5"}, "radius"),
    ({"near": "50.8,4.3", "radius": "1000000"}, "radius"),
    ({"radius": "100"}, "radius"),
    ({"bbox": "1,2,3"}, "bbox"),
    ({"bbox": "4.4,50.8,4.3,50.9"}, "bbox"),
    ({"bbox": "4.3,50.8,4.4,50.9", "bbox-crs": "EPSG:3857"}, "bbox-crs"),
    ({"sort": "random"}, "sort"),
    ({"sort": "distance"}, "sort"),
    ({"lang": "de"}, "lang"),
    ({"f": "pdf"}, "f"),
    ({"limit": "abc"}, "limit"),
    ({"limit": "0"}, "limit"),
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"category": "abc"}, "category"),
    ({"category": "99999,1"}, "category"),
    ({"commune": "21099"}, "commune"),
    ({"lang_status": "EN"}, "lang_status"),
    ({"enterprise_number": "0212.347.946"}, "enterprise_number"),
    ({"within": "quartier:999"}, "within"),
    ({"updated_since": "yesterday"}, "updated_since"),
    ({"fields": "name,secret"}, "fields"),
]


@pytest.mark.parametrize(("params", "parameter"), BAD, ids=[f"{k}={v}" for p, _ in BAD for k, v in list(p.items())[:1]])
def test_bad_input_is_400_problem_naming_the_parameter(client, params, parameter):
    r = client.get("/v1/organisations", params=params)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == 400 and parameter in body["detail"]


def test_tampered_or_foreign_cursor_is_400(client, fixtures):
    body = client.get("/v1/organisations", params={"limit": 5}).json()
    cursor = body["next_cursor"]
    head, sig = cursor.split(".")
    tampered = head[:-2] + ("AA" if head[-2:] != "AA" else "BB") + "." + sig
    for bad_cursor, params in ((tampered, {}), (cursor, {"commune": "21015"})):
        r = client.get("/v1/organisations", params={"limit": 5, "cursor": bad_cursor, **params})
        assert r.status_code == 400 and "cursor" in r.json()["detail"]


def test_unknown_ids_are_listed(client):
    body = client.get("/v1/organisations", params={"category": "99998,99999", "sector": "5"}).json()
    assert body["unknown"] == {"category": [99998, 99999]}


def test_limit_is_clamped_not_rejected(client):
    body = client.get("/v1/organisations", params={"limit": 5000, "fields": "id"}).json()
    assert body["numberReturned"] == min(1000, body["numberMatched"])


def test_csv_and_xlsx_exports_follow_the_search(client, fixtures):
    import csv
    import io

    from openpyxl import load_workbook

    from app.serialize.tabular import COLUMNS, parse_header

    r = client.get("/v1/organisations", params={"f": "csv", "commune": "21015", "limit": 1000, "sep": ";"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig")), delimiter=";"))
    assert [parse_header(h) for h in rows[0]] == [c.key for c in COLUMNS]
    ids = {int(row[0]) for row in rows[1:]}
    assert ids == set(all_ids(client, {"commune": "21015"})) and int(r.headers["x-number-matched"]) == len(ids)
    x = client.get("/v1/organisations", params={"f": "xlsx", "commune": "21015", "limit": 1000})
    assert x.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    sheet = load_workbook(io.BytesIO(x.content)).active
    values = list(sheet.iter_rows(values_only=True))
    assert len(values) == len(ids) + 1 and {v[0] for v in values[1:]} == ids
    assert all(isinstance(v[0], int) for v in values[1:])
    assert client.get("/v1/organisations", params={"f": "csv", "sep": "|"}).status_code == 400
