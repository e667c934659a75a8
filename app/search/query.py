"""The query builder: Criteria → one SQL statement (filters, spatial predicates, ranking, keyset
paging), plus the matching count. Every surface pages through ``search``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from sqlalchemy import (
    ColumnElement,
    Float,
    and_,
    case,
    column,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    table,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Integer, Text

from ..errors import BadRequest
from ..geo.crs import clip_to_window, many_to_lambert72, to_lambert72
from ..models import LINKS, SRID, Commune, Organisation, Quartier, StatisticalSector
from ..models.taxonomy import Accreditation, CategoryTree
from ..text import fold
from .criteria import Criteria

o = Organisation.__table__
oa, oz, ol, ot = (LINKS[k] for k in ("accreditation", "action_zone", "language", "offer_type"))
tree = CategoryTree.__table__
accreditation = Accreditation.__table__

# Bilingual equivalents users type for the same thing (both directions are listed).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "ocmw": ("cpas",), "cpas": ("ocmw",),
    "vzw": ("asbl",), "asbl": ("vzw",),
    "kbo": ("bce",), "bce": ("kbo",),
    "caw": ("casg",), "casg": ("caw",),
    "ggc": ("cocom",), "cocom": ("ggc",),
    "vgc": ("cocof",), "cocof": ("vgc",),
    "kinderdagverblijf": ("creche",), "creche": ("kinderdagverblijf",),
}


def tokens(q: str) -> list[str]:
    return list(dict.fromkeys(t for t in re.split(r"[^\w]+", fold(q)) if len(t) >= 2))[:8]


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


search_word = table("search_word", column("word", Text))

Terms = dict[str, tuple[str, ...]]


async def expand_terms(conn: AsyncConnection, q: str | None) -> Terms:
    """Each query word → itself, its bilingual synonyms and, for 4+ letters, the closest words of the
    published vocabulary (trigram similarity ≥ 0.45): the typo tolerance, resolved once per query."""
    terms: Terms = {}
    for token in tokens(q or ""):
        variants = [token, *SYNONYMS.get(token, ())]
        if len(token) >= 4:
            similarity = func.similarity(search_word.c.word, token)
            close = await conn.execute(
                select(search_word.c.word)
                .where(search_word.c.word.op("%")(token), similarity >= 0.45)
                .order_by(similarity.desc(), search_word.c.word)
                .limit(6)
            )
            variants += [w for w in close.scalars() if w not in variants]
        terms[token] = tuple(variants)
    return terms


def _contains_any(column, variants) -> ColumnElement[bool]:
    return or_(*(column.like(f"%{_escape_like(v)}%") for v in variants))


def query_point(criteria: Criteria):
    """The near= point in Lambert 72, transformed here once so the planner sees a constant."""
    lat, lon = criteria.near  # type: ignore[misc]
    x, y = to_lambert72(lon, lat)
    return func.ST_SetSRID(func.ST_MakePoint(literal(x, Float), literal(y, Float)), SRID)


def _bbox_condition(criteria: Criteria) -> ColumnElement[bool]:
    """Points in the bbox, tested in Lambert 72 (the stored geometry, its GiST index).

    A CRS84 box is not a box in Lambert 72 (parallels are arcs), so its edges are densified
    (pyproj, here, once per query: the planner sees a constant) and a world-wide box is clipped to
    where the projection holds. Testing every candidate against that 129-vertex polygon cost about
    7 µs a point; points inside the largest Lambert rectangle the polygon contains are inside the
    box for sure, so only the thin band between that rectangle and the polygon's extent pays for
    the exact test.
    """
    x0, y0, x1, y1 = criteria.bbox  # type: ignore[misc]
    if criteria.bbox_crs == SRID:
        return func.ST_Intersects(o.c.geom, func.ST_MakeEnvelope(x0, y0, x1, y1, SRID))
    x0, y0, x1, y1 = clip_to_window(x0, y0, x1, y1)
    steps = 32
    edges = many_to_lambert72(
        [(x0 + (x1 - x0) * i / steps, y0) for i in range(steps + 1)]
        + [(x1, y0 + (y1 - y0) * i / steps) for i in range(steps + 1)]
        + [(x1 - (x1 - x0) * i / steps, y1) for i in range(steps + 1)]
        + [(x0, y1 - (y1 - y0) * i / steps) for i in range(steps + 1)]
    )
    n = steps + 1
    bottom, right, top, left = edges[:n], edges[n:2 * n], edges[2 * n:3 * n], edges[3 * n:]
    ring = bottom + right[1:] + top[1:] + left[1:]
    wkt = "POLYGON((" + ",".join(f"{x:.3f} {y:.3f}" for x, y in ring) + "))"
    polygon = func.ST_GeomFromText(literal(wkt, Text), SRID)
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    # inside: right of the whole left edge, left of the right edge, above the bottom, below the top
    ix0, ix1 = max(p[0] for p in left) + 0.001, min(p[0] for p in right) - 0.001
    iy0, iy1 = max(p[1] for p in bottom) + 0.001, min(p[1] for p in top) - 0.001
    outer = func.ST_MakeEnvelope(min(xs), min(ys), max(xs), max(ys), SRID)
    if ix0 >= ix1 or iy0 >= iy1:
        return func.ST_Intersects(o.c.geom, polygon)
    inner = func.ST_MakeEnvelope(ix0, iy0, ix1, iy1, SRID)
    return and_(o.c.geom.op("&&")(outer), or_(o.c.geom.op("@")(inner), func.ST_Intersects(o.c.geom, polygon)))


def _ids(values) -> ColumnElement:
    return literal(list(values), ARRAY(Integer))


def _texts(values) -> ColumnElement:
    return literal(list(values), ARRAY(Text))


async def category_descendants(conn: AsyncConnection, ids, version: object = None) -> tuple[int, ...]:
    """The categories asked for and every category below them in any sector's tree (resolved
    before the search so that the planner sees the real list). With the data ``version``, the
    answer is remembered as the counts are (``subtrees``)."""
    key = (version, tuple(sorted(ids))) if version is not None else None
    found = subtrees.get(key)
    if found is None:
        base = select(func.unnest(_ids(ids)).label("id")).cte("wanted", recursive=True)
        wanted = base.union(select(tree.c.category_id).join(base, tree.c.parent_category_id == base.c.id))
        found = tuple(sorted((await conn.execute(select(wanted.c.id))).scalars()))
        subtrees.put(key, found)
    return found


WITHIN_TABLES = {
    "commune": (Commune.__table__, "nis_code"),
    "quartier": (Quartier.__table__, "code"),
    "statistical_sector": (StatisticalSector.__table__, "code"),
}


async def sector_categories(conn: AsyncConnection, ids) -> tuple[int, ...]:
    """The categories placed in any of the sectors' trees."""
    found = await conn.execute(select(tree.c.category_id).where(tree.c.sector_id == func.any(_ids(ids))).distinct())
    return tuple(sorted(found.scalars()))


