"""OGC API – Features at /ogc, against SQL truth and with real clients.

In the spirit of the OGC test suite (ETS ogcapi-features-1.0 / -2 / -3): landing links,
conformance classes, the OpenAPI 3.0 document, collection metadata (extent, crs, storageCrs),
paging by next/prev links (no duplicate, nothing missing), numberMatched, CRS negotiation
(Content-Crs, EPSG:31370 coordinates equal to the stored geometry within 1 cm, EPSG:4326 in
lat/lon order), bbox-crs, datetime, CQL2 filters (text and JSON, equal to the v1 search), the
400s and 404s, HEAD. Then real clients against a real uvicorn server: GDAL (ogrinfo, ogr2ogr, a
filtered ogrinfo whose filter is pushed to the server) and OWSLib.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

PROBLEM = "application/problem+json"
GEOJSON = "application/geo+json"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG4326 = "http://www.opengis.net/def/crs/EPSG/0/4326"
EPSG31370 = "http://www.opengis.net/def/crs/EPSG/0/31370"
ITEMS = "/ogc/collections/organisations/items"
COLLECTION_IDS = ["organisations", "communes", "quartiers", "statistical-sectors", "action-zones"]
PUBLISHED = "publication_state = 'published'"
# a box over the centre of Brussels, CRS84 and Lambert 72
BOX = (4.33, 50.83, 4.39, 50.87)
L72_BOX = (148000.0, 168500.0, 152500.0, 172500.0)


def sql(engine: Engine, query: str, **params) -> list:
    with engine.connect() as conn:
        return conn.execute(text(query), params).all()


def scalar(engine: Engine, query: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(query), params).scalar()


def problem(response, status: int, parameter: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["detail"]
    if parameter is not None:
        assert body.get("parameter") == parameter, body
    return body


def geojson(response) -> dict:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == GEOJSON
    return response.json()


def rel(links: list[dict], name: str, type_: str | None = None) -> list[dict]:
    return [link for link in links if link["rel"] == name and (type_ is None or link.get("type") == type_)]


def relative(href: str) -> str:
    """A link of the TestClient's app (http://testserver/...) as a path + query."""
    parts = urlsplit(href)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def walk(api, url: str, params: dict | None = None, max_pages: int = 500) -> tuple[list, list[dict]]:
    """Follow next links from the first page; returns (all features, pages)."""
    pages: list[dict] = []
    features: list = []
    response = api.get(url, params=params)
    for _ in range(max_pages):
        page = geojson(response)
        pages.append(page)
        features += page["features"]
        assert page["numberReturned"] == len(page["features"])
        nxt = rel(page["links"], "next")
        if not nxt:
            return features, pages
        response = api.get(relative(nxt[0]["href"]))
    raise AssertionError("paging did not end")


def published_ids(engine: Engine, where: str = "true", **params) -> set[int]:
    return {r[0] for r in sql(engine, f"SELECT id FROM organisation WHERE {PUBLISHED} AND ({where})", **params)}


def ids_of(features) -> list:
    return [f["id"] for f in features]


