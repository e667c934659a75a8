"""The native API, version 1: the reference data around the activity places.

Sectors and their category tree, categories (with search), accreditations, authorities, action
zones, legal statuses, offer types, languages, districts (JSON or GeoJSON), suggestions for a
search box and statistics over any search. All SQL lives in ``app.search.reference``; statistics
filter organisations through the one search core (``app.search.query.filters``).

Bilingual by default; ``lang=nl|fr`` (else ``Accept-Language``) turns each label into a string, and
an object whose label came from the other language says so (``fallback_lang``, ``fallback_fields``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from ..deps import read_connection, settings
from ..errors import BadRequest, NotFound
from ..http import base_url
from ..search import reference as ref
from ..search.criteria import CRITERIA_PARAMETERS, int_list, parse_criteria, split
from ..search.query import check_references
from ..serialize import reference as shape
from ..settings import Settings
from .v1 import SEARCH_PARAMETERS

router = APIRouter(prefix="/v1", tags=["v1 reference"])

CACHE_CONTROL = "public, max-age=300"
JSON = "application/json"
GEOJSON = "application/geo+json"
_PROBLEM = {"content": {"application/problem+json": {}}}  # schema: Problem (app/openapi.py)
R400 = {400: {"description": "Bad request: an unknown parameter or a bad value (named in the problem)", **_PROBLEM}}
R404 = {404: {"description": "No such id", **_PROBLEM}}
R503 = {503: {"description": "Database unavailable or query too slow; retry later", **_PROBLEM}}
GEO_200 = {200: {"description": "JSON list, or a GeoJSON FeatureCollection with f=geojson", "content": {GEOJSON: {}}}}

Connection = Annotated[AsyncConnection, Depends(read_connection)]
Config = Annotated[Settings, Depends(settings)]
Lang = Annotated[
    Literal["nl", "fr"] | None,
    Query(
        description="Label language: every {nl, fr} label becomes a string in this language (the other "
        "language's value when missing, flagged by fallback_lang/fallback_fields on the object). "
        "Absent: the Accept-Language header decides; neither: bilingual labels.",
        examples=["nl"],
    ),
]
Format = Annotated[
    Literal["json", "geojson"] | None,
    Query(description="Output format: json (default) or geojson (RFC 7946 FeatureCollection, application/geo+json, WGS84)", examples=["geojson"]),
]


# ---------------------------------------------------------------- request helpers


def _params(request: Request, allowed: set[str] | frozenset[str]) -> dict[str, list[str]]:
    """The query string as a multi-dict; an unknown parameter is a 400 naming it."""
    params = {key: request.query_params.getlist(key) for key in request.query_params}
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise BadRequest(f"{unknown[0]}: unknown parameter", parameter=unknown[0], unknown=unknown)
    return params


def _one(params: dict, name: str) -> str | None:
    values = params.get(name) or []
    if len(values) > 1:
        raise BadRequest(f"{name}: give this parameter once", parameter=name)
    return values[0] if values else None


def _accept_language(header: str) -> str | None:
    """The nl/fr language with the highest q-value in Accept-Language (first wins on ties)."""
    best, best_q = None, 0.0
    for part in header.split(","):
        code, *attrs = (p.strip() for p in part.split(";"))
        weight = 1.0
        for attr in attrs:
            if attr.startswith("q="):
                try:
                    weight = float(attr[2:])
                except ValueError:
                    weight = 0.0
        base = code.lower().split("-")[0]
        if base in shape.LANGS and weight > best_q:
            best, best_q = base, weight
    return best


def _lang(request: Request, params: dict) -> str | None:
    value = _one(params, "lang")
    if value is not None:
        if value not in shape.LANGS:
            raise BadRequest("lang: must be nl or fr", parameter="lang")
        return value
    return _accept_language(request.headers.get("accept-language", ""))


def _format(params: dict) -> str:
    value = _one(params, "f")
    if value is None:
        return "json"
    if value not in ("json", "geojson"):
        raise BadRequest("f: must be json or geojson", parameter="f")
    return value


def _respond(body: dict, lang: str | None, media_type: str = JSON) -> Response:
    return Response(
        orjson.dumps(shape.in_language(body, lang)),
        media_type=media_type,
        headers={"Cache-Control": CACHE_CONTROL, "Vary": "Accept-Language"},
    )


def _listing(items: list, lang: str | None) -> Response:
    return _respond({"items": items, "count": len(items)}, lang)


# ---------------------------------------------------------------- sectors


@router.get(
    "/sectors",
    summary="The sectors of the social map, in display order, with their published organisation counts",
    responses={**R400, **R503},
)
async def sectors(request: Request, conn: Connection, cfg: Config, lang: Lang = None) -> Response:
    params = _params(request, {"lang"})
    language = _lang(request, params)
    rows = await ref.sectors(conn)
    return _listing([shape.sector(r, base_url(request)) for r in rows], language)


@router.get(
    "/sectors/{id}",
    summary="One sector with its category tree (counts include the categories below each node)",
    description="`children` nest the categories of the sector's tree (`category_tree`). Each node's "
    "`organisation_count` counts published organisations linked to it or to any category below it in "
    "this sector's tree, each once. `inferred` marks placements Bruso derived itself; `tree_inferred` "
    "is true when every placement of the sector is inferred.",
    responses={**R400, **R404, **R503},
)
async def sector(
    request: Request,
    id: Annotated[int, Path(description="Sector id (legacy, public)", ge=1, le=2**31 - 1, examples=[53])],
    conn: Connection,
    cfg: Config,
    lang: Lang = None,
) -> Response:
    params = _params(request, {"lang"})
    language = _lang(request, params)
    rows = await ref.sectors(conn, id)
    if not rows:
        raise NotFound(f"no sector with id {id}")
    doc = shape.sector(rows[0], base_url(request))
    doc["children"] = shape.category_tree(await ref.sector_tree(conn, id))
    return _respond(doc, language)


# ---------------------------------------------------------------- categories

CATEGORIES_DEFAULT_LIMIT = 100
CATEGORIES_MAX_LIMIT = 1000


@router.get(
    "/categories",
    summary="Categories, optionally searched (titles and keywords, NL and FR, typo-tolerant) and by sector",
    description="`organisation_count` counts published organisations linked to the category or to a "
    "category below it in any sector's tree: what a search with `category=<id>` finds.",
    responses={**R400, **R503},
)
async def categories(
    request: Request,
    conn: Connection,
    cfg: Config,
    q: Annotated[
        str | None,
        Query(description="Words to find in titles and keywords in both languages; accent- and case-insensitive, "
              "tolerates typos; best match first", max_length=200, examples=["maison medicale"]),
    ] = None,
    sector: Annotated[
        list[str] | None,
        Query(description="Only categories placed in these sectors (ids; repeat or comma-separate: OR)", examples=["53"]),
    ] = None,
    limit: Annotated[
        int | None,
        Query(description=f"At most this many categories (default {CATEGORIES_DEFAULT_LIMIT}, clamped at {CATEGORIES_MAX_LIMIT})", ge=1, examples=[100]),
    ] = None,
    lang: Lang = None,
) -> Response:
    params = _params(request, {"q", "sector", "limit", "lang"})
    language = _lang(request, params)
    text = _one(params, "q")
    text = text.strip() if text is not None else None
    if text is not None and len(text) > 200:
        raise BadRequest("q: at most 200 characters", parameter="q")
    sector_ids = int_list("sector", params.get("sector") or [])
    if sector_ids:
        missing = sorted(set(sector_ids) - await ref.existing_sectors(conn, sector_ids))
        if missing:
            raise BadRequest(f"sector: unknown {', '.join(map(str, missing))}", parameter="sector", unknown=missing)
    raw_limit = _one(params, "limit")
    size = CATEGORIES_DEFAULT_LIMIT
    if raw_limit is not None:
        if not raw_limit.isascii() or not raw_limit.strip().isdigit() or int(raw_limit) < 1:
            raise BadRequest(f"limit: {raw_limit!r} is not a positive integer", parameter="limit")
        size = min(int(raw_limit), CATEGORIES_MAX_LIMIT)
    rows = await ref.categories(conn, q=text or None, sectors=sector_ids, limit=size)
    return _listing([shape.category(r, base_url(request)) for r in rows], language)


@router.get(
    "/categories/{id}",
    summary="One category with its urls and its place in each sector's tree",
    description="`sector_paths` lists every sector the category sits in, with `path`: the category ids "
    "from the top of that sector's tree down to this category.",
    responses={**R400, **R404, **R503},
)
async def category(
    request: Request,
    id: Annotated[int, Path(description="Category id (legacy, public)", ge=1, le=2**31 - 1, examples=[489])],
    conn: Connection,
    cfg: Config,
    lang: Lang = None,
) -> Response:
    params = _params(request, {"lang"})
    language = _lang(request, params)
    rows = await ref.categories(conn, category_id=id, limit=1)
    if not rows:
        raise NotFound(f"no category with id {id}")
    doc = shape.category_detail(rows[0], await ref.category_paths(conn, id), base_url(request))
    return _respond(doc, language)


# ---------------------------------------------------------------- lookup lists


@router.get("/accreditations", summary="Accreditations with their accrediting authority", responses={**R400, **R503})
async def accreditations(request: Request, conn: Connection, lang: Lang = None) -> Response:
    language = _lang(request, _params(request, {"lang"}))
    return _listing([shape.accreditation(r) for r in await ref.accreditations(conn)], language)


@router.get("/authorities", summary="Accrediting authorities with their number of accreditations", responses={**R400, **R503})
async def authorities(request: Request, conn: Connection, lang: Lang = None) -> Response:
    language = _lang(request, _params(request, {"lang"}))
    return _listing([shape.authority(r) for r in await ref.authorities(conn)], language)


@router.get(
    "/action-zones",
    summary="Action zones: where services act (region, communes, commune parts, quartiers)",
    responses={**R400, **R503},
)
async def action_zones(request: Request, conn: Connection, lang: Lang = None) -> Response:
    language = _lang(request, _params(request, {"lang"}))
    return _listing([shape.action_zone(r) for r in await ref.action_zones(conn)], language)


@router.get("/legal-statuses", summary="Legal statuses of organisations", responses={**R400, **R503})
async def legal_statuses(request: Request, conn: Connection, lang: Lang = None) -> Response:
    language = _lang(request, _params(request, {"lang"}))
    return _listing([shape.labelled(r, "label") for r in await ref.lookup(conn, "legal_status")], language)


@router.get("/offer-types", summary="Types of offer", responses={**R400, **R503})
async def offer_types(request: Request, conn: Connection, lang: Lang = None) -> Response:
    language = _lang(request, _params(request, {"lang"}))
    return _listing([shape.labelled(r, "label") for r in await ref.lookup(conn, "offer_type")], language)


@router.get("/languages", summary="Languages in which services can be offered", responses={**R400, **R503})
async def languages(request: Request, conn: Connection, lang: Lang = None) -> Response:
    language = _lang(request, _params(request, {"lang"}))
    return _listing([shape.labelled(r, "name") for r in await ref.lookup(conn, "language")], language)


# ---------------------------------------------------------------- districts


async def _districts(request: Request, conn: AsyncConnection, kind: str) -> Response:
    params = _params(request, {"lang", "f"})
    language = _lang(request, params)
    fmt = _format(params)
    rows = await ref.districts(conn, kind, geometry=fmt == "geojson")
    if fmt == "geojson":
        features = [shape.feature(r["code"], r["geometry"], shape.district(r, kind)) for r in rows]
        return _respond(shape.feature_collection(features), language, GEOJSON)
    return _listing([shape.district(r, kind) for r in rows], language)


@router.get(
    "/communes",
    summary="The 19 communes (NIS code, names, area) with their published organisation counts",
    responses={**GEO_200, **R400, **R503},
)
async def communes(request: Request, conn: Connection, lang: Lang = None, f: Format = None) -> Response:
    return await _districts(request, conn, "commune")


@router.get(
    "/quartiers",
    summary="The monitoring quartiers (code, names, area) with their published organisation counts",
    responses={**GEO_200, **R400, **R503},
)
async def quartiers(request: Request, conn: Connection, lang: Lang = None, f: Format = None) -> Response:
    return await _districts(request, conn, "quartier")


@router.get(
    "/statistical-sectors",
    summary="The statistical sectors (code, names, commune, quartier) with their published organisation counts",
    responses={**GEO_200, **R400, **R503},
)
async def statistical_sectors(request: Request, conn: Connection, lang: Lang = None, f: Format = None) -> Response:
    return await _districts(request, conn, "statistical_sector")


# ---------------------------------------------------------------- suggestions

SUGGEST_LIMIT = 10


@router.get(
    "/suggest",
    summary="Up to 10 suggestions for a search box: streets, communes, quartiers, categories, organisations",
    description="Matches Dutch and French names, accent- and case-insensitive: names starting with q first, "
    "then names with a word starting with q, then close words (trigram similarity, for typos). "
    "Only published organisations. `score` is in [0, 1], best first.",
    responses={**R400, **R503},
)
async def suggest(
    request: Request,
    conn: Connection,
    q: Annotated[str, Query(description="What the user typed (1 to 100 characters)", min_length=1, max_length=100, examples=["schaer"])],
    # a plain list of strings (OpenAPI: array of the enum) so that comma lists pass; values checked below
    type: Annotated[
        list[str],  # noqa: RUF013 - None means "every type"; not Optional, to keep the documented array schema
        Query(
            description="Only these kinds (repeat or comma-separate); default all: " + ", ".join(ref.SUGGEST_TYPES),
            examples=[["commune", "street"]],
            json_schema_extra={"items": {"type": "string", "enum": list(ref.SUGGEST_TYPES)}},
        ),
    ] = None,
    lang: Lang = None,
) -> Response:
    params = _params(request, {"q", "type", "lang"})
    language = _lang(request, params)
    text = (_one(params, "q") or "").strip()
    if not text:
        raise BadRequest("q: required, 1 to 100 characters", parameter="q")
    if len(text) > 100:
        raise BadRequest("q: at most 100 characters", parameter="q")
    types = split(params.get("type") or [])
    if "type" in params and not types:
        raise BadRequest(f"type: empty; use {', '.join(ref.SUGGEST_TYPES)} (or leave type out for every type)", parameter="type")
    unknown = [t for t in types if t not in ref.SUGGEST_TYPES]
    if unknown:
        raise BadRequest(f"type: unknown {', '.join(unknown)}; use {', '.join(ref.SUGGEST_TYPES)}", parameter="type")
    rows = await ref.suggest(conn, text, types or ref.SUGGEST_TYPES, SUGGEST_LIMIT)
    return _listing([shape.suggestion(r) for r in rows], language)


# ---------------------------------------------------------------- statistics

STATS_PARAMETERS = CRITERIA_PARAMETERS | {"group_by", "lang", "f"}


@router.get(
    "/stats",
    summary="How many published organisations match a search, per sector, category, district or authority",
    description="Takes every search criterion of `/v1/organisations` (same meaning, same errors). `total` "
    "is the number of matching organisations; an organisation counts in every group it belongs to "
    "(several sectors, categories or authorities), so group counts may add up to more; `ungrouped` is the "
    "number of matching organisations in no group. Categories count direct links. With `f=geojson` "
    "(districts only) every district polygon is returned with `count` (0 where none), for a choropleth.",
    responses={**GEO_200, **R400, **R503},
    openapi_extra={"parameters": SEARCH_PARAMETERS},
)
async def stats(
    request: Request,
    conn: Connection,
    cfg: Config,
    group_by: Annotated[
        Literal["sector", "category", "commune", "quartier", "statistical_sector", "authority"],
        Query(description="What to count per", examples=["commune"]),
    ],
    lang: Lang = None,
    f: Format = None,
) -> Response:
    params = _params(request, STATS_PARAMETERS)
    language = _lang(request, params)
    fmt = _format(params)
    grouping = _one(params, "group_by")
    if grouping not in ref.GROUP_BY:
        raise BadRequest(f"group_by: must be one of {', '.join(ref.GROUP_BY)}", parameter="group_by")
    if fmt == "geojson" and grouping not in ref.GEO_GROUPS:
        raise BadRequest(f"f: geojson needs group_by={'|'.join(ref.GEO_GROUPS)}", parameter="f")
    criteria = parse_criteria(params, cfg.max_radius_m)
    await check_references(conn, criteria)
    result = await ref.stats(conn, criteria, grouping, geometry=fmt == "geojson")
    summary = {"group_by": grouping, "total": result["total"], "ungrouped": result["total"] - result["grouped"]}
    if fmt == "geojson":
        features = [shape.feature(r["key"], r["geometry"], shape.stat(r)) for r in result["rows"]]
        return _respond(shape.feature_collection(features, **summary), language, GEOJSON)
    items = [shape.stat(r) for r in result["rows"]]
    return _respond({"group_by": grouping, "items": items, "count": len(items), **summary}, language)
