"""OGC API – Features (Part 1 Core + GeoJSON + OpenAPI 3.0, Part 2 CRS, Part 3 CQL2 filtering) at /ogc.

Organisation items are the v1 search: the v1 criteria as plain query parameters (declared per
collection in /ogc/api, so GDAL pushes ``-where commune = '21015'`` down), the CQL2 filter compiled
to extra conditions, ``offset`` paging, the same ``search`` + ``fetch_records``. Every GET answers
HEAD; any unknown parameter, bad bbox/datetime/filter/crs is a 400 problem+json naming it; an
unknown collection or feature is a 404. Not in the main (3.1) OpenAPI document: /ogc/api is its own
OpenAPI 3.0 document.
"""

from __future__ import annotations

import re
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import HTMLResponse, Response

from ..deps import read_connection, settings
from ..errors import NotFound
from ..http import base_url, data_version
from ..search import documents
from ..search.cql2 import (
    FILTER_LANGS,
    box_geometry,
    clip_to_window,
    compile_filter,
    during,
    intersects,
    parse_filter,
)
from ..search.criteria import (
    CRITERIA_PARAMETERS,
    CRS84_URI,
    OGC_CRSS,
    OgcCrs,
    bad,
    number,
    parse_criteria,
    parse_datetime_interval,
    parse_ogc_crs,
)
from ..search.query import check_references
from ..search.query import search as run_search
from ..serialize import ogc as shape
from ..settings import Settings
from .v1 import multi, page_url, reject_unknown

router = APIRouter(prefix="/ogc", tags=["ogc"], include_in_schema=False)

GET = ["GET", "HEAD"]
Connection = Annotated[AsyncConnection, Depends(read_connection)]
Config = Annotated[Settings, Depends(settings)]
DEFAULT_LIMIT = 10
_DIGITS = re.compile(r"[0-9]{1,12}")  # ASCII only: str.isdigit() accepts '²'
ITEM_PARAMETERS = frozenset(
    {"bbox", "bbox-crs", "crs", "datetime", "limit", "offset", "filter", "filter-lang", "filter-crs", "f"}
)


def _json(body: dict, media_type: str = shape.JSON, headers: dict | None = None, base: str | None = None) -> Response:
    """``base``: the body holds stored documents, whose URLs get the public base written in."""
    content = orjson.dumps(body)
    return Response(documents.with_base(content, base) if base else content, media_type=media_type, headers=headers)


def _one(params: dict, name: str) -> str | None:
    values = params.get(name) or []
    if len(values) > 1:
        raise bad(name, "give this parameter once")
    return values[0] if values else None


def _metadata_params(request: Request) -> dict:
    """Metadata documents take only ``f=json``."""
    params = multi(request)
    reject_unknown(params, {"f"})
    fmt = _one(params, "f")
    if fmt is not None and fmt != "json":
        raise bad("f", "only json is available here")
    return params


def _items_format(request: Request, params: dict) -> str:
    fmt = _one(params, "f")
    if fmt is not None:
        if fmt not in ("geojson", "json"):
            raise bad("f", "must be geojson or json")
        return shape.GEOJSON if fmt == "geojson" else shape.JSON
    accept = request.headers.get("accept", "")
    if shape.JSON in accept and shape.GEOJSON not in accept:
        return shape.JSON
    return shape.GEOJSON


def _collection(collection_id: str) -> shape.Collection:
    found = shape.COLLECTIONS.get(collection_id)
    if found is None:
        raise NotFound(f"no collection {collection_id!r}; see /ogc/collections")
    return found


def _crs(params: dict, name: str) -> OgcCrs:
    value = _one(params, name)
    return parse_ogc_crs(name, value) if value is not None else OGC_CRSS[CRS84_URI]


def _content_crs(crs: OgcCrs) -> dict:
    return {"Content-Crs": f"<{crs.uri}>"}


def _limit(params: dict, cfg: Settings) -> int:
    value = _one(params, "limit")
    if value is None:
        return DEFAULT_LIMIT
    if not _DIGITS.fullmatch(value.strip()):
        raise bad("limit", f"{value!r} is not a positive integer")
    if int(value) < 1:
        raise bad("limit", "must be at least 1")
    return min(int(value), cfg.max_limit)  # clamped, not rejected


def _offset(params: dict) -> int:
    value = _one(params, "offset")
    if value is None:
        return 0
    if not _DIGITS.fullmatch(value.strip()):
        raise bad("offset", f"{value!r} is not a non-negative integer")
    return int(value)