def v1_ids(api, params: dict) -> set[int]:
    r = api.get("/v1/organisations", params={**params, "limit": 1000, "fields": "id"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["numberMatched"] == len(body["items"])
    return {item["id"] for item in body["items"]}


@pytest.fixture(scope="module")
def api(client):
    return client


@pytest.fixture(scope="module")
def busiest_sector(loaded) -> int:
    """The sector with the most published places (as v1 counts them) inside BOX."""
    return sql(loaded, f"""
        SELECT t.sector_id FROM organisation o
          JOIN organisation_category oc ON oc.organisation_id = o.id
          JOIN category_tree t ON t.category_id = oc.category_id
         WHERE o.{PUBLISHED}
           AND ST_Intersects(o.geom, ST_Transform(ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326), 31370))
         GROUP BY t.sector_id ORDER BY count(DISTINCT o.id) DESC, t.sector_id LIMIT 1
    """, x0=BOX[0], y0=BOX[1], x1=BOX[2], y1=BOX[3])[0][0]


# ---------------------------------------------------------------- capabilities


def test_landing_page_links_to_the_api_conformance_and_data(api):
    for path in ("/ogc", "/ogc/"):
        r = api.get(path)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        links = r.json()["links"]
        assert rel(links, "self")
        (desc,) = rel(links, "service-desc")
        assert desc["type"] == OPENAPI
        doc = api.get(relative(desc["href"]))
        assert doc.status_code == 200 and doc.headers["content-type"] == OPENAPI
        (service_doc,) = rel(links, "service-doc")
        assert api.get(relative(service_doc["href"])).status_code == 200
        for name in ("conformance", "data"):
            (link,) = rel(links, name)
            assert api.get(relative(link["href"])).status_code == 200
            assert rel(links, f"http://www.opengis.net/def/rel/ogc/1.0/{name}")


def test_conformance_lists_exactly_the_classes_implemented(api):
    r = api.get("/ogc/conformance")
    assert r.status_code == 200
    claimed = set(r.json()["conformsTo"])
    part1 = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/"
    part3 = "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/"
    cql2 = "http://www.opengis.net/spec/cql2/1.0/conf/"
    assert claimed == {
        part1 + "core", part1 + "geojson", part1 + "oas30",
        "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
        part3 + "queryables", part3 + "filter", part3 + "features-filter",
        *(cql2 + c for c in ("basic-cql2", "cql2-text", "cql2-json", "advanced-comparison-operators",
                             "case-insensitive-comparison", "accent-insensitive-comparison",
                             "basic-spatial-functions", "basic-spatial-functions-plus", "spatial-functions")),
    }
    # not implemented, so not claimed: HTML, temporal/array functions, queryables as query parameters
    assert not {part1 + "html", cql2 + "temporal-functions", cql2 + "array-functions",
                part3 + "queryables-query-parameters"} & claimed


def test_api_is_a_valid_openapi_3_0_document_declaring_every_parameter(api, settings):
    from openapi_spec_validator import validate

    from app.search.criteria import CRITERIA_PARAMETERS

    doc = api.get("/ogc/api").json()
    assert doc["openapi"].startswith("3.0.")
    validate(doc)
    assert doc["servers"] == [{"url": "http://testserver/ogc"}]
    components = doc["components"]["parameters"]

    def names(path: str) -> set[str]:
        out = set()
        for p in doc["paths"][path]["get"]["parameters"]:
            p = components[p["$ref"].rsplit("/", 1)[-1]] if "$ref" in p else p
            out.add(p["name"])
        return out

    standard = {"bbox", "bbox-crs", "crs", "datetime", "limit", "offset", "filter", "filter-lang", "filter-crs", "f"}
    for cid in COLLECTION_IDS:
        assert standard <= names(f"/collections/{cid}/items"), cid
        assert f"/collections/{cid}/items/{{featureId}}" in doc["paths"]
        assert f"/collections/{cid}/queryables" in doc["paths"]
    # the v1 criteria are declared on the organisations items path: GDAL pushes -where to them
    assert CRITERIA_PARAMETERS <= names("/collections/organisations/items")
    limit = components["limit"]["schema"]
    assert limit == {"type": "integer", "minimum": 1, "maximum": settings.max_limit, "default": 10}


def test_collections_metadata_extent_crs_and_storage_crs(api, loaded):
    body = api.get("/ogc/collections").json()
    assert rel(body["links"], "self")
    by_id = {c["id"]: c for c in body["collections"]}
    assert list(by_id) == COLLECTION_IDS
    for cid, coll in by_id.items():
        assert coll == api.get(f"/ogc/collections/{cid}").json()
        assert coll["itemType"] == "feature"
        assert coll["crs"] == [CRS84, EPSG4326, EPSG31370]
        assert coll["storageCrs"] == EPSG31370
        (items,) = rel(coll["links"], "items", GEOJSON)
        assert geojson(api.get(relative(items["href"])))["type"] == "FeatureCollection"
        assert rel(coll["links"], "http://www.opengis.net/def/rel/ogc/1.0/queryables")
        assert coll["extent"]["spatial"]["crs"] == CRS84
        (box,) = coll["extent"]["spatial"]["bbox"]
        table = {"organisations": f"organisation WHERE {PUBLISHED}", "communes": "commune", "quartiers": "quartier",
                 "statistical-sectors": "statistical_sector", "action-zones": "action_zone"}[cid]
        truth = sql(loaded, f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                            f"(SELECT ST_Extent(ST_Transform(geom, 4326)) e FROM {table}) s")[0]
        assert box[0] <= truth[0] and box[1] <= truth[1] and box[2] >= truth[2] and box[3] >= truth[3]  # contains all
        assert all(abs(a - b) < 1e-6 for a, b in zip(box, truth, strict=True))  # and no more
    first, last = sql(loaded, f"SELECT min(updated_at), max(updated_at) FROM organisation WHERE {PUBLISHED}")[0]
    (interval,) = by_id["organisations"]["extent"]["temporal"]["interval"]
    utc = [t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") for t in (first, last)]
    assert interval == utc
    assert "temporal" not in by_id["communes"]["extent"]


def test_queryables_are_a_json_schema(api):
    from jsonschema import Draft202012Validator

    for cid in COLLECTION_IDS:
        r = api.get(f"/ogc/collections/{cid}/queryables")
        assert r.status_code == 200 and r.headers["content-type"] == "application/schema+json"
        schema = r.json()
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["properties"]["geometry"]["x-ogc-role"] == "primary-geometry"
    props = api.get("/ogc/collections/organisations/queryables").json()["properties"]
    assert {"sector", "category", "commune", "postcode", "name_fr", "name_nl", "updated_at"} <= set(props)
    assert props["updated_at"] == {"title": "Last change of the record", "type": "string", "format": "date-time"}
    Draft202012Validator.check_schema(api.get("/ogc/collections/organisations/schema").json())


# ---------------------------------------------------------------- items, paging, numberMatched


def test_paging_by_next_and_prev_links_has_no_duplicate_and_misses_nothing(api, loaded):
    truth = published_ids(loaded)
    features, pages = walk(api, ITEMS, {"limit": 37})
    ids = ids_of(features)
    assert len(ids) == len(set(ids)) and set(ids) == truth
    assert all(page["numberMatched"] == len(truth) for page in pages)
    assert len(pages) == math.ceil(len(truth) / 37)
    for number, page in enumerate(pages):
        links = page["links"]
        (self_link,) = rel(links, "self", GEOJSON)
        assert ids_of(api.get(relative(self_link["href"])).json()["features"]) == ids_of(page["features"])
        (alternate,) = rel(links, "alternate", "application/json")
        r = api.get(relative(alternate["href"]))
        assert r.headers["content-type"] == "application/json" and ids_of(r.json()["features"]) == ids_of(page["features"])
        assert rel(links, "collection")
        assert page["timeStamp"].endswith("Z")
        prev = rel(links, "prev")
        if number == 0:
            assert not prev
        else:  # walking back gives the previous page
            assert ids_of(api.get(relative(prev[0]["href"])).json()["features"]) == ids_of(pages[number - 1]["features"])
    # the default page size is 10; a limit above the maximum is clamped, not rejected
    assert geojson(api.get(ITEMS))["numberReturned"] == 10
    big = geojson(api.get(ITEMS, params={"limit": 10**9}))
    assert big["numberReturned"] == len(truth) and not rel(big["links"], "next")
    past = geojson(api.get(ITEMS, params={"offset": 10**6}))
    assert past["features"] == [] and past["numberMatched"] == len(truth) and rel(past["links"], "prev")


def test_v1_criteria_are_plain_query_parameters_with_v1_meaning(api, loaded, busiest_sector):
    for params in ({"commune": "21015"}, {"sector": str(busiest_sector)}, {"postcode": "1000,1030"},
                   {"q": "ocmw"}, {"within": "quartier:87"}, {"sector": str(busiest_sector), "commune": "21004"}):
        features, pages = walk(api, ITEMS, {**params, "limit": 100})
        assert set(ids_of(features)) == v1_ids(api, params), params
        assert pages[0]["numberMatched"] == len(features)
    assert set(ids_of(walk(api, ITEMS, {"commune": "21015", "limit": 100})[0])) == published_ids(loaded, "commune_nis = '21015'")
    problem(api.get(ITEMS, params={"sector": "999999"}), 400, "sector")  # unknown ids: as on /v1


def test_single_feature_with_links_and_crs(api):
    r = api.get(f"{ITEMS}/13219")
    feature = geojson(r)
    assert r.headers["content-crs"] == f"<{CRS84}>"
    assert feature["type"] == "Feature" and feature["id"] == 13219
    assert feature["properties"]["postcode"] == 1030 and feature["properties"]["commune"] == "21015"
    assert feature["properties"]["url"] == "http://testserver/v1/organisations/13219"
    lon, lat = feature["geometry"]["coordinates"]
    assert abs(lon - 4.40144) < 1e-5 and abs(lat - 50.85176) < 1e-5  # field notes: ±0.5 m
    assert {link["rel"] for link in feature["links"]} >= {"self", "alternate", "collection"}
    r = api.get(f"{ITEMS}/13219", params={"crs": EPSG31370})
    assert r.headers["content-crs"] == f"<{EPSG31370}>"
    x, y = r.json()["geometry"]["coordinates"]
    assert math.hypot(x - 152302, y - 171263) < 0.01
    assert api.get(f"{ITEMS}/13219", params={"f": "json"}).headers["content-type"] == "application/json"


# ---------------------------------------------------------------- CRS (Part 2)


def test_crs_negotiation_content_crs_and_coordinates(api, loaded):
    truth = {r[0]: r[1:] for r in sql(loaded, f"""
        SELECT id, ST_X(geom), ST_Y(geom), ST_X(ST_Transform(geom, 4326)), ST_Y(ST_Transform(geom, 4326))
          FROM organisation WHERE {PUBLISHED}""")}
    for crs in (EPSG31370, "EPSG:31370", "[EPSG:31370]"):
        r = api.get(ITEMS, params={"crs": crs, "limit": 1000})
        assert r.headers["content-crs"] == f"<{EPSG31370}>"
        features = geojson(r)["features"]
        assert len(features) == len(truth)
        for feature in features:
            x, y = feature["geometry"]["coordinates"]
            assert math.hypot(x - truth[feature["id"]][0], y - truth[feature["id"]][1]) < 0.01, feature["id"]
    default = api.get(ITEMS, params={"limit": 1000})
    assert default.headers["content-crs"] == f"<{CRS84}>"
    lat_lon = api.get(ITEMS, params={"limit": 1000, "crs": EPSG4326})
    assert lat_lon.headers["content-crs"] == f"<{EPSG4326}>"
    by_id = {f["id"]: f["geometry"]["coordinates"] for f in geojson(lat_lon)["features"]}
    for feature in geojson(default)["features"]:
        lon, lat = feature["geometry"]["coordinates"]
        assert abs(lon - truth[feature["id"]][2]) < 1e-7 and abs(lat - truth[feature["id"]][3]) < 1e-7
        assert by_id[feature["id"]] == [lat, lon]  # EPSG:4326 is latitude first
    # districts too: the stored polygon's first vertex, in Lambert 72
    first = scalar(loaded, "SELECT ST_AsGeoJSON(geom, 3) FROM commune WHERE nis_code = '21015'")
    r = api.get("/ogc/collections/communes/items/21015", params={"crs": EPSG31370})
    assert r.headers["content-crs"] == f"<{EPSG31370}>"
    assert r.json()["geometry"]["coordinates"] == json.loads(first)["coordinates"]
    problem(api.get(ITEMS, params={"crs": "EPSG:3857"}), 400, "crs")
    problem(api.get(f"{ITEMS}/13219", params={"crs": "EPSG:9999"}), 400, "crs")


def test_bbox_and_bbox_crs(api, loaded):
    l72 = published_ids(loaded, "ST_Intersects(geom, ST_MakeEnvelope(:x0, :y0, :x1, :y1, 31370))",
                        x0=L72_BOX[0], y0=L72_BOX[1], x1=L72_BOX[2], y1=L72_BOX[3])
    assert 0 < len(l72) < len(published_ids(loaded))
    got = walk(api, ITEMS, {"bbox": ",".join(map(str, L72_BOX)), "bbox-crs": EPSG31370, "limit": 100})[0]
    assert set(ids_of(got)) == l72
    crs84 = set(ids_of(walk(api, ITEMS, {"bbox": ",".join(map(str, BOX)), "limit": 100})[0]))
    assert crs84 == v1_ids(api, {"bbox": ",".join(map(str, BOX))}) and crs84
    lat_lon_box = f"{BOX[1]},{BOX[0]},{BOX[3]},{BOX[2]}"  # EPSG:4326: lat,lon
    assert set(ids_of(walk(api, ITEMS, {"bbox": lat_lon_box, "bbox-crs": EPSG4326, "limit": 100})[0])) == crs84
    three_d = f"{BOX[0]},{BOX[1]},0,{BOX[2]},{BOX[3]},100"
    assert set(ids_of(walk(api, ITEMS, {"bbox": three_d, "limit": 100})[0])) == crs84
    # districts
    truth = {r[0] for r in sql(loaded, "SELECT code FROM quartier WHERE ST_Intersects(geom, ST_MakeEnvelope(:x0, :y0, :x1, :y1, 31370))",
                                 x0=L72_BOX[0], y0=L72_BOX[1], x1=L72_BOX[2], y1=L72_BOX[3])}
    quartiers = walk(api, "/ogc/collections/quartiers/items", {"bbox": ",".join(map(str, L72_BOX)), "bbox-crs": "EPSG:31370"})[0]
    assert set(ids_of(quartiers)) == truth
    # a world-wide box means everything (Lambert 72 cannot hold the world: clipped before transforming)
    everything = published_ids(loaded)
    assert geojson(api.get(ITEMS, params={"bbox": "-180,-90,180,90"}))["numberMatched"] == len(everything)
    assert filtered(api, "S_INTERSECTS(geometry, BBOX(-180, -90, 180, 90))") == everything
    assert geojson(api.get("/ogc/collections/communes/items", params={"bbox": "-180,-90,180,90"}))["numberMatched"] == 19
    assert geojson(api.get(ITEMS, params={"bbox": "100,-90,180,90"}))["numberMatched"] == 0
    problem(api.get(ITEMS, params={"bbox": "1,2,3"}), 400, "bbox")
    problem(api.get(ITEMS, params={"bbox": "a,b,c,d"}), 400, "bbox")
    problem(api.get(ITEMS, params={"bbox": "4.4,50.8,4.3,50.9"}), 400, "bbox")
    problem(api.get(ITEMS, params={"bbox": "4.3,50.8,4.4,95"}), 400, "bbox")
    problem(api.get(ITEMS, params={"bbox": "1,2,3,4", "bbox-crs": "EPSG:3857"}), 400, "bbox-crs")
    problem(api.get(ITEMS, params={"bbox-crs": EPSG31370}), 400, "bbox-crs")
    problem(api.get("/ogc/collections/communes/items", params={"bbox": "4.4,50.8,4.3,50.9"}), 400, "bbox")


def test_datetime_filters_on_updated_at(api, loaded):
    stamps = sorted({r[0] for r in sql(loaded, f"SELECT updated_at FROM organisation WHERE {PUBLISHED}")})
    at = stamps[len(stamps) // 2]
    iso = at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    day = at.astimezone(dt.UTC).date()
    cases = {
        iso: published_ids(loaded, "updated_at = :t", t=at),
        f"{iso}/..": published_ids(loaded, "updated_at >= :t", t=at),
        f"../{iso}": published_ids(loaded, "updated_at <= :t", t=at),
        day.isoformat(): published_ids(loaded, "updated_at >= CAST(:d AS timestamp) AT TIME ZONE 'UTC' "
                                       "AND updated_at < (CAST(:d AS timestamp) + interval '1 day') AT TIME ZONE 'UTC'", d=day),
        "2999-01-01/..": set(),
    }
    for value, truth in cases.items():
        features, pages = walk(api, ITEMS, {"datetime": value, "limit": 1000})
        assert set(ids_of(features)) == truth, value
        assert pages[0]["numberMatched"] == len(truth)
    for value in ("yesterday", "2024-13-01", "../..", "2025-01-01/2024-01-01", "a/b/c", ".."):
        problem(api.get(ITEMS, params={"datetime": value}), 400, "datetime")
    # a collection without time accepts (and validates) datetime
    assert geojson(api.get("/ogc/collections/communes/items", params={"datetime": "2024-01-01/.."}))["numberMatched"] == 19
    problem(api.get("/ogc/collections/communes/items", params={"datetime": "nope"}), 400, "datetime")


# ---------------------------------------------------------------- districts


def test_district_collections(api, loaded):
    counts = {
        "communes": scalar(loaded, "SELECT count(*) FROM commune"),
        "quartiers": scalar(loaded, "SELECT count(*) FROM quartier"),
        "statistical-sectors": scalar(loaded, "SELECT count(*) FROM statistical_sector WHERE geom IS NOT NULL"),
        "action-zones": scalar(loaded, "SELECT count(*) FROM action_zone WHERE geom IS NOT NULL"),
    }
    assert counts["communes"] == 19 and counts["quartiers"] == 145 and counts["statistical-sectors"] == 724
    for cid, count in counts.items():
        features, pages = walk(api, f"/ogc/collections/{cid}/items", {"limit": 200})
        assert len(features) == len(set(ids_of(features))) == count == pages[0]["numberMatched"]
        assert all(f["geometry"]["type"] in ("Polygon", "MultiPolygon") for f in features)
    commune = geojson(api.get("/ogc/collections/communes/items/21015"))
    assert commune["id"] == "21015" and commune["properties"]["name_fr"] == "Schaerbeek"
    assert commune["properties"]["organisation_count"] == scalar(
        loaded, f"SELECT count(*) FROM organisation WHERE {PUBLISHED} AND commune_nis = '21015'")
    zone = scalar(loaded, "SELECT id FROM action_zone WHERE geom IS NOT NULL ORDER BY id LIMIT 1")
    assert geojson(api.get(f"/ogc/collections/action-zones/items/{zone}"))["id"] == zone
    in_schaerbeek = geojson(api.get("/ogc/collections/statistical-sectors/items",
                                    params={"filter": "commune = '21015'", "limit": 1000}))
    assert in_schaerbeek["numberMatched"] == scalar(loaded, "SELECT count(*) FROM statistical_sector WHERE commune_nis = '21015'")


# ---------------------------------------------------------------- CQL2 (Part 3)


def _polygon_text(box) -> str:
    x0, y0, x1, y1 = box
    return f"POLYGON(({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))"


def _polygon_json(box) -> dict:
    x0, y0, x1, y1 = box
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def filtered(api, filter_: str | dict, **params) -> set:
    query = {"limit": 1000, **params}
    if isinstance(filter_, dict):
        query.update({"filter": json.dumps(filter_), "filter-lang": "cql2-json"})
    else:
        query["filter"] = filter_
    body = geojson(api.get(ITEMS, params=query))
    assert body["numberMatched"] == body["numberReturned"]
    return set(ids_of(body["features"]))


def test_cql2_filter_returns_what_the_v1_search_returns(api, busiest_sector):
    sector = busiest_sector
    expected = v1_ids(api, {"sector": sector, "bbox": ",".join(map(str, BOX))})
    assert expected
    assert filtered(api, f"sector = {sector} AND S_INTERSECTS(geometry, {_polygon_text(BOX)})") == expected
    assert filtered(api, {"op": "and", "args": [
        {"op": "=", "args": [{"property": "sector"}, sector]},
        {"op": "s_intersects", "args": [{"property": "geometry"}, _polygon_json(BOX)]},
    ]}) == expected
    assert filtered(api, {"op": "and", "args": [
        {"op": "in", "args": [{"property": "sector"}, [sector]]},
        {"op": "s_intersects", "args": [{"property": "geometry"}, {"bbox": list(BOX)}]},
    ]}) == expected
    assert filtered(api, f"sector = {sector} AND S_INTERSECTS(geometry, BBOX({', '.join(map(str, BOX))}))") == expected
    # EPSG:4326 literals are lat/lon
    lat_lon = (BOX[1], BOX[0], BOX[3], BOX[2])
    assert filtered(api, f"sector = {sector} AND S_INTERSECTS(geometry, {_polygon_text(lat_lon)})",
                    **{"filter-crs": EPSG4326}) == expected
    # filter-crs=EPSG:31370: a Lambert 72 polygon means what bbox-crs=EPSG:31370 means on v1
    expected_l72 = v1_ids(api, {"sector": sector, "bbox": ",".join(map(str, L72_BOX)), "bbox-crs": "EPSG:31370"})
    assert expected_l72
    assert filtered(api, f"sector = {sector} AND S_INTERSECTS(geometry, {_polygon_text(L72_BOX)})",
                    **{"filter-crs": EPSG31370}) == expected_l72
    assert filtered(api, {"op": "and", "args": [
        {"op": "=", "args": [{"property": "sector"}, sector]},
        {"op": "s_intersects", "args": [{"property": "geometry"}, _polygon_json(L72_BOX)]}]},
        **{"filter-crs": EPSG31370}) == expected_l72
    # a filter combines with the plain parameters (AND)
    assert filtered(api, f"S_INTERSECTS(geometry, {_polygon_text(BOX)})", sector=sector) == expected


def test_cql2_operators_against_sql(api, loaded):
    parent = sql(loaded, """SELECT parent_category_id FROM category_tree t JOIN organisation_category oc
                             ON oc.category_id = t.category_id WHERE parent_category_id IS NOT NULL
                             GROUP BY 1 ORDER BY count(*) DESC LIMIT 1""")[0][0]
    stamp = scalar(loaded, f"SELECT min(updated_at) FROM organisation WHERE {PUBLISHED}")
    number = scalar(loaded, f"SELECT enterprise_numbers[1] FROM organisation WHERE {PUBLISHED} AND cardinality(enterprise_numbers) > 0 ORDER BY id LIMIT 1")
    cases = [
        ("postcode = 1030", "postcode = 1030"),
        ("postcode <> 1030", "postcode <> 1030"),
        ("postcode IN (1000, 1030)", "postcode IN (1000, 1030)"),
        ("postcode NOT IN (1000, 1030)", "postcode NOT IN (1000, 1030)"),
        ("postcode BETWEEN 1040 AND 1080", "postcode BETWEEN 1040 AND 1080"),
        ("postcode >= 1100 OR commune = '21004'", "postcode >= 1100 OR commune_nis = '21004'"),
        ("NOT (commune = '21004')", "NOT (commune_nis = '21004')"),
        ("name_fr LIKE 'C%'", "name_official_fr LIKE 'C%'"),
        ("name_fr NOT LIKE '%E_'", "name_official_fr NOT LIKE '%E_'"),
        ("CASEI(name_fr) LIKE CASEI('%cpas%')", "lower(name_official_fr) LIKE '%cpas%'"),
        ("ACCENTI(CASEI(name_nl)) LIKE '%coordinatie%'", "unaccent(lower(name_official_nl)) LIKE '%coordinatie%'"),
        ("name_nl IS NULL", "name_official_nl IS NULL"),
        ("quartier IS NOT NULL AND lang_status = 'FR-NL'", "quartier_code IS NOT NULL AND lang_status = 'FR-NL'"),
        ("is_interpreting = TRUE", "is_interpreting"),
        (f"updated_at > TIMESTAMP('{stamp.isoformat()}')", f"updated_at > '{stamp.isoformat()}'"),
        (f"T_AFTER(updated_at, TIMESTAMP('{stamp.isoformat()}'))", f"updated_at > '{stamp.isoformat()}'"),
        (f"updated_at T_BEFORE TIMESTAMP('{stamp.isoformat()}')", f"updated_at < '{stamp.isoformat()}'"),
        ("T_INTERSECTS(updated_at, INTERVAL('2000-01-01T00:00:00Z', '2999-01-01T00:00:00Z'))", "true"),
        ("S_DWITHIN(geometry, POINT(4.3528 50.8466), 1000)",
         "ST_DWithin(geom, ST_Transform(ST_SetSRID(ST_MakePoint(4.3528, 50.8466), 4326), 31370), 1000)"),
        ("S_WITHIN(geometry, POLYGON((4.33 50.83, 4.39 50.83, 4.39 50.87, 4.33 50.87, 4.33 50.83)))",
         "ST_Within(geom, ST_Transform(ST_Segmentize(ST_MakeEnvelope(4.33, 50.83, 4.39, 50.87, 4326), 0.001), 31370))"),
        ("S_DISJOINT(geometry, BBOX(4.33, 50.83, 4.39, 50.87))",
         "ST_Disjoint(geom, ST_Transform(ST_Segmentize(ST_MakeEnvelope(4.33, 50.83, 4.39, 50.87, 4326), 0.001), 31370))"),
        ("S_INTERSECTS(geometry, SRID=31370;POLYGON((148000 168500, 152500 168500, 152500 172500, 148000 172500, 148000 168500)))",
         "ST_Intersects(geom, ST_MakeEnvelope(148000, 168500, 152500, 172500, 31370))"),
        (f"enterprise_number = '{number}'", f"'{number}' = ANY(enterprise_numbers)"),
        ("name_fr = 'l''ami'", "name_official_fr = 'l''ami'"),
        ("INCLUDE", "true"),
    ]
    for cql, where in cases:
        assert filtered(api, cql) == published_ids(loaded, where), cql
    # category means what v1 category= means: the category and every category below it
    assert filtered(api, f"category = {parent}") == v1_ids(api, {"category": parent})
    assert filtered(api, f"category IN ({parent}) AND NOT (sector <> 53)") == v1_ids(api, {"category": parent, "sector": 53})
    # cql2-json forms
    json_cases = [
        ({"op": "between", "args": [{"property": "postcode"}, 1040, 1080]}, "postcode BETWEEN 1040 AND 1080"),
        ({"op": "like", "args": [{"op": "casei", "args": [{"property": "name_fr"}]}, {"op": "casei", "args": ["%cpas%"]}]},
         "lower(name_official_fr) LIKE '%cpas%'"),
        ({"op": "t_after", "args": [{"property": "updated_at"}, {"timestamp": stamp.isoformat()}]},
         f"updated_at > '{stamp.isoformat()}'"),
        ({"op": "isNull", "args": [{"property": "name_nl"}]}, "name_official_nl IS NULL"),
        ({"op": "not", "args": [{"op": "in", "args": [{"property": "commune"}, ["21004", "21015"]]}]},
         "NOT (commune_nis IN ('21004', '21015'))"),
        ({"op": "s_dwithin", "args": [{"property": "geometry"}, {"type": "Point", "coordinates": [4.3528, 50.8466]}, 500]},
         "ST_DWithin(geom, ST_Transform(ST_SetSRID(ST_MakePoint(4.3528, 50.8466), 4326), 31370), 500)"),
    ]
    for cql, where in json_cases:
        assert filtered(api, cql) == published_ids(loaded, where), cql


@pytest.mark.parametrize(("value", "lang"), [
    ("nope = 1", "cql2-text"),  # unknown queryable
    ("postcode = 'x'", "cql2-text"),  # type mismatch
    ("sector > 3", "cql2-text"),  # link queryables take =, <>, IN
    ("sector = 'x'", "cql2-text"),
    ("postcode + 1 = 2", "cql2-text"),  # arithmetic
    ("geometry = 1", "cql2-text"),
    ("name_fr LIKE 'abc\\'", "cql2-text"),  # lone escape at the end
    ("S_INTERSECTS(geometry, POLYGON((0 0, 1 1, 1 0, 0 1, 0 0)))", "cql2-text"),  # self-intersecting
    ("S_INTERSECTS(geometry, POINT(50.85 400))", "cql2-text"),  # latitude out of range
    ("S_INTERSECTS(geometry, POINT(1e999 1))", "cql2-text"),
    ("S_DWITHIN(geometry, POINT(4.35 50.85), -1)", "cql2-text"),
    ("S_INTERSECTS(geometry, SRID=3857;POINT(1 2))", "cql2-text"),
    ("T_AFTER(updated_at, TIMESTAMP('2024-13-45T00:00:00Z'))", "cql2-text"),
    ("T_MEETS(updated_at, INTERVAL('2020-01-01T00:00:00Z', '2021-01-01T00:00:00Z'))", "cql2-text"),
    ("FOO(name_fr) = 'x'", "cql2-text"),
    ("postcode = 99999999999999999999999", "cql2-text"),
    (json.dumps({"op": "=", "args": [{"property": "name_fr"}, "a\u0000"]}), "cql2-json"),
    ("name_fr = 'a\x00'", "cql2-text"),
    ("NOT (" * 60 + "postcode = 1" + ")" * 60, "cql2-text"),  # too deep
    (" OR ".join(["postcode = 1"] * 300), "cql2-text"),  # too large
    ("postcode = 1" * 2000, "cql2-text"),  # too long
    ("{", "cql2-json"),
    ('{"op": "=", "args": [{"property": "postcode"}, NaN]}', "cql2-json"),
    (json.dumps({"op": "=", "args": [{"property": "postcode"}, "1030"]}), "cql2-json"),
    (json.dumps({"op": "s_intersects", "args": [{"property": "geometry"}, {"type": "Polygon", "coordinates": "x"}]}), "cql2-json"),
    (json.dumps({"op": "a_contains", "args": [{"property": "sector"}, [1]]}), "cql2-json"),
    ("[" * 2000 + "]" * 2000, "cql2-json"),
    ("", "cql2-text"),
])
def test_bad_filters_are_400_naming_filter(api, value, lang):
    problem(api.get(ITEMS, params={"filter": value, "filter-lang": lang}), 400, "filter")


def test_bad_filter_parameters(api):
    problem(api.get(ITEMS, params={"filter": "postcode = 1030", "filter-lang": "cql-text"}), 400, "filter-lang")
    problem(api.get("/ogc/collections/quartiers/items", params={"filter-lang": ""}), 400, "filter-lang")  # found by fuzzing
    problem(api.get(ITEMS, params={"filter": "postcode = 1030", "filter-crs": "EPSG:3857"}), 400, "filter-crs")
    problem(api.get(ITEMS, params={"filter": ["postcode = 1030", "postcode = 1000"]}), 400, "filter")
    problem(api.get("/ogc/collections/communes/items", params={"filter": "sector = 53"}), 400, "filter")


# ---------------------------------------------------------------- 400, 404, HEAD


def test_unknown_or_malformed_parameters_are_400(api):
    for path, params, parameter in [
        (ITEMS, {"foo": "1"}, "foo"),
        (ITEMS, {"limit": "0"}, "limit"),
        (ITEMS, {"limit": "ten"}, "limit"),
        (ITEMS, {"limit": "-5"}, "limit"),
        (ITEMS, {"offset": "-1"}, "offset"),
        (ITEMS, {"f": "html"}, "f"),
        (ITEMS, {"lang": "fr"}, "lang"),
        (ITEMS, {"commune": "1000"}, "commune"),
        ("/ogc/collections/communes/items", {"sector": "53"}, "sector"),
        ("/ogc/collections/communes/items", {"limit": "x"}, "limit"),
        (f"{ITEMS}/13219", {"limit": "5"}, "limit"),
        ("/ogc", {"foo": "1"}, "foo"),
        ("/ogc/conformance", {"f": "html"}, "f"),
        ("/ogc/collections", {"bbox": "1,2,3,4"}, "bbox"),
        ("/ogc/collections/organisations", {"x": "1"}, "x"),
        ("/ogc/collections/organisations/queryables", {"x": "1"}, "x"),
        ("/ogc/api", {"x": "1"}, "x"),
    ]:
        problem(api.get(path, params=params), 400, parameter)


def test_unknown_collections_and_features_are_404(api, loaded):
    unpublished = scalar(loaded, "SELECT id FROM organisation WHERE publication_state <> 'published' ORDER BY id LIMIT 1")
    for path in ("/ogc/collections/nope", "/ogc/collections/nope/items", "/ogc/collections/nope/items/1",
                 "/ogc/collections/nope/queryables", f"{ITEMS}/999999", f"{ITEMS}/abc", f"{ITEMS}/99999999999999",
                 *([f"{ITEMS}/{unpublished}"] if unpublished else []),
                 "/ogc/collections/communes/items/99999", "/ogc/collections/action-zones/items/x",
                 "/ogc/collections/organisations/items/13219/more"):
        problem(api.get(path), 404)


def test_head_is_supported_on_every_get(api):
    for path in ("/ogc", "/ogc/", "/ogc/conformance", "/ogc/api", "/ogc/collections", "/ogc/collections/organisations",
                 ITEMS, f"{ITEMS}?limit=3&crs={EPSG31370}", f"{ITEMS}/13219", "/ogc/collections/organisations/queryables",
                 "/ogc/collections/communes/items", "/ogc/collections/communes/items/21015"):
        get, head = api.get(path), api.head(path)
        assert head.status_code == 200 == get.status_code, path
        assert head.content == b""
        assert head.headers["content-type"] == get.headers["content-type"]
        assert head.headers.get("content-crs") == get.headers.get("content-crs")
    assert api.head("/ogc/collections/nope").status_code == 404
    assert api.head(f"{ITEMS}?foo=1").status_code == 400


# ---------------------------------------------------------------- never a 5xx


_FILTER_TEXTS = st.one_of(
    st.text(max_size=200),
    st.text(alphabet="()',=<>%_ \\-.0123456789abcdefgpostcdeTRUEANDORNOTLIKEINS_INTERSECTSPOINT", max_size=120),
)
_QUERYABLES = ["postcode", "commune", "name_fr", "sector", "category", "updated_at", "geometry", "is_interpreting",
               "enterprise_number", "nope"]
_LITERALS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str), st.floats(allow_nan=False).map(repr),
    st.text(max_size=10).map(lambda s: "'" + s.replace("'", "''") + "'"), st.sampled_from(
        ["TRUE", "DATE('2020-01-01')", "TIMESTAMP('2020-01-01T00:00:00Z')", "POINT(4.35 50.85)",
         "POLYGON((4.3 50.8, 4.4 50.8, 4.4 50.9, 4.3 50.8))", "BBOX(4.3,50.8,4.4,50.9)", "POINT(1e300 1)",
         "INTERVAL('2020-01-01T00:00:00Z','2019-01-01T00:00:00Z')", "'%'", "'\\'"]),
)


@st.composite
def _cql2_texts(draw, depth: int = 0) -> str:
    kind = draw(st.integers(0, 5 if depth < 3 else 2))
    prop, lit = draw(st.sampled_from(_QUERYABLES)), draw(_LITERALS)
    if kind == 0:
        return f"{prop} {draw(st.sampled_from(['=', '<>', '<', '>=', 'LIKE', 'NOT LIKE']))} {lit}"
    if kind == 1:
        return f"{prop} IN ({lit}, {draw(_LITERALS)})"
    if kind == 2:
        fn = draw(st.sampled_from(["S_INTERSECTS", "S_WITHIN", "S_CONTAINS", "S_DISJOINT", "T_AFTER", "T_DURING", "S_DWITHIN"]))
        extra = f", {draw(_LITERALS)}" if fn == "S_DWITHIN" else ""
        return f"{fn}({prop}, {lit}{extra})"
    if kind == 3:
        return f"NOT ({draw(_cql2_texts(depth + 1))})"
    op = draw(st.sampled_from(["AND", "OR"]))
    return f"({draw(_cql2_texts(depth + 1))}) {op} ({draw(_cql2_texts(depth + 1))})"


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_FILTER_TEXTS, lang=st.sampled_from(["cql2-text", "cql2-json"]))
def test_random_filters_never_give_a_server_error(api, value, lang):
    r = api.get(ITEMS, params={"filter": value, "filter-lang": lang, "limit": 1})
    assert r.status_code in (200, 400), (value, r.text)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_cql2_texts(), crs=st.sampled_from([CRS84, EPSG4326, EPSG31370]))
