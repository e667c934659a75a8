"""Open Referral HSDS 3.0: one API per language (``/hsds/nl``, ``/hsds/fr``, same UUIDs) and the
Bruso HSDS profile (``/hsds/profile``).

Organization, service, location and service_at_location lists go through the search core: the
HSDS parameters are translated into the v1 criteria of the same meaning (``search`` → ``q``,
``modified_after`` → ``updated_since``, ``proximity`` → ``near``/``radius``, ``taxonomy_term_id`` /
``taxonomy_id`` → ``sector``, ``category``, ``authority``, ``accreditation``, ``offer_type``,
``commune``, ``quartier``, ``statistical_sector``), parsed by ``parse_criteria``, searched by
``app.search.query.search`` (``page`` → offset; ``format=ndjson`` → keyset cursors) and read by
``app.search.fetch_records``; ``app.serialize.hsds`` shapes the records.

The routes are left out of the main ``/openapi.json`` (``include_in_schema=False``): the profile's
own OpenAPI document (``/hsds/{lang}/openapi.json``) describes them with their HSDS schemas, and
eleven near-identical operations per language would bury the v1 API in the main document.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import FileResponse, Response, StreamingResponse

from .. import search
from ..deps import read_connection, settings
from ..errors import BadRequest, NotFound
from ..hsds import HSDS_VERSION, LANGS, PROFILE_DIR, data, ids
from ..hsds.openapi import ENDPOINTS, PARAMETERS, PROFILE_FILTERS
from ..hsds.openapi import document as openapi_document
from ..hsds.vocabulary import TAXONOMIES, TAXONOMY_FILTER_KIND, TAXONOMY_IDS, Vocabulary
from ..http import base_url, data_version
from ..search.criteria import Criteria, bad, int_list, parse_criteria, split
from ..search.query import check_references
from ..search.query import search as run_search
from ..serialize import hsds as shape
from ..settings import Settings
from ..text import fold
from .v1 import multi, reject_unknown

router = APIRouter(prefix="/hsds", include_in_schema=False)

NDJSON = "application/x-ndjson"
BATCH = 200  # records per keyset page when streaming
MAX_PAGE = 1_000_000
Connection = Annotated[AsyncConnection, Depends(read_connection)]
Config = Annotated[Settings, Depends(settings)]


def json(body) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def api_language(lang: str) -> str:
    if lang not in LANGS:
        raise NotFound(f"no HSDS API in {lang!r}: use /hsds/nl or /hsds/fr")
    return lang


def accepted(request: Request, path: str) -> dict[str, list[str]]:
    """The query parameters, every one of them documented for ``path`` (else a 400)."""
    params = multi(request)
    reject_unknown(params, set(ENDPOINTS[path]["params"]))
    return params


def one(params: dict, name: str, *, allow_empty: bool = False) -> str | None:
    """The parameter's one value; an empty value is a 400 (leave the parameter out instead),
    except where emptiness means something (``search=``: no text)."""
    values = params.get(name) or []
    if len(values) > 1:
        raise bad(name, "give this parameter once")
    if not values:
        return None
    value = values[0].strip()
    if not value and not allow_empty:
        raise bad(name, "empty value; leave the parameter out instead")
    return value


def flag(params: dict, name: str) -> bool:
    value = one(params, name)
    if value is None:
        return False
    if value.lower() not in ("true", "false", "1", "0"):
        raise bad(name, f"{value!r} is not a boolean (true or false)")
    return value.lower() in ("true", "1")


def positive(params: dict, name: str, maximum: int | None = None) -> int | None:
    value = one(params, name)
    if value is None:
        return None
    if not value.isascii() or not value.lstrip("+").isdigit() or int(value) < 1 or len(value) > 12:
        raise bad(name, f"{value!r} is not a positive integer")
    number = int(value)
    if maximum is not None and number > maximum:
        raise bad(name, f"at most {maximum}")
    return number


def paging(params: dict, cfg: Settings, default_size: int | None = None) -> tuple[str, int, int]:
    """(format, page number, page size); page/per_page make no sense with a stream."""
    fmt = one(params, "format") or "json"
    if fmt not in ("json", "ndjson"):
        raise bad("format", "must be json or ndjson")
    number = positive(params, "page", MAX_PAGE)
    size = positive(params, "per_page")
    if fmt == "ndjson" and (number or size):
        name = "page" if number else "per_page"
        raise bad(name, "format=ndjson streams every item: no page or per_page")
    return fmt, number or 1, min(size or default_size or cfg.default_limit, cfg.max_limit)


# ---------------------------------------------------------------- HSDS parameters → Criteria

RENAMED = {"q": "search", "updated_since": "modified_after", "near": "proximity"}


def _term_codes(vocabulary: Vocabulary, params: dict) -> dict[str, list[str]]:
    """taxonomy_term_id and taxonomy_id as criteria: {criterion: [codes]}."""
    codes: dict[str, list[str]] = {}
    unknown: dict[str, list[str]] = {}
    for value in split(params.get("taxonomy_term_id") or []):
        key = ids.parse_uuid(value)
        term = vocabulary.by_id.get(str(key)) if key else None
        if key is None:
            raise bad("taxonomy_term_id", f"{value!r} is not a UUID")
        if term is None:
            unknown.setdefault("taxonomy_term_id", []).append(value)
            continue
        codes.setdefault(term.kind, []).append(term.code)
    for value in split(params.get("taxonomy_id") or []):
        key = ids.parse_uuid(value)
        if key is None:
            raise bad("taxonomy_id", f"{value!r} is not a UUID")
        taxonomy = TAXONOMY_IDS.get(str(key))
        if taxonomy is None:
            unknown.setdefault("taxonomy_id", []).append(value)
            continue
        kind = TAXONOMY_FILTER_KIND[taxonomy]
        codes.setdefault(kind, []).extend(t.code for t in vocabulary.of_taxonomy(taxonomy) if t.kind == kind)
    if unknown:
        name = next(iter(unknown))
        detail = "; ".join(f"{k}: unknown {', '.join(v)}" for k, v in unknown.items())
        raise BadRequest(detail, parameter=name, unknown=unknown)
    return codes


async def criteria_from(conn: AsyncConnection, cfg: Settings, params: dict) -> Criteria:
    """The search criteria an HSDS list request means (every error a 400 naming the HSDS parameter)."""
    v1: dict[str, list[str]] = {name: params[name] for name in (*PROFILE_FILTERS, "postcode") if name in params and name != "radius"}
    if "search" in params:
        v1["q"] = params["search"]
    if "modified_after" in params:
        v1["updated_since"] = params["modified_after"]
    if "taxonomy_term_id" in params or "taxonomy_id" in params:
        for kind, codes in _term_codes(await Vocabulary.load(conn), params).items():
            if kind in v1:
                raise bad(kind, f"give {kind} either as {kind}= or through taxonomy_term_id/taxonomy_id, not both")
            v1[kind] = [",".join(dict.fromkeys(codes))]

    proximity, radius = one(params, "proximity"), one(params, "radius")
    radius_from = "radius"
    if proximity is not None:
        parts = [p.strip() for p in proximity.split(",")]
        if len(parts) == 1:  # HSDS: a distance from the centroid of the postcode
            if radius is not None:
                raise bad("radius", "give the distance once: proximity=<metres> with postcode, or proximity=lat,lon and radius")
            postcodes = int_list("postcode", params.get("postcode") or [], 1000, 1299)
            if len(postcodes) != 1:
                raise bad("proximity", "a distance alone needs exactly one postcode= (its centroid is the centre); "
                                       "or give proximity=lat,lon[,radius]")
            centre = await data.postcode_centroid(conn, postcodes[0])
            if centre is None:
                raise BadRequest(f"postcode: unknown {postcodes[0]}", parameter="postcode", unknown={"postcode": [postcodes[0]]})
            v1.pop("postcode")
            v1["near"] = [f"{centre[0]},{centre[1]}"]
            v1["radius"], radius_from = [parts[0]], "proximity"
        elif len(parts) == 2:
            v1["near"] = [proximity]
            if radius is not None:
                v1["radius"] = [radius]
        elif len(parts) == 3:
            if radius is not None:
                raise bad("radius", "the radius is already the third value of proximity")
            v1["near"] = [f"{parts[0]},{parts[1]}"]
            v1["radius"], radius_from = [parts[2]], "proximity"
        else:
            raise bad("proximity", "expected lat,lon or lat,lon,radius (WGS84 degrees, metres), or a distance with postcode=")
    elif radius is not None:
        raise bad("radius", "radius needs proximity=lat,lon")

    renamed = {**RENAMED, "radius": radius_from}
    try:
        criteria = parse_criteria(v1, cfg.max_radius_m)
    except BadRequest as exc:
        name = exc.extra.get("parameter")
        if name in renamed and renamed[name] != name:
            detail = exc.detail.replace(f"{name}:", f"{renamed[name]}:", 1).replace("near=", "proximity=")
            raise BadRequest(detail, parameter=renamed[name]) from None
        raise
    await check_references(conn, criteria)

    organizations = split(params.get("organization_id") or [])
    if organizations:
        keys = []
        for value in organizations:
            key = ids.parse_uuid(value)
            if key is None:
                raise bad("organization_id", f"{value!r} is not a UUID")
            keys.append(key)
        found = await data.organisation_ids(conn, keys)
        missing = [str(k) for k in keys if k not in found]
        if missing:
            raise BadRequest(f"organization_id: unknown {', '.join(missing)}", parameter="organization_id",
                             unknown={"organization_id": missing})
        criteria = criteria.model_copy(update={"ids": tuple(dict.fromkeys(found.values()))})
    return criteria


# ---------------------------------------------------------------- lists of records

Shape = Callable[[shape.Shaper, dict], dict]


async def record_list(
    request: Request, conn: AsyncConnection, cfg: Settings, lang: str, path: str, item: Shape, full: bool,
    default_size: int | None = None, params: dict | None = None,
) -> Response:
    """One HSDS page of records, or every record as NDJSON."""
    params = accepted(request, path) if params is None else params
    fmt, number, size = paging(params, cfg, default_size)
    criteria = await criteria_from(conn, cfg, params)
    base = base_url(request)
    if fmt == "ndjson":
        return StreamingResponse(stream(request, cfg, criteria, lang, base, item, full), media_type=NDJSON)
    found = await run_search(conn, criteria, sort=None, limit=size, cursor=None, lang=lang,
                             secret=cfg.cursor_secret, offset=(number - 1) * size, version=await data_version(request))
    shaper = shape.Shaper(lang, base, await Vocabulary.load(conn) if full else None)
    rows = {r["id"]: r for r in await search.fetch_records(conn, found.ids)}
    contents = [item(shaper, rows[i]) for i in found.ids if i in rows]
    return json(shape.page(contents, found.number_matched, number, size))


async def stream(request: Request, cfg: Settings, criteria: Criteria, lang: str, base: str, item: Shape, full: bool) -> AsyncIterator[bytes]:
    """Every matching record, one JSON line each: keyset pages of BATCH ids from one snapshot
    (REPEATABLE READ), so memory stays bounded and no record is skipped or repeated."""
    async with request.app.state.read_engines[0].connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        shaper = shape.Shaper(lang, base, await Vocabulary.load(conn) if full else None)
        cursor = None
        while True:
            found = await run_search(conn, criteria, sort=None, limit=BATCH, cursor=cursor, lang=lang,
                                     secret=cfg.cursor_secret, count=False)
            rows = {r["id"]: r for r in await search.fetch_records(conn, found.ids)}
            chunk = b"".join(orjson.dumps(item(shaper, rows[i])) + b"\n" for i in found.ids if i in rows)
            if chunk:
                yield chunk
            if not found.next_cursor:
                break
            cursor = found.next_cursor


async def one_record(conn: AsyncConnection, record: str, kind: str | None) -> dict:
    """The published record behind an organization (kind None), service, location or
    service_at_location id; else a 404."""
    key = ids.parse_uuid(record)
    if key is not None:
        org_uuid = ids.organisation_uuid(key, kind) if kind else key
        found = await data.organisation_ids(conn, [org_uuid])
        if found:
            rows = await search.fetch_records(conn, list(found.values()))
            if rows:
                return rows[0]
    raise NotFound(f"no published {kind or 'organization'} with id {record!r}")


# ---------------------------------------------------------------- the profile


@router.get("/profile")
async def profile(request: Request) -> Response:
    reject_unknown(multi(request), set())
    base = base_url(request)
    patches = sorted(p.name for p in (PROFILE_DIR / "schema").glob("*.json"))
    return json({
        "name": "Bruso",
        "title": "Bruso HSDS profile: the social map of the Brussels-Capital Region",
        "hsds_version": HSDS_VERSION,
        "uri": f"{base}/hsds/profile",
        "description": "Open Referral HSDS 3.0 with one API per language (nl, fr) and the same UUIDs in both. The schema "
                       "files are JSON Merge Patches (RFC 7396) of the HSDS 3.0 schema files of the same name.",
        "documentation": f"{base}/hsds/profile/README.md",
        "openapi_url": f"{base}/hsds/profile/openapi.json",
        "apis": {lang: f"{base}/hsds/{lang}/" for lang in LANGS},
        "schema": {name: f"{base}/hsds/profile/schema/{name}" for name in patches},
        "taxonomies": {kind: ids.taxonomy_id(kind) for kind in TAXONOMIES},
    })


@router.get("/profile/openapi.json")
async def profile_openapi(request: Request) -> Response:
    reject_unknown(multi(request), set())
    return json(openapi_document(base_url(request)))


@router.get("/profile/README.md")
async def profile_readme(request: Request) -> Response:
    reject_unknown(multi(request), set())
    return FileResponse(PROFILE_DIR / "README.md", media_type="text/markdown; charset=utf-8")


@router.get("/profile/schema/{name}")
async def profile_schema(request: Request, name: str) -> Response:
    reject_unknown(multi(request), set())
    patches = {p.name: p for p in (PROFILE_DIR / "schema").glob("*.json")}
    if name not in patches:
        raise NotFound(f"no profile schema {name!r}; the profile patches {', '.join(sorted(patches))}")
    return Response(patches[name].read_bytes(), media_type="application/merge-patch+json")


# ---------------------------------------------------------------- the API, per language


@router.get("/{lang}")
@router.get("/{lang}/")
async def api_root(request: Request, lang: str) -> Response:
    lang = api_language(lang)
    accepted(request, "/")
    base = base_url(request)
    return json({"version": HSDS_VERSION, "profile": f"{base}/hsds/profile", "openapi_url": f"{base}/hsds/{lang}/openapi.json"})


@router.get("/{lang}/openapi.json")
async def api_openapi(request: Request, lang: str) -> Response:
    lang = api_language(lang)
    accepted(request, "/openapi.json")
    return json(openapi_document(base_url(request), lang))


@router.get("/{lang}/services")
async def list_services(request: Request, lang: str, conn: Connection, cfg: Config) -> Response:
    lang = api_language(lang)
    params = accepted(request, "/services")
    minimal, full = flag(params, "minimal"), flag(params, "full")
    if minimal and full:
        raise bad("minimal", "minimal and full exclude each other")
    if minimal:
        # "aim to return all services within one page": the largest page by default
        return await record_list(request, conn, cfg, lang, "/services", lambda s, r: s.minimal_service(r), False,
                                 default_size=cfg.max_limit, params=params)
    return await record_list(request, conn, cfg, lang, "/services", lambda s, r: s.service(r, full=full), full, params=params)


@router.get("/{lang}/services/{id}")
async def get_service(request: Request, lang: str, id: str, conn: Connection) -> Response:
    lang = api_language(lang)
    accepted(request, "/services/{id}")
    row = await one_record(conn, id, "service")
    return json(shape.Shaper(lang, base_url(request), await Vocabulary.load(conn)).service(row, full=True))


@router.get("/{lang}/organizations")
async def list_organizations(request: Request, lang: str, conn: Connection, cfg: Config) -> Response:
    lang = api_language(lang)
    params = accepted(request, "/organizations")
    full_service = flag(params, "full_service")
    full = flag(params, "full") or full_service
    services = "full" if full_service else "basic"
    return await record_list(request, conn, cfg, lang, "/organizations",
                             lambda s, r: s.organization(r, full=full, services=services if full else None), full, params=params)


@router.get("/{lang}/organizations/{id}")
async def get_organization(request: Request, lang: str, id: str, conn: Connection) -> Response:
    lang = api_language(lang)
    params = accepted(request, "/organizations/{id}")
    services = "full" if flag(params, "full_service") else "basic"
    row = await one_record(conn, id, None)
    return json(shape.Shaper(lang, base_url(request), await Vocabulary.load(conn)).organization(row, full=True, services=services))


@router.get("/{lang}/service_at_locations")
async def list_service_at_locations(request: Request, lang: str, conn: Connection, cfg: Config) -> Response:
    lang = api_language(lang)
    params = accepted(request, "/service_at_locations")
    full = flag(params, "full")
    return await record_list(request, conn, cfg, lang, "/service_at_locations",
                             lambda s, r: s.service_at_location(r, full=full), full, params=params)


@router.get("/{lang}/service_at_locations/{id}")
async def get_service_at_location(request: Request, lang: str, id: str, conn: Connection) -> Response:
    lang = api_language(lang)
    accepted(request, "/service_at_locations/{id}")
    row = await one_record(conn, id, "service_at_location")
    return json(shape.Shaper(lang, base_url(request), await Vocabulary.load(conn)).service_at_location(row, full=True))


# ---------------------------------------------------------------- taxonomies


def _matches(words: list[str], *texts) -> bool:
    haystack = fold(" ".join(t for t in texts if t))
    return all(w in haystack for w in words)


def _words(params: dict) -> list[str]:
    text = one(params, "search", allow_empty=True)
    if text is not None and len(text) > 200:
        raise bad("search", "at most 200 characters")
    return fold(text or "").split()


def listing(params: dict, cfg: Settings, items: list, item: Callable[[object], dict]) -> Response:
    """An HSDS page (or NDJSON) of a short in-memory list, shaping only what is served."""
    fmt, number, size = paging(params, cfg)
    if fmt == "ndjson":
        return Response(b"".join(orjson.dumps(item(i)) + b"\n" for i in items), media_type=NDJSON)
    start = (number - 1) * size
    return json(shape.page([item(i) for i in items[start:start + size]], len(items), number, size))


@router.get("/{lang}/taxonomies")
async def list_taxonomies(request: Request, lang: str, cfg: Config) -> Response:
    lang = api_language(lang)
    params = accepted(request, "/taxonomies")
    words = _words(params)
    shaper = shape.Shaper(lang, base_url(request))
    kinds = [k for k, spec in TAXONOMIES.items() if _matches(words, *spec["name"].values(), *spec["description"].values(), k)]
    return listing(params, cfg, kinds, shaper.taxonomy)


@router.get("/{lang}/taxonomies/{id}")
async def get_taxonomy(request: Request, lang: str, id: str) -> Response:
    lang = api_language(lang)
    accepted(request, "/taxonomies/{id}")
    key = ids.parse_uuid(id)
    kind = TAXONOMY_IDS.get(str(key)) if key else None
    if kind is None:
        raise NotFound(f"no taxonomy with id {id!r}")
    return json(shape.Shaper(lang, base_url(request)).taxonomy(kind))


@router.get("/{lang}/taxonomy_terms")
async def list_taxonomy_terms(request: Request, lang: str, conn: Connection, cfg: Config) -> Response:
    lang = api_language(lang)
    params = accepted(request, "/taxonomy_terms")
    words = _words(params)
    vocabulary = await Vocabulary.load(conn)
    terms = vocabulary.terms
    taxonomies = []
    for value in split(params.get("taxonomy_id") or []):
        key = ids.parse_uuid(value)
        if key is None:
            raise bad("taxonomy_id", f"{value!r} is not a UUID")
        if str(key) not in TAXONOMY_IDS:
            raise BadRequest(f"taxonomy_id: unknown {value}", parameter="taxonomy_id", unknown={"taxonomy_id": [value]})
        taxonomies.append(TAXONOMY_IDS[str(key)])
    if taxonomies:
        terms = [t for t in terms if t.taxonomy in taxonomies]
    parent = one(params, "parent_id")
    if parent is not None:
        key = ids.parse_uuid(parent)
        if key is None:
            raise bad("parent_id", f"{parent!r} is not a UUID")
        if str(key) not in vocabulary.by_id:
            raise BadRequest(f"parent_id: unknown {parent}", parameter="parent_id", unknown={"parent_id": [parent]})
        terms = [t for t in terms if t.parent and vocabulary.by_key[t.parent].id == str(key)]
    if flag(params, "top_only"):
        terms = [t for t in terms if t.parent is None]
    if words:
        terms = [t for t in terms if _matches(words, t.name_nl, t.name_fr, t.description_nl, t.description_fr, t.code)]
    shaper = shape.Shaper(lang, base_url(request), vocabulary)
    return listing(params, cfg, terms, lambda t: shaper.term(t, detail=True))


@router.get("/{lang}/taxonomy_terms/{id}")
async def get_taxonomy_term(request: Request, lang: str, id: str, conn: Connection) -> Response:
    lang = api_language(lang)
    accepted(request, "/taxonomy_terms/{id}")
    vocabulary = await Vocabulary.load(conn)
    key = ids.parse_uuid(id)
    term = vocabulary.by_id.get(str(key)) if key else None
    if term is None:
        raise NotFound(f"no taxonomy term with id {id!r}")
    return json(shape.Shaper(lang, base_url(request), vocabulary).term(term, detail=True))


# the documented parameters are exactly the ones the handlers read
assert all(name in PARAMETERS for spec in ENDPOINTS.values() for name in spec["params"])
