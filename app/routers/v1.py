"""The native API, version 1: search and read activity places."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlencode

import anyio
import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from .. import schemas, search
from ..deps import read_connection, settings
from ..errors import BadRequest, NotFound
from ..http import base_url, data_version
from ..search.criteria import CRITERIA_PARAMETERS, SORTS, Criteria, bad, parse_criteria, parse_datetime
from ..search import changes as feed
from ..search import documents
from ..search.query import check_references
from ..search.query import search as run_search
from ..serialize import geojson, tabular
from ..serialize import v1 as shape
from ..settings import Settings

router = APIRouter(prefix="/v1", tags=["v1"])

PROBLEM = {"content": {"application/problem+json": {}}}  # schema: Problem (app/openapi.py)
PROBLEM_RESPONSES = {
    400: {"description": "Bad request: a parameter is unknown or malformed (problem+json names it)", **PROBLEM},
    404: {"description": "Not found", **PROBLEM},
    503: {"description": "Database unavailable or query too slow; retry later", **PROBLEM},
}
FORMATS = {
    "json": "application/json",
    "geojson": "application/geo+json",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
OUTPUT_PARAMETERS = {"lang", "f", "fields", "sort", "limit", "cursor", "sep"}


def multi(request: Request) -> dict[str, list[str]]:
    params = request.query_params
    return {key: params.getlist(key) for key in params.keys()}


def reject_unknown(params: dict, allowed: set[str] | frozenset[str]) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise BadRequest(
            f"{unknown[0]}: unknown parameter" + (f" (also {', '.join(unknown[1:])})" if unknown[1:] else ""),
            parameter=unknown[0],
            unknown=unknown,
        )


def choose_lang(request: Request, params: dict) -> str | None:
    """``lang`` wins; else the first of nl/fr in Accept-Language; else None (bilingual)."""
    values = params.get("lang") or []
    if values:
        if len(values) > 1 or values[0] not in shape.LANGS:
            raise bad("lang", "must be nl or fr")
        return values[0]
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in shape.LANGS:
            return code
    return None


def choose_format(request: Request, params: dict, allowed: tuple[str, ...]) -> str:
    values = params.get("f") or []
    if values:
        if len(values) > 1 or values[0] not in allowed:
            raise bad("f", f"must be one of {', '.join(allowed)}")
        return values[0]
    accept = request.headers.get("accept", "")
    for fmt in allowed:
        if FORMATS[fmt].split(";")[0] in accept:
            return fmt
    return "json"


def parse_limit(params: dict, cfg: Settings) -> int:
    values = params.get("limit") or []
    if not values:
        return cfg.default_limit
    if len(values) > 1 or not values[0].strip().lstrip("+").isdecimal() or not values[0].isascii():
        raise bad("limit", f"{values[-1]!r} is not a positive integer")
    value = int(values[0])
    if value < 1:
        raise bad("limit", "must be at least 1")
    return min(value, cfg.max_limit)  # clamped, not rejected


async def search_parameters(  # async: no thread hop per request
    q: Annotated[str | None, Query(description="Free text over NL+FR names, alternative names, activities, category titles and keywords; accent-, case- and typo-tolerant", examples=["ocmw"], max_length=200)] = None,
    sector: Annotated[list[str] | None, Query(description="Sector ids (repeat or comma-separate: OR)", examples=["53"])] = None,
    category: Annotated[list[str] | None, Query(description="Category ids; includes every category below them in the tree", examples=["489"])] = None,
    accreditation: Annotated[list[str] | None, Query(description="Accreditation ids")] = None,
    authority: Annotated[list[str] | None, Query(description="Accrediting authority ids")] = None,
    commune: Annotated[list[str] | None, Query(description="Commune NIS codes", examples=["21015"])] = None,
    postcode: Annotated[list[str] | None, Query(description="Postcodes", examples=["1030"])] = None,
    quartier: Annotated[list[str] | None, Query(description="Monitoring-quartier codes", examples=["87"])] = None,
    statistical_sector: Annotated[list[str] | None, Query(description="Statistical sector codes", examples=["21015A77-"])] = None,
    action_zone: Annotated[list[str] | None, Query(description="Action zone ids")] = None,
    offer_type: Annotated[list[str] | None, Query(description="Offer type ids")] = None,
    language: Annotated[list[str] | None, Query(description="Offered language ids")] = None,
    lang_status: Annotated[list[str] | None, Query(description="Language status: FR, NL or FR-NL")] = None,
    legal_status: Annotated[list[str] | None, Query(description="Legal status ids")] = None,
    enterprise_number: Annotated[list[str] | None, Query(description="BCE/KBO enterprise numbers", examples=["0212.347.945"])] = None,
    near: Annotated[str | None, Query(description="lat,lon in WGS84; sorts by distance by default", examples=["50.8466,4.3528"])] = None,
    radius: Annotated[str | None, Query(description="Radius in metres around near (0 < radius ≤ the configured maximum)", examples=["1000"])] = None,
    bbox: Annotated[str | None, Query(description="minLon,minLat,maxLon,maxLat (CRS84), or Lambert 72 metres with bbox-crs", examples=["4.35,50.84,4.37,50.86"])] = None,
    bbox_crs: Annotated[str | None, Query(alias="bbox-crs", description="CRS of bbox: CRS84 (default) or EPSG:31370")] = None,
    within: Annotated[list[str] | None, Query(description="Inside a commune (NIS), quartier or statistical sector polygon; prefix kind: to be explicit", examples=["quartier:87"])] = None,
    updated_since: Annotated[str | None, Query(description="Only records changed since this ISO 8601 date or date-time")] = None,
) -> None:
    """Declares the search criteria for the OpenAPI document; parsing is done by parse_criteria."""


def documented_parameters(dependency) -> list[dict]:
    """The OpenAPI parameter objects FastAPI generates for ``dependency``'s query parameters, made
    once. The search surfaces parse the criteria themselves (``parse_criteria``: one meaning, one
    error for every surface), so the routes list these through ``openapi_extra`` instead of
    depending on ``dependency``: FastAPI would otherwise validate all 22 of them, present or not, on
    every request (1.3 ms of the 10 ms of Python a radius search costs at 1M records)."""
    from fastapi import FastAPI

    probe = FastAPI()

    @probe.get("/", dependencies=[Depends(dependency)])
    async def probe_route() -> None: ...

    return probe.openapi()["paths"]["/"]["get"]["parameters"]


SEARCH_PARAMETERS = documented_parameters(search_parameters)


async def criteria_from(request: Request, conn: AsyncConnection, cfg: Settings, extra: set[str]) -> tuple[Criteria, dict]:
    params = multi(request)
    reject_unknown(params, CRITERIA_PARAMETERS | extra)
    criteria = parse_criteria(params, cfg.max_radius_m)
    await check_references(conn, criteria)
    return criteria, params


def page_url(request: Request, cfg: Settings, params: dict, **override) -> str:
    merged = {k: v for k, v in params.items() if k not in override}
    for key, value in override.items():
        if value is not None:
            merged[key] = [value]
    query = f"?{urlencode(merged, doseq=True)}" if merged else ""
    return f"{base_url(request)}{request.url.path}{query}"


def _item(text: str, page, id: int, language: str | None, wanted: list[str] | None):
    """One stored v1 document as served: relayed as is (bilingual, all fields), or parsed to add
    ``distance_m``/``score``, localise (``lang``) or select ``fields``."""
    extra = {}
    if page is not None and page.distances:
        extra["distance_m"] = round(page.distances[id], 1)
    if page is not None and page.scores:
        extra["score"] = page.scores[id]
    if language is None and not wanted:
        if not extra:
            return orjson.Fragment(text)
        return orjson.Fragment(text[:-1] + "," + orjson.dumps(extra).decode()[1:])
    doc = orjson.loads(text)
    doc.update(extra)
    return select_fields(shape.in_language(doc, language), wanted)


def select_fields(doc: dict, fields: list[str] | None) -> dict:
    if not fields:
        return doc
    return {k: doc[k] for k in ("id", *fields) if k in doc}


def parse_fields(params: dict) -> list[str] | None:
    from ..serialize.v1 import ORGANISATION_FIELDS

    values = [f.strip() for v in params.get("fields") or [] for f in v.split(",") if f.strip()]
    unknown = [f for f in values if f not in ORGANISATION_FIELDS]
    if unknown:
        raise bad("fields", f"unknown field(s) {', '.join(unknown)}; known: {', '.join(ORGANISATION_FIELDS)}")
    return values or None


@router.get(
    "/organisations",
    summary="Search published activity places by any combination of criteria",
    responses={
        200: {
            "model": schemas.OrganisationPage,
            "description": "A page of matching activity places (GeoJSON, CSV and XLSX with f= or Accept)",
            "content": {k: {} for k in FORMATS.values() if k != "application/json"},
        },
        **PROBLEM_RESPONSES,
    },
    openapi_extra={"parameters": SEARCH_PARAMETERS},
)
async def search_organisations(
    request: Request,
    conn: Annotated[AsyncConnection, Depends(read_connection)],
    cfg: Annotated[Settings, Depends(settings)],
    sort: Annotated[Literal["relevance", "name", "distance", "updated"] | None, Query(description="relevance (default with q), distance (default with near), name (default), updated")] = None,
    limit: Annotated[str | None, Query(description="Page size, default 50, clamped at 1000", examples=["50"])] = None,
    cursor: Annotated[str | None, Query(description="Opaque cursor from the previous page's next link")] = None,
    lang: Annotated[Literal["nl", "fr"] | None, Query(description="Label language; else Accept-Language; else bilingual")] = None,
    f: Annotated[Literal["json", "geojson", "csv", "xlsx"] | None, Query(description="Output format (else Accept)")] = None,
    fields: Annotated[str | None, Query(description="Comma-separated top-level fields to return (id always)", examples=["name,address"])] = None,
) -> Response:
    criteria, params = await criteria_from(request, conn, cfg, OUTPUT_PARAMETERS)
    sort_values = params.get("sort") or []
    if sort_values and (len(sort_values) > 1 or sort_values[0] not in SORTS):
        raise bad("sort", f"must be one of {', '.join(SORTS)}")
    language = choose_lang(request, params)
    fmt = choose_format(request, params, tuple(FORMATS))
    wanted = parse_fields(params)
    page = await run_search(
        conn, criteria, sort=sort_values[0] if sort_values else None, limit=parse_limit(params, cfg),
        cursor=(params.get("cursor") or [None])[0], lang=language or "fr", secret=cfg.cursor_secret,
        version=await data_version(request),
    )
    next_url = page_url(request, cfg, params, cursor=page.next_cursor) if page.next_cursor else None
    links = {"self": page_url(request, cfg, params), "next": next_url}
    headers = {"Link": f'<{next_url}>; rel="next"'} if next_url else {}
    if fmt == "json":  # relayed from the stored documents (app/search/documents.py)
        stored = await documents.texts(conn, page.ids, "v1")
        items = [_item(stored[i][0], page, i, language, wanted) for i in page.ids if i in stored]
        body = {"items": items, "numberMatched": page.number_matched, "numberReturned": len(items), "links": links,
                "next_cursor": page.next_cursor}
        return Response(documents.with_base(orjson.dumps(body), base_url(request)), media_type="application/json",
                        headers=headers)
    rows = {r["id"]: r for r in await search.fetch_records(conn, page.ids)}
    ordered = [rows[i] for i in page.ids if i in rows]
    docs = []
    for row in ordered:
        doc = shape.organisation(row, base_url(request))
        if page.distances:
            doc["distance_m"] = round(page.distances[row["id"]], 1)
        if page.scores:
            doc["score"] = page.scores[row["id"]]
        docs.append(select_fields(shape.in_language(doc, language), wanted))
    if fmt == "geojson":
        body = geojson.feature_collection(
            (geojson.feature(row, doc) for row, doc in zip(ordered, docs)),
            number_matched=page.number_matched,
            number_returned=len(docs),
            links=[{"rel": rel, "href": href, "type": FORMATS["geojson"]} for rel, href in links.items() if href],
        )
        return Response(orjson.dumps(body), media_type=FORMATS["geojson"], headers=headers)
    if fmt in ("csv", "xlsx"):
        if fmt == "csv":
            sep = (params.get("sep") or [","])[0]
            if sep not in (",", ";"):
                raise bad("sep", "must be , or ;")
            body_bytes = await anyio.to_thread.run_sync(lambda: b"".join(tabular.csv_chunks(ordered, sep=sep)))
        else:  # off the event loop: a 1,000-row workbook takes about a second
            body_bytes = await anyio.to_thread.run_sync(tabular.xlsx_bytes, ordered)
        headers["Content-Disposition"] = f'attachment; filename="organisations.{fmt}"'
        headers["X-Number-Matched"] = str(page.number_matched)
        return Response(body_bytes, media_type=FORMATS[fmt], headers=headers)


@router.get(
    "/organisations/{id}",
    summary="One activity place, bilingual, with its full record and address",
    responses={
        200: {"model": schemas.Organisation, "description": "The activity place"},
        410: {"description": "Deleted, or merged into another record (the problem names the successor and a Link rel=successor-version points to it)", **PROBLEM},
        **PROBLEM_RESPONSES,
    },
)
async def get_organisation(
    request: Request,
    id: Annotated[int, Path(description="Legacy id of the activity place (stable, public)", ge=1, le=2**31 - 1)],
    conn: Annotated[AsyncConnection, Depends(read_connection)],
    cfg: Annotated[Settings, Depends(settings)],
    lang: Annotated[Literal["nl", "fr"] | None, Query(description="Label language; else Accept-Language; else bilingual")] = None,
    fields: Annotated[str | None, Query(description="Comma-separated top-level fields to return (id always)")] = None,
) -> Response:
    params = multi(request)
    reject_unknown(params, {"lang", "fields"})
    language, wanted = choose_lang(request, params), parse_fields(params)
    stored = await documents.texts(conn, [id], "v1")
    if not stored:
        await feed.raise_missing(conn, id, lambda successor: f"{base_url(request)}/v1/organisations/{successor}")
    text = stored[id][0]
    body = text.encode() if language is None and not wanted else orjson.dumps(_item(text, None, id, language, wanted))
    return Response(documents.with_base(body, base_url(request)), media_type="application/json")


@router.get(
    "/changes",
    summary="Change feed: created, updated and deleted activity places in commit order, for synchronisation",
    responses={200: {"model": schemas.ChangePage, "description": "A page of events and the token for the next page"}, **PROBLEM_RESPONSES},
)
async def list_changes(
    request: Request,
    conn: Annotated[AsyncConnection, Depends(read_connection)],
    cfg: Annotated[Settings, Depends(settings)],
    since: Annotated[str | None, Query(description="An ISO 8601 date-time (events at or after it) or the `next` token of the previous page; absent: from the beginning", examples=["2026-01-01T00:00:00Z"])] = None,
    limit: Annotated[str | None, Query(description="Events per page, default 50, clamped at 1000")] = None,
) -> Response:
    """Sync by id: start with ``since=<date-time>`` (or nothing), apply each event (fetch
    ``href`` for created/updated, drop the id for deleted), then call ``next`` until ``events`` is
    empty; keep the last ``next`` token for tomorrow. Tokens never skip or repeat an event, even
    while imports run."""
    params = multi(request)
    reject_unknown(params, {"since", "limit"})
    size = parse_limit(params, cfg)
    after = 0
    if since is not None:
        if len(params["since"]) > 1:
            raise bad("since", "give it once")
        if since[:4].isascii() and since[:4].isdigit() and "-" in since:
            after = await feed.after_time(conn, parse_datetime("since", since))
        else:
            after = feed.decode_token(since)
    page = await feed.changes(conn, after, size)
    base = base_url(request)
    token = feed.encode_token(page.next_seq)
    events = [
        {"id": e["organisation_id"], "uuid": str(e["uuid"]), "type": e["kind"], "at": e["at"].isoformat(),
         "href": f"{base}/v1/organisations/{e['organisation_id']}"}
        for e in page.events
    ]
    next_url = page_url(request, cfg, params, since=token)
    body = {"events": events, "next": token, "links": {"self": page_url(request, cfg, params), "next": next_url}}
    return Response(orjson.dumps(body), media_type="application/json", headers={"Link": f'<{next_url}>; rel="next"'})


@router.get(
    "/meta/imports",
    summary="The import runs: when the data changed, from which source, and what each run did",
    responses={200: {"description": "Import runs, newest first"}, **PROBLEM_RESPONSES},
)
async def list_imports(
    request: Request,
    conn: Annotated[AsyncConnection, Depends(read_connection)],
    cfg: Annotated[Settings, Depends(settings)],
    limit: Annotated[str | None, Query(description="Runs to return, default 50, clamped at 1000")] = None,
) -> Response:
    """Counts only (created, updated, unchanged, deleted, rejected, pending, geocoded): the
    quarantined records themselves are for the data team (admin API)."""
    params = multi(request)
    reject_unknown(params, {"limit"})
    runs = await feed.import_runs(conn, parse_limit(params, cfg))
    return Response(orjson.dumps({"items": runs}), media_type="application/json")