def test_random_well_formed_filters_never_give_a_server_error(api, value, crs):
    r = api.get(ITEMS, params={"filter": value, "filter-crs": crs, "limit": 1})
    assert r.status_code in (200, 400), (value, r.text)
    r = api.get("/ogc/collections/quartiers/items", params={"filter": value, "limit": 1})
    assert r.status_code in (200, 400), (value, r.text)


@hsettings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bbox=st.text(max_size=60), datetime_=st.text(max_size=40), crs=st.text(max_size=40), limit=st.text(max_size=8),
       feature_id=st.text(min_size=1, max_size=12))
def test_random_parameters_never_give_a_server_error(api, bbox, datetime_, crs, limit, feature_id):
    for params in ({"bbox": bbox}, {"datetime": datetime_}, {"crs": crs}, {"bbox": "1,2,3,4", "bbox-crs": crs},
                   {"limit": limit}, {"offset": limit}):
        for path in (ITEMS, "/ogc/collections/quartiers/items"):
            r = api.get(path, params=params)
            assert r.status_code in (200, 400), (path, params, r.text)
    for cid in ("organisations", "action-zones", "communes"):
        r = api.get(f"/ogc/collections/{cid}/items/{quote(feature_id, safe='')}")
        assert r.status_code in (200, 400, 404), (feature_id, r.text)  # 400: the edge refuses NUL in paths