@dataclass(frozen=True)
class Resolved:
    """What the criteria expand to in the database: close words for q, category descendants, the
    categories of the sectors asked for."""

    terms: Terms | None = None
    categories: tuple[int, ...] = ()
    sector_categories: tuple[int, ...] | None = None


async def resolve(conn: AsyncConnection, criteria: Criteria, version: object = None) -> Resolved:
    return Resolved(
        terms=await expand_terms(conn, criteria.q) if criteria.q else None,
        categories=await category_descendants(conn, criteria.category, version) if criteria.category else (),
        sector_categories=await sector_categories(conn, criteria.sector) if criteria.sector else None,
    )


def within_radius(point: ColumnElement, radius: float) -> ColumnElement[bool]:
    return func.ST_DWithin(o.c.geom, point, radius)


def filters(criteria: Criteria, resolved: Resolved | None = None, public: bool = True) -> list[ColumnElement[bool]]:
    """The WHERE conditions of a search. Without ``resolved`` (see ``where``), q matches exact words
    and synonyms only and a category matches itself only."""
    c = criteria
    resolved = resolved or Resolved()
    conds: list[ColumnElement[bool]] = []
    if public:
        conds.append(o.c.publication_state == "published")
    if c.ids:
        conds.append(o.c.id == func.any(_ids(c.ids)))
    if c.q:
        terms = resolved.terms
        if terms is None:
            terms = {t: (t, *SYNONYMS.get(t, ())) for t in tokens(c.q)}
        for variants in terms.values():
            conds.append(_contains_any(o.c.search_text, variants))
    # categories and sectors match the record's category_ids (indexed alone, and with the point: 0008)
    if c.category:
        conds.append(o.c.category_ids.bool_op("&&")(_ids(resolved.categories or c.category)))
    if c.sector:
        if resolved.sector_categories is not None:
            in_sectors = _ids(resolved.sector_categories)
        else:
            in_sectors = select(func.array_agg(tree.c.category_id)).where(tree.c.sector_id == func.any(_ids(c.sector))).scalar_subquery()
        conds.append(o.c.category_ids.bool_op("&&")(in_sectors))
    if c.accreditation:
        conds.append(exists().where(oa.c.organisation_id == o.c.id, oa.c.accreditation_id == func.any(_ids(c.accreditation))))
    if c.authority:
        conds.append(
            exists().where(
                oa.c.organisation_id == o.c.id,
                accreditation.c.id == oa.c.accreditation_id,
                accreditation.c.authority_id == func.any(_ids(c.authority)),
            )
        )
    for values, table, column in (
        (c.action_zone, oz, "action_zone_id"),
        (c.offer_type, ot, "offer_type_id"),
        (c.language, ol, "language_id"),
    ):
        if values:
            conds.append(exists().where(table.c.organisation_id == o.c.id, table.c[column] == func.any(_ids(values))))
    for values, column, array in (
        (c.commune, o.c.commune_nis, _texts),
        (c.postcode, o.c.postcode, _ids),
        (c.quartier, o.c.quartier_code, _texts),
        (c.statistical_sector, o.c.statistical_sector_code, _texts),
        (c.lang_status, o.c.lang_status, _texts),
        (c.legal_status, o.c.legal_status_id, _ids),
    ):
        if values:
            conds.append(column == func.any(array(values)))
    if c.enterprise_number:
        conds.append(o.c.enterprise_numbers.bool_op("&&")(_texts(c.enterprise_number)))
    if c.near is not None and c.radius is not None:
        conds.append(within_radius(query_point(c), c.radius))
    if c.bbox is not None:
        conds.append(_bbox_condition(c))
    if c.within:
        shapes = []
        for kind, code in c.within:
            table, key = WITHIN_TABLES[kind]
            shapes.append(exists().where(table.c[key] == code, func.ST_Intersects(table.c.geom, o.c.geom)))
        conds.append(or_(*shapes))
    if c.updated_since is not None:
        conds.append(o.c.updated_at >= c.updated_since)
    return conds


