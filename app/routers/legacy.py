"""The legacy social.brussels ``/rest`` API: portals switch to Bruso by changing only the base URL.

Every answer has the key order, value types and array-ness of the 2019 captures (organisation-13219,
sectors, categories, accreditations, accreditors, legal-status, languages, service-types, zones).
Organisation searches go through the search core (``app.search.query.search``, paged internally with
its cursors) and return *every* match as a JSON array of full legacy organisation objects.
The legacy filter names map onto the core criteria: ``agreements`` → ``accreditation``, ``sectors`` →
``sector``, ``categories`` → ``category``, ``zones`` → ``action_zone`` (comma lists, OR within, AND
across); the native criteria names of ``/v1/organisations`` are accepted as well.

Unlike the 2019 server (which answered unknown paths with its HTML page and a 200), an unknown path,
an unknown id or an unpublished organisation is a JSON 404 (``application/problem+json``); an unknown
or malformed search parameter is a 400.
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from .. import search as core
from ..deps import read_connection, settings
from ..errors import BadRequest, Gone, NotFound
from ..http import base_url
from ..search import changes as feed
from ..search import legacy as sql
from ..search.criteria import (
    CRITERIA_PARAMETERS,
    Criteria,
    bad,
    int_list,
    parse_criteria,
)
from ..search.query import check_references, tokens
from ..search.query import search as run_search
from ..serialize import legacy as shape
from ..settings import Settings
from .v1 import PROBLEM_RESPONSES, SEARCH_PARAMETERS, multi, reject_unknown

router = APIRouter(prefix="/rest", tags=["legacy"])

Connection = Annotated[AsyncConnection, Depends(read_connection)]
Config = Annotated[Settings, Depends(settings)]

# legacy query parameter → core criterion
ALIASES = {"agreements": "accreditation", "sectors": "sector", "categories": "category", "zones": "action_zone"}
PAGE = 1000  # ids per internal page of the core search
FETCH_CHUNK = 1000

ORGANISATIONS_200 = {
    "description": "Every matching published organisation, as a JSON array of legacy organisation objects "
    "(the shape of /rest/organisation/{id})",
    "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}},
}
LIST_200 = {"content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}
PATHS_200 = {"content": {"application/json": {"schema": {"type": "array", "items": {"type": "array", "items": {"type": "object"}}}}}}
OBJECT_200 = {"content": {"application/json": {"schema": {"type": "object"}}}}
NOT_FOUND = {404: PROBLEM_RESPONSES[404], 503: PROBLEM_RESPONSES[503]}
SEARCH_ERRORS = PROBLEM_RESPONSES


def json_response(body) -> Response:
    """Keys in insertion order (never sorted), so that equal data gives equal bytes and ETags."""
    return Response(orjson.dumps(body), media_type="application/json")


def legacy_id(text: str, what: str) -> int:
    """A path id; anything that is not a plausible id names no resource (404, not 400)."""
    if not text.isascii() or not text.isdigit() or len(text) > 10 or not 1 <= int(text) <= 2**31 - 1:
        raise NotFound(f"no published {what} with id {text}")
    return int(text)


def legacy_filters(
    agreements: Annotated[list[str] | None, Query(description="Legacy name of accreditation: accreditation ids (comma-separate or repeat: OR)", examples=["631"])] = None,
    sectors: Annotated[list[str] | None, Query(description="Legacy name of sector: sector ids (OR)", examples=["53"])] = None,
    categories: Annotated[list[str] | None, Query(description="Legacy name of category: category ids, each including the categories below it in the tree (OR)", examples=["489"])] = None,
    zones: Annotated[list[str] | None, Query(description="Legacy name of action_zone: action zone ids (OR)", examples=["434"])] = None,
) -> None:
    """Declares the legacy filter names for the OpenAPI document; parsing is done by legacy_criteria."""


async def legacy_criteria(request: Request, conn: AsyncConnection, cfg: Settings, term: str | None = None) -> Criteria:
    """Criteria from the legacy names (renamed to the core's) and the core names, checked like v1."""
    params = multi(request)
    reject_unknown(params, CRITERIA_PARAMETERS | set(ALIASES))
    merged: dict[str, list[str]] = {k: list(v) for k, v in params.items() if k not in ALIASES}
    used: dict[str, str] = {}  # core name → legacy name, for error messages
    for alias, name in ALIASES.items():
        if alias in params:
            int_list(alias, params[alias])  # a malformed value is reported under the name the client used
            merged.setdefault(name, []).extend(params[alias])
            used[name] = alias
    if term is not None and term.strip() not in ("", "*"):
        if merged.get("q"):
            raise bad("q", "the search term is already given in the path (/rest/search/organisation/{term})")
        merged["q"] = [term]
    criteria = parse_criteria(merged, cfg.max_radius_m)
    try:
        await check_references(conn, criteria)
    except BadRequest as exc:
        unknown = exc.extra.get("unknown") or {}
        if not any(k in used for k in unknown):
            raise
        renamed = {used.get(k, k): v for k, v in unknown.items()}
        detail = "; ".join(f"{k}: unknown {', '.join(map(str, v))}" for k, v in renamed.items())
        raise BadRequest(detail, unknown=renamed, parameter=next(iter(renamed))) from None
    return criteria


async def all_organisations(conn: AsyncConnection, cfg: Settings, criteria: Criteria) -> Response:
    """Every match of the core search (paged through with its cursors) as one JSON array of legacy
    organisation objects, in the core's default order (relevance with a term, else French name)."""
    parts: list[bytes] = []
    cursor: str | None = None
    while True:
        page = await run_search(
            conn, criteria, sort=None, limit=PAGE, cursor=cursor, lang="fr", secret=cfg.cursor_secret, count=False
        )
        for start in range(0, len(page.ids), FETCH_CHUNK):
            chunk = page.ids[start : start + FETCH_CHUNK]
            rows = {r["id"]: r for r in await core.fetch_records(conn, chunk)}
            docs = [shape.organisation(rows[i]) for i in chunk if i in rows]
            if docs:
                parts.append(orjson.dumps(docs)[1:-1])
        cursor = page.next_cursor
        if not cursor:
            break
    return Response(b"[" + b",".join(parts) + b"]", media_type="application/json")


# ---------------------------------------------------------------- organisations


@router.get(
    "/organisation/{id}",
    summary="One published organisation in the legacy shape",
    responses={200: {"description": "The legacy organisation object (keys, order and types of the 2019 API)", **OBJECT_200}, **NOT_FOUND},
)
async def legacy_organisation(
    request: Request,
    id: Annotated[str, Path(description="Legacy id of the activity place", examples=["13219"])],
    conn: Connection,
) -> Response:
    """The 2019 ``/rest/organisation/{id}`` object: ``lastUpdate``/``startDate`` as dd/mm/yy, integer
    ``zipCode``, Lambert 72 ``x``/``y`` and WGS84 ``lon``/``lat``. Unknown or unpublished ids are a 404."""
    oid = legacy_id(id, "organisation")
    rows = await core.fetch_records(conn, [oid])
    if not rows:
        try:
            await feed.raise_missing(conn, oid, lambda successor: f"{base_url(request)}/rest/organisation/{successor}")
        except Gone as gone:  # the legacy API only knew 404: same status, same hint
            raise NotFound(gone.detail, headers=gone.headers, **gone.extra) from None
    return json_response(shape.organisation(rows[0]))


@router.get(
    "/search/organisation",
    summary="Search organisations by legacy filters (all matches)",
    responses={200: ORGANISATIONS_200, **SEARCH_ERRORS},
    openapi_extra={"parameters": SEARCH_PARAMETERS},
)
async def legacy_search_organisations(
    request: Request,
    conn: Connection,
    cfg: Config,
    _legacy: Annotated[None, Depends(legacy_filters)],
) -> Response:
    """``?agreements=&sectors=&categories=&zones=`` (comma lists; OR within a filter, AND across
    filters), plus any criterion of ``/v1/organisations``. Without any filter: every published
    organisation. Unknown parameters and unknown ids are a 400."""
    return await all_organisations(conn, cfg, await legacy_criteria(request, conn, cfg))


@router.get(
    "/search/organisation/{term}",
    summary="Free-text search of organisations (all matches); * = every organisation",
    responses={200: ORGANISATIONS_200, **SEARCH_ERRORS},
)
async def legacy_search_organisations_by_term(
    request: Request,
    term: Annotated[str, Path(description="Words to find in the NL/FR names, alternative names, activities and categories (the core's q: accent-, case- and typo-tolerant); * for all", examples=["CASS"])],
    conn: Connection,
    cfg: Config,
    _legacy: Annotated[None, Depends(legacy_filters)],
) -> Response:
    """The term is the core's ``q`` (best matches first); ``*`` matches every published organisation.
    The legacy filters (and the native criteria except ``q``) may be added as query parameters."""
    return await all_organisations(conn, cfg, await legacy_criteria(request, conn, cfg, term=term))


@router.get("/search/organisation/", include_in_schema=False)
async def legacy_search_organisations_empty_term(request: Request, conn: Connection, cfg: Config) -> Response:
    """A portal that appends an empty search box to the URL: the same as ``*``."""
    return await all_organisations(conn, cfg, await legacy_criteria(request, conn, cfg, term="*"))


# ---------------------------------------------------------------- categories and sectors


@router.get(
    "/search/category",
    summary="Categories by activity text (* = all), with their current organisation counts",
    responses={200: {"description": "Categories in the shape of the 2019 list", **LIST_200}, **SEARCH_ERRORS},
)
async def legacy_search_categories(
    request: Request,
    conn: Connection,
    activity: Annotated[str | None, Query(description="* (or nothing) for all categories; else words that must all occur in a NL or FR title or keyword (accent- and case-insensitive)", examples=["*"], max_length=200)] = None,
) -> Response:
    """The 2019 category objects; ``organisationsCount`` is the current number of published
    organisations that ``/rest/search/organisation?categories=<id>`` returns."""
    params = multi(request)
    reject_unknown(params, {"activity"})
    values = params.get("activity") or []
    if len(values) > 1:
        raise bad("activity", "give this parameter once")
    text = (values[0] if values else "").strip()
    words = None
    if text not in ("", "*"):
        words = tokens(text) or [text]
    return json_response([shape.category(r) for r in await sql.categories(conn, words=words)])


@router.get("/sectors", summary="Every sector (2019 list shape)", responses={200: LIST_200, 503: PROBLEM_RESPONSES[503]})
async def legacy_sectors(conn: Connection) -> Response:
    """The sectors in display order: ``id``, ``titleFr``, ``titleNl``, ``descriptionFr``, ``descriptionNl``, ``order``."""
    return json_response([shape.sector(r) for r in await sql.sectors(conn)])


async def _sector(conn: AsyncConnection, id: str) -> dict:
    sid = legacy_id(id, "sector")
    rows = await sql.sectors(conn, sid)
    if not rows:
        raise NotFound(f"no sector with id {sid}")
    return rows[0]


SECTOR_ID = Annotated[str, Path(description="Sector id (ids of sectors and categories overlap: sector 53 is not category 53)", examples=["53"])]


@router.get(
    "/sector/{id}",
    summary="One sector with its categories",
    responses={200: {"description": "The sector object of /rest/sectors followed by its categories", **OBJECT_200}, **NOT_FOUND},
)
async def legacy_sector(id: SECTOR_ID, conn: Connection) -> Response:
    """The object of ``/rest/sectors`` for this sector (``id``, ``titleFr``, ``titleNl``,
    ``descriptionFr``, ``descriptionNl``, ``order``) followed by ``categories``: every category placed
    in this sector's tree (``category_tree``), in tree order (depth first, by position then id), each
    in the shape of ``/rest/search/category`` (with ``organisationsCount``). Unknown ids are a 404."""
    row = await _sector(conn, id)
    walk = await sql.sector_walk(conn, row["id"])
    order = [w["category_id"] for w in walk]
    by_id = {c["id"]: c for c in await sql.categories(conn, ids=order)} if order else {}
    return json_response(shape.sector_detail(row, [by_id[i] for i in order if i in by_id]))


@router.get(
    "/sector/{id}/paths",
    summary="The paths from a sector down to each of its categories",
    responses={200: {"description": "A list of paths; each path is a list of {id, titleFr, titleNl}", **PATHS_200}, **NOT_FOUND},
)
async def legacy_sector_paths(id: SECTOR_ID, conn: Connection) -> Response:
    """One path per category placed in the sector's tree (``category_tree``), in tree order (depth
    first, by position then id): ``[sector, rubric…, category]``, each step ``{"id", "titleFr",
    "titleNl"}``. The first step is always the sector itself (its id is a sector id); the others are
    category ids. A path of length 2 is a top-level category of the sector. Unknown ids are a 404."""
    row = await _sector(conn, id)
    walk = await sql.sector_walk(conn, row["id"])
    titles = await sql.category_titles(conn, sorted({c for w in walk for c in w["path"]})) if walk else {}
    top = shape.path_step(row)
    paths = [[top, *(shape.path_step(titles[c]) for c in w["path"])] for w in walk]
    return json_response(paths)


@router.get(
    "/sector/{id}/organisations",
    summary="Every published organisation in a sector (legacy shape)",
    responses={200: ORGANISATIONS_200, **NOT_FOUND},
)
async def legacy_sector_organisations(id: SECTOR_ID, conn: Connection, cfg: Config) -> Response:
    """The organisations linked to a category placed in this sector's tree: the core search
    ``sector=<id>`` (the same as ``/rest/search/organisation?sectors=<id>``). Unknown ids are a 404."""
    row = await _sector(conn, id)
    return await all_organisations(conn, cfg, Criteria(sector=(row["id"],)))


# ---------------------------------------------------------------- lookup lists


@router.get("/agreements", summary="Every accreditation (legacy: agreement)", responses={200: LIST_200, 503: PROBLEM_RESPONSES[503]})
async def legacy_agreements(conn: Connection) -> Response:
    """``id``, ``labelFr``, ``labelNl``, ``agreementPower`` (``{id, nameFr, nameNl}`` or null), ``agreementPowerId``."""
    return json_response([shape.accreditation(r) for r in await sql.accreditations(conn)])


@router.get("/agreementpowers", summary="Every accrediting authority (legacy: agreement power)", responses={200: LIST_200, 503: PROBLEM_RESPONSES[503]})
async def legacy_agreement_powers(conn: Connection) -> Response:
    """``id``, ``nameFr``, ``nameNl``."""
    return json_response([shape.authority(r) for r in await sql.lookup(conn, "authority")])


@router.get("/legalstatus", summary="Every legal status", responses={200: LIST_200, 503: PROBLEM_RESPONSES[503]})
async def legacy_legal_statuses(conn: Connection) -> Response:
    """``id``, ``labelFr``, ``labelNl``."""
    return json_response([shape.labelled(r) for r in await sql.lookup(conn, "legal_status")])


@router.get("/languageoffer", summary="Every language a service can be offered in", responses={200: LIST_200, 503: PROBLEM_RESPONSES[503]})
async def legacy_languages(conn: Connection) -> Response:
    """``id``, ``nameFr``, ``nameNl``."""
    return json_response([shape.language(r) for r in await sql.lookup(conn, "language")])


@router.get("/offertypes", summary="Every offer type (service type)", responses={200: LIST_200, 503: PROBLEM_RESPONSES[503]})
async def legacy_offer_types(conn: Connection) -> Response:
    """``id``, ``labelFr``, ``labelNl``."""
    return json_response([shape.labelled(r) for r in await sql.lookup(conn, "offer_type")])


@router.get("/actionzones", summary="Every action zone", responses={200: LIST_200, 503: PROBLEM_RESPONSES[503]})
async def legacy_action_zones(conn: Connection) -> Response:
    """``id``, ``parents`` (always null, as in 2019), ``labelFr``, ``labelNl``."""
    return json_response([shape.action_zone(r) for r in await sql.lookup(conn, "action_zone")])


# ---------------------------------------------------------------- everything else: JSON 404


@router.get("/{path:path}", include_in_schema=False)
async def legacy_unknown(path: str) -> Response:
    """The 2019 server answered unknown paths with its HTML page and a 200; this is a JSON 404."""
    raise NotFound(f"no resource at /rest/{path}")