# ---------------------------------------------------------------- real clients against a real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live(settings, loaded) -> Iterator[str]:
    """The application served by uvicorn on a free port (links use the request's own host)."""
    import uvicorn

    from app.main import create_app

    app = create_app(settings.model_copy(update={"public_base_url": None}))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/ogc"
    finally:
        server.should_exit = True
        thread.join(10)


GDAL = pytest.mark.skipif(shutil.which("ogrinfo") is None or shutil.which("ogr2ogr") is None,
                          reason="GDAL command line tools (Debian gdal-bin) are not installed")


def gdal(*args: str, debug: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "CPL_DEBUG": "ON" if debug else "OFF", "GDAL_HTTP_TIMEOUT": "60", "NO_PROXY": "127.0.0.1"}
    run = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


@GDAL
def test_ogrinfo_reports_the_exact_feature_count_and_extent(live, loaded):
    out = gdal("ogrinfo", "-ro", "-so", f"OAPIF:{live}", "organisations").stdout
    count = len(published_ids(loaded))
    assert f"Feature Count: {count}\n" in out, out
    extent = sql(loaded, f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                         f"(SELECT ST_Extent(ST_Transform(geom, 4326)) e FROM organisation WHERE {PUBLISHED}) s")[0]
    line = next(line for line in out.splitlines() if line.startswith("Extent: "))
    numbers = [float(v) for v in line.replace("Extent: ", "").replace("(", "").replace(")", "").replace(" - ", ",").split(",")]
    assert all(abs(a - b) < 2e-6 for a, b in zip(numbers, extent, strict=True)), (line, extent)
    listing = gdal("ogrinfo", "-ro", "-q", f"OAPIF:{live}").stdout
    for cid in COLLECTION_IDS:
        assert cid in listing