async def where(conn: AsyncConnection, criteria: Criteria, public: bool = True) -> list[ColumnElement[bool]]:
    """The WHERE conditions every surface uses (``q`` expanded against the vocabulary)."""
    return filters(criteria, await resolve(conn, criteria), public)


NAMES = func.bruso_normalise(
    func.concat_ws(" ", o.c.name_official_nl, o.c.name_official_fr,
                   func.array_to_string(o.c.name_alternative_nl, " "), func.array_to_string(o.c.name_alternative_fr, " "))
)


def relevance(terms: Terms) -> ColumnElement:
    """Per query word: 2 when a name contains it (or a close variant), 1 more for the exact word in
    the text, 0.5 for a variant in the text. Computed only on the matching rows."""
    score: ColumnElement = literal(0.0, Float)
    for token, variants in terms.items():
        score = (
            score
            + case((_contains_any(NAMES, variants), 2.0), else_=0.0)
            + case((o.c.search_text.like(f"%{_escape_like(token)}%"), 1.0), else_=0.0)
            + case((_contains_any(o.c.search_text, variants), 0.5), else_=0.0)
        )
    return score


def name_key(lang: str) -> ColumnElement:
    """The stored, folded name in ``lang`` (the other language's when missing): migration 0006."""
    return o.c[f"name_key_{lang}"]


# ---------------------------------------------------------------- cursors


@dataclass
class Page:
    ids: list[int]
    number_matched: int
    next_cursor: str | None
    distances: dict[int, float] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)


def _fingerprint(criteria: Criteria, sort: str, lang: str) -> str:
    payload = orjson.dumps([criteria.model_dump(mode="json"), sort, lang], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(payload).hexdigest()[:16]


def encode_cursor(secret: str, fingerprint: str, key: list) -> str:
    body = base64.urlsafe_b64encode(orjson.dumps({"f": fingerprint, "k": key})).rstrip(b"=")
    sig = hmac.new(secret.encode(), body, hashlib.sha256).digest()[:12]
    return body.decode() + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()


def decode_cursor(secret: str, fingerprint: str, cursor: str) -> list:
    try:
        body, sig = cursor.encode("ascii").split(b".", 1)
        expected = base64.urlsafe_b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()[:12]).rstrip(b"=")
        if not hmac.compare_digest(sig, expected):
            raise ValueError
        data = orjson.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
    except (ValueError, UnicodeEncodeError, orjson.JSONDecodeError):
        raise BadRequest("cursor: invalid or tampered cursor; start again without it", parameter="cursor") from None
    if data.get("f") != fingerprint:
        raise BadRequest("cursor: this cursor belongs to another query (criteria, sort or lang changed)", parameter="cursor")
    return data["k"]