def _bbox(params: dict) -> tuple[tuple[float, float, float, float], OgcCrs] | None:
    """``bbox`` (4 or 6 numbers; a 3D box loses its heights) in ``bbox-crs`` → (lon/lat or
    Lambert 72 box, CRS); EPSG:4326 boxes are lat/lon and are turned around here."""
    text = _one(params, "bbox")
    crs = _crs(params, "bbox-crs")
    if text is None:
        if _one(params, "bbox-crs") is not None:
            raise bad("bbox-crs", "bbox-crs needs bbox")
        return None
    parts = [number("bbox", p.strip()) for p in text.split(",")]
    if len(parts) == 6:
        parts = [parts[0], parts[1], parts[3], parts[4]]
    if len(parts) != 4:
        raise bad("bbox", "expected four (or six) numbers minx,miny,maxx,maxy")
    x0, y0, x1, y1 = parts
    if crs.lat_lon:
        x0, y0, x1, y1 = y0, x0, y1, x1
    if crs.srid == 4326 and -180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90:
        x0, y0, x1, y1 = clip_to_window(x0, y0, x1, y1)  # a world-wide box cannot go to Lambert 72 as such
    return (x0, y0, x1, y1), crs


async def _filter(params: dict, conn: AsyncConnection, coll: shape.Collection):
    lang = _one(params, "filter-lang")
    lang = "cql2-text" if lang is None else lang  # given but empty is not "absent"
    if lang not in FILTER_LANGS:
        raise bad("filter-lang", f"must be one of {', '.join(FILTER_LANGS)}")
    crs = _crs(params, "filter-crs")
    text = _one(params, "filter")
    if text is None:
        return None
    node = parse_filter(text, lang)
    return await compile_filter(conn, node, coll.queryables, crs)


def _links(request: Request, cfg: Settings, params: dict, fmt: str, offset: int, limit: int, returned: int,
           matched: int, collection_id: str) -> list[dict]:
    other = shape.JSON if fmt == shape.GEOJSON else shape.GEOJSON
    f_of = {shape.GEOJSON: "geojson", shape.JSON: "json"}
    base = base_url(request)
    links = [
        shape.link(page_url(request, cfg, params), "self", fmt, "This page"),
        shape.link(page_url(request, cfg, params, f=f_of[other]), "alternate", other, "This page as " + f_of[other]),
        shape.link(f"{base}/ogc/collections/{collection_id}", "collection", shape.JSON, "The collection"),
    ]
    if offset + returned < matched:
        links.append(shape.link(page_url(request, cfg, params, offset=str(offset + limit)), "next", fmt, "Next page"))
    if offset > 0:
        links.append(shape.link(page_url(request, cfg, params, offset=str(max(0, offset - limit))), "prev", fmt, "Previous page"))
    return links


def _time_conditions(params: dict, coll: shape.Collection) -> list:
    value = _one(params, "datetime")
    if value is None:
        return []
    start, end = parse_datetime_interval("datetime", value)  # validated for every collection
    if not coll.temporal:
        return []  # no temporal property: every feature qualifies
    return during(coll.queryables[coll.temporal].column, start, end)


# ---------------------------------------------------------------- capabilities


@router.api_route("", methods=GET)
@router.api_route("/", methods=GET)
async def ogc_landing(request: Request) -> Response:
    _metadata_params(request)
    return _json(shape.landing(base_url(request)))


@router.api_route("/conformance", methods=GET)
async def ogc_conformance(request: Request) -> Response:
    _metadata_params(request)
    return _json(shape.conformance())


@router.api_route("/api", methods=GET)
async def ogc_api(request: Request, cfg: Config) -> Response:
    _metadata_params(request)
    return _json(shape.openapi(base_url(request), DEFAULT_LIMIT, cfg.max_limit), media_type=shape.OPENAPI)


@router.api_route("/api.html", methods=GET)
async def ogc_api_html(request: Request) -> HTMLResponse:
    reject_unknown(multi(request), set())
    return get_swagger_ui_html(
        openapi_url=f"{base_url(request)}/ogc/api",
        title="Bruso — OGC API Features",
        swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/static/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/static/swagger-ui/favicon-32x32.png",
    )


@router.api_route("/collections", methods=GET)
async def ogc_collections(request: Request, conn: Connection) -> Response:
    _metadata_params(request)
    base = base_url(request)
    docs = [shape.collection(base, coll, await shape.extent(conn, coll)) for coll in shape.COLLECTIONS.values()]
    return _json(shape.collections(base, docs))


@router.api_route("/collections/{collection_id}", methods=GET)
async def ogc_collection(request: Request, collection_id: str, conn: Connection) -> Response:
    coll = _collection(collection_id)
    _metadata_params(request)
    return _json(shape.collection(base_url(request), coll, await shape.extent(conn, coll)))