@GDAL
def test_ogr2ogr_to_geopackage_in_lambert72_matches_the_database(live, loaded, tmp_path):
    target = tmp_path / "organisations.gpkg"
    started = time.perf_counter()
    gdal("ogr2ogr", "-f", "GPKG", str(target), f"OAPIF:{live}", "organisations", "-t_srs", "EPSG:31370",
         "-preserve_fid", "-oo", "PAGE_SIZE=1000")
    elapsed = time.perf_counter() - started
    rows = gdal("ogr2ogr", "-f", "CSV", "/vsistdout/", str(target), "-sql",
                "SELECT fid + 0 AS oid, postcode, geom FROM organisations", "-lco", "GEOMETRY=AS_XY").stdout
    got = {int(r["oid"]): (float(r["X"]), float(r["Y"]), r["postcode"]) for r in csv.DictReader(io.StringIO(rows))}
    truth = {r[0]: r[1:] for r in sql(loaded, f"SELECT id, ST_X(geom), ST_Y(geom), postcode FROM organisation WHERE {PUBLISHED}")}
    assert set(got) == set(truth)
    worst = max(math.hypot(got[i][0] - truth[i][0], got[i][1] - truth[i][1]) for i in truth)
    assert worst < 0.01, worst  # 1 cm
    assert all(got[i][2] == ("" if truth[i][2] is None else str(truth[i][2])) for i in truth)
    print(f"ogr2ogr of {len(truth)} features: {elapsed:.1f} s, worst coordinate error {worst * 1000:.2f} mm")