def default_sort(criteria: Criteria) -> str:
    if criteria.q:
        return "relevance"
    if criteria.near is not None:
        return "distance"
    return "name"


async def search(
    conn: AsyncConnection,
    criteria: Criteria,
    *,
    sort: str | None,
    limit: int,
    cursor: str | None,
    lang: str,
    secret: str,
    public: bool = True,
    count: bool = True,
    offset: int = 0,
    extra: Sequence[ColumnElement[bool]] = (),
    version: object = None,
) -> Page:
    """One page of matching organisation ids in a stable order, the total, and the next cursor.

    ``offset`` serves surfaces that page by number (OGC ``offset``, HSDS ``page``); cursors are the
    keyset alternative and are preferred. ``extra`` adds conditions a surface compiled itself
    (the OGC CQL2 filter) to the same query. ``version`` (the data version, ``app.http``) lets the
    number of matches be remembered until the data changes (``counts``).
    """
    sort = sort or default_sort(criteria)
    if sort == "distance" and criteria.near is None:
        raise BadRequest("sort: sort=distance needs near=lat,lon", parameter="sort")
    if sort == "relevance" and not criteria.q:
        raise BadRequest("sort: sort=relevance needs q", parameter="sort")
    resolved = await resolve(conn, criteria, version)
    point = query_point(criteria) if criteria.near is not None else None
    # the radius apart: the exact circle for the count and the other sorts, its square for the KNN walk
    circle = criteria.radius is not None
    common = [*filters(criteria.model_copy(update={"radius": None}) if circle else criteria, resolved, public), *extra]
    conds = [*common, within_radius(point, criteria.radius)] if circle else common
    distance = func.ST_Distance(o.c.geom, point) if point is not None else None

    if sort == "relevance":
        key, descending = relevance(resolved.terms or {}), True
    elif sort == "distance":
        key, descending = distance, False
    elif sort == "updated":
        key, descending = o.c.updated_at, True
    else:
        key, descending = name_key(lang), False

    fingerprint = _fingerprint(criteria, sort, lang)
    page_conds = []
    if cursor:
        last_key, last_id = decode_cursor(secret, fingerprint, cursor)
        if sort == "updated":
            page_conds.append(tuple_(o.c.updated_at, o.c.id) < tuple_(literal(last_key).cast(o.c.updated_at.type), last_id))
        elif descending:  # relevance: higher score first, ties by id
            page_conds.append(or_(key < last_key, and_(key == last_key, o.c.id > last_id)))
        else:
            if sort == "distance":
                page_conds.append(or_(key > last_key, and_(key == last_key, o.c.id > last_id)))
            else:
                page_conds.append(tuple_(key, o.c.id) > tuple_(literal(last_key, Text), last_id))

    columns = [o.c.id, key.label("sort_key")]
    if distance is not None:
        columns.append(distance.label("distance"))
    if sort == "distance":  # a KNN walk of the GiST index (with a radius too: it stops at the page)
        # The radius goes in as the square around the circle: PostgreSQL estimates that square from
        # its statistics, but not the exact test (it guessed 2 rows of 1,468 at 1M and sorted them
        # all instead of walking the index); _nearest drops what lies beyond the radius.
        box = [*common, o.c.geom.op("&&")(func.ST_Expand(point, criteria.radius))] if circle else conds
        rows = (await _nearest(conn, columns, [*box, *page_conds], criteria, point, offset + limit + 1))[offset:]
    else:
        order = [key.desc() if descending else key.asc(), o.c.id.desc() if sort == "updated" else o.c.id.asc()]
        stmt = select(*columns).where(and_(true(), *conds, *page_conds)).order_by(*order).offset(offset or None).limit(limit + 1)
        rows = (await conn.execute(stmt)).all()

    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        last_key = last.sort_key.isoformat() if sort == "updated" else last.sort_key
        next_cursor = encode_cursor(secret, fingerprint, [last_key, last.id])
    matched = -1
    if count:
        key = None
        if version is not None:
            key = (version, public, _fingerprint(criteria, "", ""), _condition_key(extra))
        matched = counts.get(key)
        if matched is None:
            matched = (await conn.execute(select(func.count()).select_from(o).where(and_(true(), *conds)))).scalar_one()
            counts.put(key, matched)
    return Page(
        ids=[r.id for r in rows],
        number_matched=matched,
        next_cursor=next_cursor,
        distances={r.id: r.distance for r in rows} if distance is not None else {},
        scores={r.id: r.sort_key for r in rows} if sort == "relevance" else {},
    )