@router.api_route("/collections/{collection_id}/queryables", methods=GET)
async def ogc_queryables(request: Request, collection_id: str) -> Response:
    coll = _collection(collection_id)
    _metadata_params(request)
    return _json(shape.queryables(base_url(request), coll), media_type=shape.SCHEMA)


@router.api_route("/collections/{collection_id}/schema", methods=GET)
async def ogc_schema(request: Request, collection_id: str) -> Response:
    coll = _collection(collection_id)
    _metadata_params(request)
    return _json(shape.feature_schema(base_url(request), coll), media_type=shape.SCHEMA)


# ---------------------------------------------------------------- features


@router.api_route("/collections/{collection_id}/items", methods=GET)
async def ogc_items(
    request: Request,
    collection_id: str,
    conn: Connection,
    cfg: Config,
) -> Response:
    coll = _collection(collection_id)
    params = multi(request)
    if coll.id == "organisations":
        reject_unknown(params, CRITERIA_PARAMETERS | ITEM_PARAMETERS)
    else:
        reject_unknown(params, ITEM_PARAMETERS)
    fmt = _items_format(request, params)
    crs = _crs(params, "crs")
    limit, offset = _limit(params, cfg), _offset(params)
    box = _bbox(params)
    extra = _time_conditions(params, coll)
    condition = await _filter(params, conn, coll)
    if condition is not None:
        extra.append(condition)
    base = base_url(request)

    if coll.id == "organisations":
        criteria_params = {k: v for k, v in params.items() if k in CRITERIA_PARAMETERS and k not in ("bbox", "bbox-crs")}
        if box is not None:
            (x0, y0, x1, y1), bbox_crs = box
            criteria_params["bbox"] = [f"{x0!r},{y0!r},{x1!r},{y1!r}"]
            criteria_params["bbox-crs"] = ["EPSG:31370" if bbox_crs.srid == 31370 else "CRS84"]
        criteria = parse_criteria(criteria_params, cfg.max_radius_m)
        await check_references(conn, criteria)
        page = await run_search(
            conn, criteria, sort=None, limit=limit, cursor=None, lang="fr", secret=cfg.cursor_secret,
            offset=offset, extra=extra, version=await data_version(request),
        )
        stored = await documents.texts(conn, page.ids, "ogc", shape.organisation_geometry(crs))
        features = [shape.stored_feature(i, *stored[i]) for i in page.ids if i in stored]
        matched = page.number_matched
    else:
        conds = list(extra)
        if box is not None:
            (x0, y0, x1, y1), bbox_crs = box
            plain = OGC_CRSS[CRS84_URI] if bbox_crs.srid == 4326 else bbox_crs  # _bbox made it lon/lat
            conds.append(intersects(coll.queryables, box_geometry(x0, y0, x1, y1, plain)))
        features, matched = await shape.district_page(conn, coll, conds, crs, limit, offset)

    links = _links(request, cfg, params, fmt, offset, limit, len(features), matched, coll.id)
    body = shape.feature_collection(features, matched=matched, links=links)
    return _json(body, media_type=fmt, headers=_content_crs(crs), base=base)


@router.api_route("/collections/{collection_id}/items/{feature_id}", methods=GET)
async def ogc_item(
    request: Request,
    collection_id: str,
    feature_id: str,
    conn: Connection,
) -> Response:
    coll = _collection(collection_id)
    params = multi(request)
    reject_unknown(params, {"crs", "f"})
    fmt = _items_format(request, params)
    crs = _crs(params, "crs")
    base = base_url(request)
    feature = None
    if coll.id == "organisations":
        if re.fullmatch(r"[0-9]{1,10}", feature_id) and int(feature_id) < 2**31:
            fid = int(feature_id)
            stored = await documents.texts(conn, [fid], "ogc", shape.organisation_geometry(crs))
            if stored:
                feature = shape.stored_feature(fid, *stored[fid])
    else:
        feature = await shape.district_feature(conn, coll, feature_id, crs)
    if feature is None:
        raise NotFound(f"no feature {feature_id!r} in {coll.id}")
    root = f"{base}/ogc/collections/{coll.id}"
    other = shape.JSON if fmt == shape.GEOJSON else shape.GEOJSON
    feature["links"] = [
        shape.link(f"{root}/items/{feature['id']}" + ("?f=json" if fmt == shape.JSON else ""), "self", fmt, "This feature"),
        shape.link(f"{root}/items/{feature['id']}?f=" + ("json" if other == shape.JSON else "geojson"), "alternate", other),
        shape.link(root, "collection", shape.JSON, "The collection"),
    ]
    return _json(feature, media_type=fmt, headers=_content_crs(crs), base=base)