@GDAL
def test_filtered_ogrinfo_pushes_the_filter_to_the_server(live, loaded):
    run = gdal("ogrinfo", "-ro", "-so", "-oo", "PAGE_SIZE=1000", f"OAPIF:{live}", "organisations",
               "-where", "commune = '21015'", debug=True)
    in_schaerbeek = published_ids(loaded, "commune_nis = '21015'")
    assert f"Feature Count: {len(in_schaerbeek)}\n" in run.stdout, run.stdout
    fetched = [line for line in run.stderr.splitlines() if "Fetch(" in line and "/items?" in line]
    assert any("commune=21015" in line for line in fetched), fetched  # evaluated by the server, not the client
    x0, y0, x1, y1 = BOX
    run = gdal("ogrinfo", "-ro", "-so", "-oo", "PAGE_SIZE=1000", f"OAPIF:{live}", "organisations",
               "-spat", str(x0), str(y0), str(x1), str(y1), debug=True)
    inside = published_ids(loaded, "ST_Intersects(geom, ST_Transform(ST_Segmentize(ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326), 0.001), 31370))",
                           x0=x0, y0=y0, x1=x1, y1=y1)
    assert f"Feature Count: {len(inside)}\n" in run.stdout, run.stdout
    assert any("bbox=" in line for line in run.stderr.splitlines() if "Fetch(" in line)
    # a comparison on a date-time field becomes datetime= (GDAL writes the date as 2000-01-01T)
    run = gdal("ogrinfo", "-ro", "-so", "-oo", "PAGE_SIZE=1000", f"OAPIF:{live}", "organisations",
               "-where", "updated_at > '2000-01-01'", debug=True)
    assert f"Feature Count: {len(published_ids(loaded))}\n" in run.stdout, run.stdout
    assert any("datetime=2000-01-01T%2F.." in line for line in run.stderr.splitlines() if "Fetch(" in line)


def test_owslib_lists_collections_and_reads_items(live, loaded):
    from owslib.ogcapi.features import Features

    service = Features(live + "/")
    assert set(service.feature_collections()) == set(COLLECTION_IDS)
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in service.conformance()["conformsTo"]
    assert service.api()["openapi"].startswith("3.0")
    page = service.collection_items("organisations", limit=5)
    assert page["numberMatched"] == len(published_ids(loaded)) and len(page["features"]) == 5
    filtered_page = service.collection_items("organisations", limit=1000, filter="commune = '21015'")
    assert {f["id"] for f in filtered_page["features"]} == published_ids(loaded, "commune_nis = '21015'")
    boxed = service.collection_items("organisations", bbox=list(BOX), limit=1000)
    assert boxed["numberMatched"] == len(boxed["features"]) > 0
    assert service.collection_item("organisations", "13219")["id"] == 13219
    assert "sector" in service.collection_queryables("organisations")["properties"]
    communes = service.collection_items("communes", limit=100)
    assert communes["numberMatched"] == 19
    assert parse_qs(urlsplit(rel(page["links"], "next")[0]["href"]).query)["offset"] == ["5"]