def _condition_key(conditions: Sequence[ColumnElement[bool]]) -> tuple:
    if not conditions:
        return ()
    compiled = and_(*conditions).compile()
    return str(compiled), repr(sorted(compiled.params.items()))


class VersionCache:
    """Answers remembered per data version: the numbers of matches per (version, criteria), so that
    paging through a result, or many visitors of the same embedded list, count once per data change
    instead of once per page; and the category subtrees a search expands to. Per process, bounded
    (LRU), and an entry also expires after ``max_age`` seconds (the lookup lists, the category tree
    and the vocabulary a query expands against can change without a data change)."""

    def __init__(self, size: int = 4096, max_age: float = 60.0):
        self.size, self.max_age = size, max_age
        self.entries: OrderedDict[tuple, tuple[object, float]] = OrderedDict()

    def get(self, key: tuple | None):
        if key is None or key not in self.entries:
            return None
        value, at = self.entries[key]
        if time.monotonic() - at > self.max_age:
            del self.entries[key]
            return None
        self.entries.move_to_end(key)
        return value

    def put(self, key: tuple | None, value) -> None:
        if key is None:
            return
        self.entries[key] = (value, time.monotonic())
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)


counts = VersionCache()
subtrees = VersionCache(size=1024)


TIES = 32  # extra rows of a KNN walk: a group of records at one address rarely straddles the page end by more


async def _nearest(conn: AsyncConnection, columns, conds, criteria: Criteria, point, wanted: int) -> list:
    """The ``wanted`` nearest rows in (distance, id) order, driven by the GiST KNN operator.

    PostgreSQL only walks the index for ``ORDER BY geom <-> point`` alone, which leaves ties in any
    order; so fetch ``wanted + TIES`` candidates and keep those strictly nearer than the last (a
    complete set). When a group of equal distances (records at one address) straddles the cut and
    leaves fewer than ``wanted``, read every match up to the last candidate's distance instead: the
    group whole, one index scan bounded by that distance. Ties then sort by id, as cursors need.
    """
    k = wanted + TIES
    stmt = select(*columns).where(and_(true(), *conds)).order_by(o.c.geom.op("<->")(point)).limit(k)
    rows = (await conn.execute(stmt)).all()
    if criteria.radius is not None and rows and rows[-1].distance > criteria.radius:
        # the walk went past the circle (conds bound it by its square): every match is in hand
        complete = [r for r in rows if r.distance <= criteria.radius]
    elif len(rows) < k:
        complete = rows
    else:
        last = rows[-1].distance
        complete = [r for r in rows if r.distance < last]
        if len(complete) < wanted:  # at least k ≥ wanted matches lie within ``last``: take them all
            within = func.ST_DWithin(o.c.geom, point, literal(last + 1e-6, Float))
            rows = (await conn.execute(select(*columns).where(and_(true(), *conds, within)))).all()
            complete = [r for r in rows if r.distance <= last]
    return sorted(complete, key=lambda r: (r.distance, r.id))[:wanted]


# ---------------------------------------------------------------- unknown ids → 400

ID_TABLES = {
    "sector": "sector", "category": "category", "accreditation": "accreditation", "authority": "authority",
    "action_zone": "action_zone", "offer_type": "offer_type", "language": "language", "legal_status": "legal_status",
    "commune": "commune", "quartier": "quartier", "statistical_sector": "statistical_sector", "postcode": "postcode",
}
_KEYS = {"commune": "nis_code", "quartier": "code", "statistical_sector": "code", "postcode": "postcode"}


async def check_references(conn: AsyncConnection, criteria: Criteria) -> None:
    """Every id or code named in the criteria exists; else a 400 listing the unknown ones."""
    unknown: dict[str, list] = {}
    for name, table in ID_TABLES.items():
        values = list(getattr(criteria, name))
        if not values:
            continue
        key = _KEYS.get(name, "id")
        found = (await conn.execute(text(f"SELECT {key} FROM {table} WHERE {key} = ANY(:v)"), {"v": values})).scalars()
        missing = sorted(set(values) - set(found))
        if missing:
            unknown[name] = missing
    for kind, code in criteria.within:
        table, key = WITHIN_TABLES[kind]
        if not (await conn.execute(select(exists().where(table.c[key] == code)))).scalar():
            unknown.setdefault("within", []).append(f"{kind}:{code}")
    if unknown:
        detail = "; ".join(f"{k}: unknown {', '.join(map(str, v))}" for k, v in unknown.items())
        raise BadRequest(detail, unknown=unknown, parameter=next(iter(unknown)))
