"""CQL2 (OGC API – Features Part 3) → SQLAlchemy conditions, for the OGC surface.

``parse_filter`` reads ``cql2-text`` or ``cql2-json`` with pygeofilter's parsers (bounded in size and
depth), ``compile_filter`` turns the tree into one boolean SQLAlchemy condition over a whitelist of
queryables; the router hands it to ``app.search.query.search(extra=...)`` so a filtered page is the
same single search as every other surface.

Queryables are the only names a filter may use. Plain ones map to a column; the link ones
(``sector``, ``category``, ``accreditation``, …) are v1 criteria: ``sector = 53`` compiles through
``app.search.query.filters(Criteria(sector=(53,)))``, so it means exactly what ``?sector=53``
means on /v1 (a category of the place sits in that sector's tree; ``category`` includes the
categories below it).

Geometry literals are in ``filter-crs`` (CRS84 by default; EPSG:4326 is lat/lon; EPSG:31370 is
the storage CRS). Geographic literals are densified (as the v1 ``bbox`` is) and transformed once
to Lambert 72 in SQL, so the spatial index on ``geom`` is used and the same PROJ does every
transform. Everything a user can type is checked here — a filter is a 400 or a query, never a
database error.

pygeofilter 0.4 quirks handled here: its cql2-text grammar is extended with the standard function
form of temporal predicates (``T_AFTER(a, b)``), ``S_DWITHIN(a, b, metres)`` and ``''`` inside
strings; in cql2-json, ``{"bbox": [...]}`` (which it reads with the axes mixed up), the 3-argument
``between``, ``accenti`` and ``s_dwithin`` are rewritten before it parses.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy
import orjson
import shapely
import shapely.geometry
import shapely.ops
import shapely.validation
from lark import Lark, v_args
from pygeofilter import ast, values
from pygeofilter.parsers.cql2_json.parser import walk_cql_json
from pygeofilter.parsers.cql2_text import parser as _text
from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    Float,
    LargeBinary,
    Text,
    and_,
    false,
    func,
    literal,
    not_,
    or_,
    true,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import BadRequest
from ..geo.crs import LAMBERT72_WINDOW, clip_to_window  # noqa: F401 - clip_to_window re-exported for the OGC router
from ..identifiers import InvalidEnterpriseNumber, normalise_enterprise_number
from ..models import (
    SRID,
    ActionZone,
    Commune,
    Organisation,
    Quartier,
    StatisticalSector,
)
from .criteria import CRS84_URI, OGC_CRSS, Criteria, OgcCrs, parse_ogc_crs
from .query import Resolved, category_descendants, filters, sector_categories

o = Organisation.__table__
log = logging.getLogger("bruso.cql2")

MAX_FILTER_CHARS = 10_000
MAX_NODES = 500
MAX_DEPTH = 40
MAX_COORDINATES = 10_000
MAX_DISTANCE_M = 100_000
FILTER_LANGS = ("cql2-text", "cql2-json")


def _bad(reason: str, parameter: str = "filter") -> BadRequest:
    return BadRequest(f"{parameter}: {reason}", parameter=parameter)


# ---------------------------------------------------------------- queryables


@dataclass(frozen=True)
class Queryable:
    """A name a filter may use: a column, or a v1 criterion (link tables) when ``criterion`` is set."""

    type: str  # integer | number | string | boolean | date-time | geometry
    column: object = None
    criterion: str | None = None
    title: str = ""
    description: str = ""
    geometry_format: str | None = None  # JSON Schema format of a geometry: geometry-point, geometry-multipolygon

    def schema(self) -> dict:
        """The JSON Schema of this queryable (OGC API Features Part 3, /queryables)."""
        out: dict = {"title": self.title} if self.title else {}
        if self.type == "geometry":
            out["format"] = self.geometry_format or "geometry-any"
            out["x-ogc-role"] = "primary-geometry"
        elif self.type == "date-time":
            out.update(type="string", format="date-time")
        else:
            out["type"] = self.type
        if self.description:
            out["description"] = self.description
        return out


ORGANISATION_QUERYABLES: dict[str, Queryable] = {
    "geometry": Queryable("geometry", o.c.geom, title="Location", geometry_format="geometry-point",
                          description="The activity place (stored in Lambert 72, EPSG:31370)"),
    "id": Queryable("integer", o.c.id, title="Legacy id", description="The public legacy id (the feature id)"),
    "name_fr": Queryable("string", o.c.name_official_fr, title="Official name (FR)"),
    "name_nl": Queryable("string", o.c.name_official_nl, title="Official name (NL)"),
    "street_fr": Queryable("string", o.c.street_fr, title="Street (FR)"),
    "street_nl": Queryable("string", o.c.street_nl, title="Street (NL)"),
    "postcode": Queryable("integer", o.c.postcode, title="Postcode", description="e.g. 1030"),
    "commune": Queryable("string", o.c.commune_nis, title="Commune NIS code", description="e.g. '21015'"),
    "quartier": Queryable("string", o.c.quartier_code, title="Monitoring-quartier code", description="e.g. '87'"),
    "statistical_sector": Queryable("string", o.c.statistical_sector_code, title="Statistical sector code",
                                    description="e.g. '21015A77-'"),
    "lang_status": Queryable("string", o.c.lang_status, title="Language status", description="FR, NL or FR-NL"),
    "legal_status": Queryable("integer", o.c.legal_status_id, title="Legal status id"),
    "is_interpreting": Queryable("boolean", o.c.is_interpreting, title="Offers interpreting"),
    "updated_at": Queryable("date-time", o.c.updated_at, title="Last change of the record"),
    "sector": Queryable("integer", criterion="sector", title="Sector id",
                        description="Has a category placed in this sector's tree (as v1 sector=); =, <>, IN, NOT IN"),
    "category": Queryable("integer", criterion="category", title="Category id",
                          description="Has this category or one below it in the tree (as v1 category=); =, <>, IN, NOT IN"),
    "accreditation": Queryable("integer", criterion="accreditation", title="Accreditation id",
                               description="=, <>, IN, NOT IN"),
    "authority": Queryable("integer", criterion="authority", title="Accrediting authority id",
                           description="Holds an accreditation of this authority; =, <>, IN, NOT IN"),
    "action_zone": Queryable("integer", criterion="action_zone", title="Action zone id", description="=, <>, IN, NOT IN"),
    "offer_type": Queryable("integer", criterion="offer_type", title="Offer type id", description="=, <>, IN, NOT IN"),
    "language": Queryable("integer", criterion="language", title="Offered language id", description="=, <>, IN, NOT IN"),
    "enterprise_number": Queryable("string", criterion="enterprise_number", title="BCE/KBO enterprise number",
                                   description="e.g. '0212.347.945'; =, <>, IN, NOT IN"),
}


def _district_queryables(table, key: str, key_title: str, extra: dict[str, Queryable] | None = None) -> dict[str, Queryable]:
    names = "label" if "label_nl" in table.c else "name"
    return {
        "geometry": Queryable("geometry", table.c.geom, title="Polygon", geometry_format="geometry-multipolygon",
                              description="Stored in Lambert 72 (EPSG:31370)"),
        "code": Queryable("integer" if key == "id" else "string", table.c[key], title=key_title),
        "name_nl": Queryable("string", table.c[f"{names}_nl"], title="Name (NL)"),
        "name_fr": Queryable("string", table.c[f"{names}_fr"], title="Name (FR)"),
        **(extra or {}),
    }


_commune, _quartier, _sector, _zone = (m.__table__ for m in (Commune, Quartier, StatisticalSector, ActionZone))
DISTRICT_QUERYABLES: dict[str, dict[str, Queryable]] = {
    "communes": _district_queryables(_commune, "nis_code", "NIS code",
                                     {"area_km2": Queryable("number", _commune.c.area_km2, title="Area (km²)")}),
    "quartiers": _district_queryables(_quartier, "code", "Quartier code",
                                      {"area_km2": Queryable("number", _quartier.c.area_km2, title="Area (km²)")}),
    "statistical-sectors": _district_queryables(_sector, "code", "Statistical sector code", {
        "commune": Queryable("string", _sector.c.commune_nis, title="Commune NIS code"),
        "quartier": Queryable("string", _sector.c.quartier_code, title="Quartier code"),
    }),
    "action-zones": _district_queryables(_zone, "id", "Action zone id", {
        "kind": Queryable("string", _zone.c.kind, title="Kind", description="region, commune or quartier"),
        "commune": Queryable("string", _zone.c.commune_nis, title="Commune NIS code"),
        "quartier": Queryable("string", _zone.c.quartier_code, title="Quartier code"),
    }),
}


# ---------------------------------------------------------------- geometry literals → Lambert 72


MAX_DENSIFIED_POINTS = 20_000
# Lambert 72 is a conic projection for Belgium: far-away lon/lat (a world-wide box) projects to
# garbage. Geographic literals are clipped to LAMBERT72_WINDOW (app.geo.crs) first; every stored
# geometry lies in Brussels, deep inside it, so no spatial predicate changes its answer.


def storage_geometry(geometry, srid: int, length: float = 0.0) -> ColumnElement:
    """A geometry expression in ``srid`` → Lambert 72. Geographic shapes are densified first (a
    straight edge in lon/lat is not straight in Lambert 72), with 0.001° steps as the v1 bbox —
    coarser for shapes whose edges (``length``, in degrees) would give more than
    MAX_DENSIFIED_POINTS points."""
    if srid == SRID:
        return geometry
    step = max(0.001, length / MAX_DENSIFIED_POINTS)
    return func.ST_Transform(func.ST_Segmentize(geometry, step), SRID)


def box_geometry(x0: float, y0: float, x1: float, y1: float, crs: OgcCrs, parameter: str = "bbox") -> ColumnElement:
    """A box given in ``crs`` (lat/lon order for EPSG:4326) as a Lambert 72 polygon."""
    if crs.lat_lon:
        x0, y0, x1, y1 = y0, x0, y1, x1
    for value in (x0, y0, x1, y1):
        if not math.isfinite(value):
            raise _bad("coordinates must be finite numbers", parameter)
    if x0 > x1 or y0 > y1:
        raise _bad("minimum greater than maximum", parameter)
    if crs.srid == 4326 and not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
        raise _bad("longitudes must be within ±180 and latitudes within ±90", parameter)
    if crs.srid == 4326:
        x0, y0, x1, y1 = clip_to_window(x0, y0, x1, y1)
    return storage_geometry(func.ST_MakeEnvelope(x0, y0, x1, y1, crs.srid), crs.srid, 2 * (x1 - x0 + y1 - y0))


def _geometry_literal(geojson: Mapping, crs: OgcCrs) -> ColumnElement:
    geojson = dict(geojson)
    named = geojson.pop("crs", None)  # EWKT SRID=…; (PostGIS convention: SRID=4326 is lon/lat)
    if named is not None:
        code = str(named.get("properties", {}).get("name", "")).rsplit(":", 1)[-1]
        if code == "31370":
            crs = OGC_CRSS["http://www.opengis.net/def/crs/EPSG/0/31370"]
        elif code == "4326":
            crs = OGC_CRSS[CRS84_URI]
        else:
            raise _bad(f"unsupported SRID {code!r} in a geometry literal; use 4326 or 31370")
    try:
        shape = shapely.geometry.shape(geojson)
    except Exception as exc:  # noqa: BLE001 - any malformed literal is the client's error
        raise _bad(f"invalid geometry literal ({exc})") from None
    if shapely.get_num_coordinates(shape) > MAX_COORDINATES:
        raise _bad(f"a geometry literal may have at most {MAX_COORDINATES} coordinates")
    coords = shapely.get_coordinates(shape)
    if not bool(numpy.isfinite(coords).all()):
        raise _bad("geometry coordinates must be finite numbers")
    if crs.lat_lon:
        shape = shapely.ops.transform(lambda x, y, z=None: (y, x), shape)
        coords = shapely.get_coordinates(shape)
    if crs.srid == 4326 and len(coords) and not (
        (abs(coords[:, 0]) <= 180).all() and (abs(coords[:, 1]) <= 90).all()
    ):
        raise _bad("geometry longitudes must be within ±180 and latitudes within ±90 (check filter-crs and axis order)")
    if not shape.is_valid:
        raise _bad(f"invalid geometry literal: {shapely.validation.explain_validity(shape)}")
    if crs.srid == 4326 and not shapely.box(*LAMBERT72_WINDOW).contains(shape):
        shape = shape.intersection(shapely.box(*LAMBERT72_WINDOW))
    geometry = func.ST_GeomFromWKB(literal(shapely.to_wkb(shape), LargeBinary), crs.srid)
    return storage_geometry(geometry, crs.srid, float(shapely.length(shape)))


def during(column, start: dt.datetime | None, end: dt.datetime | None) -> list[ColumnElement[bool]]:
    """The OGC ``datetime`` range [start, end) on a temporal column (None = open)."""
    return [*([column >= start] if start is not None else []), *([column < end] if end is not None else [])]


def intersects(queryables: Mapping[str, Queryable], geometry: ColumnElement) -> ColumnElement[bool]:
    """The collection's geometry intersects ``geometry`` (a Lambert 72 expression)."""
    return func.ST_Intersects(queryables["geometry"].column, geometry)


# ---------------------------------------------------------------- parsing


_GRAMMAR_PATH = os.path.join(os.path.dirname(_text.__file__), "grammar.lark")
_EXTENSION = r"""
%extend predicate: _binary_temporal_predicate_func "(" expression "," expression ")" -> temporal_function
                 | "S_DWITHIN"i "(" expression "," expression "," full_number ")" -> dwithin_function
%override SINGLE_QUOTED: /'(?:[^']|'')*'/
"""


@v_args(meta=False, inline=True)
class _Transformer(_text.CQLTransformer):
    """pygeofilter's CQL2-text transformer with the standard forms it lacks."""

    def temporal_function(self, op, lhs, rhs):
        return _text.TEMPORAL_PREDICATES_MAP[str(op).lower()](lhs, rhs)

    def dwithin_function(self, lhs, rhs, distance):
        return ast.DistanceWithin(lhs, rhs, distance, "meters")

    def SINGLE_QUOTED(self, token):
        return token[1:-1].replace("''", "'")

    # the parent's versions of these two print to stdout
    def wkt__geometry_with_srid(self, srid, geometry):
        geometry["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{srid}"}}
        return geometry

    def wkt__multipoint_2(self, *coordinates):
        return {"type": "MultiPoint", "coordinates": coordinates}


with open(_GRAMMAR_PATH, encoding="utf-8") as _f:
    _TEXT_PARSER = Lark(
        _f.read() + _EXTENSION,
        parser="lalr",
        maybe_placeholders=False,
        transformer=_Transformer(),
        import_paths=[os.path.dirname(os.path.dirname(_text.__file__))],
        source_path=_GRAMMAR_PATH,
    )


def _check_json_shape(doc) -> None:
    """Bounded depth and size before any recursive walk."""
    stack, count = [(doc, 1)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH * 3 or count > MAX_NODES * 50:
            raise _bad(f"the filter is too large or too deeply nested (at most {MAX_DEPTH} levels)")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def _rewrite_json(node):
    """Standard CQL2-JSON forms pygeofilter 0.4 misreads, rewritten into forms it reads right."""
    if isinstance(node, list):
        return [_rewrite_json(v) for v in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"bbox"} and isinstance(node["bbox"], list):
        return {"function": {"name": "bbox", "arguments": node["bbox"]}}
    op = node.get("op")
    args = node.get("args")
    if isinstance(op, str) and isinstance(args, list):
        op_l = op.lower()
        args = _rewrite_json(args)
        if op_l == "between" and len(args) == 3:
            return {"op": "between", "args": [args[0], [args[1], args[2]]]}
        if op_l in ("accenti", "s_dwithin"):
            return {"function": {"name": op_l, "arguments": args}}
        if op_l == "like" and len(args) == 2 and isinstance(args[1], dict):
            pattern = walk_cql_json(args[1])
            return {"op": "like", "args": [args[0], pattern]}
        return {**node, "args": args}
    return {k: _rewrite_json(v) for k, v in node.items()}


def _check_tree(node) -> None:
    stack, count = [(node, 1)], 0
    while stack:
        current, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH or count > MAX_NODES:
            raise _bad(f"the filter is too large (at most {MAX_NODES} terms, {MAX_DEPTH} levels of nesting)")
        if isinstance(current, ast.Node):
            stack.extend((child, depth + 1) for child in current.get_sub_nodes())
        elif isinstance(current, (list, tuple)):
            stack.extend((child, depth) for child in current)


def parse_filter(text: str, lang: str) -> ast.Node:
    """The filter's tree, or a 400 naming ``filter`` (or ``filter-lang``)."""
    if lang not in FILTER_LANGS:
        raise _bad(f"must be one of {', '.join(FILTER_LANGS)}", "filter-lang")
    if len(text) > MAX_FILTER_CHARS:
        raise _bad(f"at most {MAX_FILTER_CHARS} characters")
    if not text.strip():
        raise _bad("empty filter")
    try:
        if lang == "cql2-json":
            try:
                doc = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise _bad(f"not valid JSON ({exc})") from None
            _check_json_shape(doc)
            node = walk_cql_json(_rewrite_json(doc))
        else:
            node = _TEXT_PARSER.parse(text)
        _check_tree(node)
    except BadRequest:
        raise
    except RecursionError:
        raise _bad("the filter is too deeply nested") from None
    except Exception as exc:  # noqa: BLE001 - lark and pygeofilter raise many kinds; all are parse errors
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _bad(f"not valid {lang}: {message[:200]}") from None
    return node


# ---------------------------------------------------------------- compiling


@dataclass
class _Operand:
    sql: object
    type: str
    queryable: Queryable | None = None
    value: object = None
    is_literal: bool = False


_COMPARISONS = {
    ast.Equal: lambda a, b: a == b,
    ast.NotEqual: lambda a, b: a != b,
    ast.LessThan: lambda a, b: a < b,
    ast.LessEqual: lambda a, b: a <= b,
    ast.GreaterThan: lambda a, b: a > b,
    ast.GreaterEqual: lambda a, b: a >= b,
}
_SPATIAL = {
    ast.GeometryIntersects: func.ST_Intersects,
    ast.GeometryDisjoint: func.ST_Disjoint,
    ast.GeometryContains: func.ST_Contains,
    ast.GeometryWithin: func.ST_Within,
    ast.GeometryTouches: func.ST_Touches,
    ast.GeometryCrosses: func.ST_Crosses,
    ast.GeometryOverlaps: func.ST_Overlaps,
    ast.GeometryEquals: func.ST_Equals,
}
_FAMILY = {"integer": "number", "number": "number", "string": "string", "boolean": "boolean",
           "date-time": "time", "date": "time"}
_INT_LIMIT = 2**63


def _text_value(value: str) -> str:
    if "\x00" in value:
        raise _bad("strings may not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad("strings must be valid Unicode") from None
    return value


class _Compiler:
    def __init__(self, conn: AsyncConnection, queryables: Mapping[str, Queryable], crs: OgcCrs):
        self.conn = conn
        self.queryables = queryables
        self.crs = crs

    def queryable(self, name) -> Queryable:
        found = self.queryables.get(str(name))
        if found is None:
            raise _bad(f"unknown queryable {str(name)[:80]!r}; known: {', '.join(self.queryables)}")
        return found

    # -- scalar operands

    def operand(self, node) -> _Operand:
        if isinstance(node, ast.Attribute):
            q = self.queryable(node.name)
            if q.type == "geometry":
                raise _bad(f"{node.name} is a geometry: use a spatial function (S_INTERSECTS, …)")
            return _Operand(q.column, q.type, q)
        if isinstance(node, ast.Function):
            name = str(node.name).lower()
            if name in ("lower", "casei", "accenti") and len(node.arguments) == 1:
                inner = self.operand(node.arguments[0])
                if inner.type != "string" or (inner.queryable is not None and inner.queryable.criterion):
                    raise _bad(f"{name.upper()}() applies to a string property or literal")
                sql = func.lower(inner.sql) if name != "accenti" else func.unaccent(inner.sql)
                return _Operand(sql, "string", None, is_literal=inner.is_literal)
            raise _bad(f"unsupported function {str(node.name)[:40]!r} (CASEI and ACCENTI are supported)")
        if isinstance(node, bool):
            return _Operand(literal(node, Boolean), "boolean", value=node, is_literal=True)
        if isinstance(node, int):
            if abs(node) >= _INT_LIMIT:
                raise _bad(f"integer {node} is out of range")
            return _Operand(literal(node, BigInteger), "integer", value=node, is_literal=True)
        if isinstance(node, float):
            if not math.isfinite(node):
                raise _bad("numbers must be finite")
            return _Operand(literal(node, Float), "number", value=node, is_literal=True)
        if isinstance(node, str):
            return _Operand(literal(_text_value(node), Text), "string", value=node, is_literal=True)
        if isinstance(node, dt.datetime):
            value = node if node.tzinfo else node.replace(tzinfo=dt.UTC)
            return _Operand(literal(value, DateTime(timezone=True)), "date-time", value=value, is_literal=True)
        if isinstance(node, dt.date):  # a day compared with a date-time: its first instant, in UTC
            value = dt.datetime.combine(node, dt.time(), dt.UTC)
            return _Operand(literal(value, DateTime(timezone=True)), "date-time", value=value, is_literal=True)
        if isinstance(node, ast.Arithmetic):
            raise _bad("arithmetic expressions are not supported")
        if isinstance(node, (values.Geometry, values.Envelope)):
            raise _bad("a geometry may only be used in a spatial function")
        raise _bad(f"unsupported operand {type(node).__name__}")

    @staticmethod
    def compatible(a: _Operand, b: _Operand) -> None:
        if _FAMILY.get(a.type) != _FAMILY.get(b.type):
            raise _bad(f"cannot compare a {a.type} with a {b.type}")

    # -- link queryables (v1 criteria)

    async def criterion(self, q: Queryable, literals: list) -> ColumnElement[bool]:
        name = q.criterion
        assert name is not None
        if name == "enterprise_number":
            numbers = []
            for value in literals:
                if not isinstance(value, str):
                    raise _bad("enterprise_number takes strings, e.g. '0212.347.945'")
                try:
                    numbers.append(normalise_enterprise_number(_text_value(value)))
                except InvalidEnterpriseNumber as exc:
                    raise _bad(f"enterprise_number: {exc}") from None
            values_ = tuple(numbers)
        else:
            for value in literals:
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**31:
                    raise _bad(f"{name} takes ids (integers from 1 to 2147483647), not {value!r}"[:200])
            values_ = tuple(dict.fromkeys(literals))
        resolved = None
        if name == "category":
            resolved = Resolved(categories=await category_descendants(self.conn, values_))
        elif name == "sector":
            resolved = Resolved(sector_categories=await sector_categories(self.conn, values_))
        conds = filters(Criteria(**{name: values_}), resolved, public=False)
        return and_(true(), *conds)

    async def link_predicate(self, node) -> ColumnElement[bool] | None:
        """``sector = 53``, ``sector <> 53``, ``sector IN (…)``, ``sector NOT IN (…)``; None if ``node``
        does not involve a link queryable."""

        def link(n):
            if isinstance(n, ast.Attribute):
                q = self.queryable(n.name)
                return q if q.criterion else None
            return None

        if isinstance(node, (ast.Equal, ast.NotEqual)):
            q, other = (link(node.lhs), node.rhs) if link(node.lhs) else (link(node.rhs), node.lhs)
            if q is None:
                return None
            cond = await self.criterion(q, [other])
            return cond if isinstance(node, ast.Equal) else not_(cond)
        if isinstance(node, ast.In) and link(node.lhs):
            cond = await self.criterion(link(node.lhs), list(node.sub_nodes))
            return not_(cond) if node.not_ else cond
        for child in node.get_sub_nodes() if isinstance(node, ast.Node) else ():
            if isinstance(child, ast.Attribute) and link(child):
                raise _bad(f"{child.name} only supports =, <>, IN and NOT IN with literal values")
        return None

    # -- spatial operands

    def spatial(self, node) -> ColumnElement:
        if isinstance(node, ast.Attribute):
            q = self.queryable(node.name)
            if q.type != "geometry":
                raise _bad(f"{node.name} is not a geometry")
            return q.column
        if isinstance(node, values.Geometry):
            return _geometry_literal(node.geometry, self.crs)
        if isinstance(node, values.Envelope):  # ECQL's ENVELOPE(x1 x2 y1 y2): corners (x1, y1), (x2, y2)
            x1, x2, y1, y2 = self._numbers([node.x1, node.x2, node.y1, node.y2])
            return box_geometry(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2), self.crs, "filter")
        if isinstance(node, ast.Function) and str(node.name).lower() == "bbox":
            args = self._numbers(node.arguments)
            if len(args) == 6:
                args = [args[0], args[1], args[3], args[4]]
            if len(args) != 4:
                raise _bad("BBOX takes 4 (or 6) numbers")
            return box_geometry(*args, self.crs, "filter")
        raise _bad("a spatial function compares the geometry queryable with a geometry literal or BBOX(…)")

    @staticmethod
    def _numbers(items) -> list[float]:
        out = []
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise _bad("BBOX coordinates must be numbers")
            out.append(float(item))
        return out

    # -- temporal

    def temporal(self, node) -> ColumnElement[bool]:
        lhs, rhs = node.lhs, node.rhs
        if not isinstance(lhs, ast.Attribute):
            lhs, rhs = rhs, lhs
        if not isinstance(lhs, ast.Attribute):
            raise _bad("a temporal function compares a temporal queryable with a literal")
        q = self.queryable(lhs.name)
        if q.type != "date-time":
            raise _bad(f"{lhs.name} is not a temporal queryable")
        low, high = self._instant_or_interval(rhs)  # [low, high), None = open
        p = q.column
        kind = type(node)
        if kind is ast.TimeBefore:
            return p < low if low is not None else false()
        if kind is ast.TimeAfter:
            return p >= high if high is not None else false()
        intersects = and_(true(), *([p >= low] if low is not None else []), *([p < high] if high is not None else []))
        if kind in (ast.TimeOverlaps, ast.TimeEquals):  # pygeofilter reads T_INTERSECTS as TimeOverlaps
            return intersects
        if kind is ast.TimeDuring:
            return and_(intersects, *([p > low] if low is not None else []))
        if kind is ast.TimeDisjoint:
            return not_(intersects)
        raise _bad(f"{kind.__name__} is not supported for an instant; use T_BEFORE, T_AFTER, T_INTERSECTS, T_DURING or T_EQUALS")

    @staticmethod
    def _bound(value, end: bool):
        if value is None or value == "..":
            return None
        if isinstance(value, dt.datetime):
            value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
            return value + dt.timedelta(microseconds=1) if end else value
        if isinstance(value, dt.date):
            day = dt.datetime.combine(value, dt.time(), dt.UTC)
            return day + dt.timedelta(days=1) if end else day
        raise _bad("temporal literals are DATE('…'), TIMESTAMP('…') or INTERVAL('…', '…')")

    def _instant_or_interval(self, value):
        try:
            if isinstance(value, values.Interval):
                low, high = self._bound(value.start, False), self._bound(value.end, True)
                if low is not None and high is not None and low >= high:
                    raise _bad("the interval ends before it starts")
                return low, high
            return self._bound(value, False), self._bound(value, True)
        except OverflowError:
            raise _bad("date out of range") from None

    # -- conditions

    async def condition(self, node) -> ColumnElement[bool]:
        if isinstance(node, bool):
            return true() if node else false()
        if isinstance(node, ast.And):
            return and_(await self.condition(node.lhs), await self.condition(node.rhs))
        if isinstance(node, ast.Or):
            return or_(await self.condition(node.lhs), await self.condition(node.rhs))
        if isinstance(node, ast.Not):
            return not_(await self.condition(node.sub_node))
        if isinstance(node, ast.Include):
            return false() if node.not_ else true()
        link = await self.link_predicate(node)
        if link is not None:
            return link
        if type(node) in _COMPARISONS:
            a, b = self.operand(node.lhs), self.operand(node.rhs)
            self.compatible(a, b)
            return _COMPARISONS[type(node)](a.sql, b.sql)
        if isinstance(node, ast.Between):
            a, low, high = self.operand(node.lhs), self.operand(node.low), self.operand(node.high)
            self.compatible(a, low)
            self.compatible(a, high)
            cond = a.sql.between(low.sql, high.sql)
            return not_(cond) if node.not_ else cond
        if isinstance(node, ast.In):
            a = self.operand(node.lhs)
            items = [self.operand(item) for item in node.sub_nodes]
            for item in items:
                self.compatible(a, item)
            cond = a.sql.in_([item.sql for item in items])
            return not_(cond) if node.not_ else cond
        if isinstance(node, ast.Like):
            return self.like(node)
        if isinstance(node, ast.IsNull):
            a = self.operand(node.lhs)
            return a.sql.is_not(None) if node.not_ else a.sql.is_(None)
        if type(node) in _SPATIAL:
            return _SPATIAL[type(node)](self.spatial(node.lhs), self.spatial(node.rhs))
        if isinstance(node, ast.BBox):
            crs = parse_ogc_crs("filter", node.crs) if node.crs else self.crs
            box = box_geometry(*self._numbers([node.minx, node.miny, node.maxx, node.maxy]), crs, "filter")
            return func.ST_Intersects(self.spatial(node.lhs), box)
        if isinstance(node, ast.SpatialDistancePredicate):
            return self.distance(node.lhs, node.rhs, node.distance, node.units, isinstance(node, ast.DistanceBeyond))
        if isinstance(node, ast.Function) and str(node.name).lower() == "s_dwithin" and len(node.arguments) == 3:
            return self.distance(*node.arguments, "meters", False)
        if isinstance(node, ast.Relate):
            if not isinstance(node.pattern, str) or not re.fullmatch(r"[012TF*]{9}", node.pattern):
                raise _bad("RELATE needs a 9-character DE-9IM pattern of 0, 1, 2, T, F and *")
            return func.ST_Relate(self.spatial(node.lhs), self.spatial(node.rhs), node.pattern)
        if isinstance(node, ast.TemporalPredicate):
            return self.temporal(node)
        if isinstance(node, ast.ArrayPredicate):
            raise _bad("array functions (A_*) are not supported")
        if isinstance(node, ast.Attribute):
            q = self.queryable(node.name)
            if q.type == "boolean" and q.column is not None:
                return q.column.is_(True)
            raise _bad(f"{node.name} is not a condition")
        raise _bad(f"unsupported expression {type(node).__name__}")

    def like(self, node: ast.Like) -> ColumnElement[bool]:
        a = self.operand(node.lhs)
        pattern = self.operand(node.pattern)
        if a.type != "string" or pattern.type != "string" or not pattern.is_literal:
            raise _bad("LIKE compares a string property with a string pattern")
        raw = node.pattern
        while isinstance(raw, ast.Function) and raw.arguments:
            raw = raw.arguments[0]
        if isinstance(raw, str) and (len(raw) - len(raw.rstrip("\\"))) % 2 == 1:
            raise _bad("a LIKE pattern may not end with a lone escape character \\")
        cond = a.sql.like(pattern.sql)
        return not_(cond) if node.not_ else cond

    def distance(self, lhs, rhs, distance, units, beyond: bool) -> ColumnElement[bool]:
        if isinstance(distance, bool) or not isinstance(distance, (int, float)) or not math.isfinite(distance):
            raise _bad("S_DWITHIN needs a distance in metres")
        if not 0 <= distance <= MAX_DISTANCE_M:
            raise _bad(f"S_DWITHIN distance must be from 0 to {MAX_DISTANCE_M} metres")
        if units not in (None, "meters", "metres", "m", "meter", "metre"):
            raise _bad("S_DWITHIN distances are in metres")
        cond = func.ST_DWithin(self.spatial(lhs), self.spatial(rhs), float(distance))
        return not_(cond) if beyond else cond


async def compile_filter(
    conn: AsyncConnection, node, queryables: Mapping[str, Queryable], crs: OgcCrs
) -> ColumnElement[bool]:
    """One boolean condition for ``node`` over ``queryables``; a 400 naming ``filter`` when the
    filter uses an unknown name, mixes types or asks for something unsupported."""
    try:
        return await _Compiler(conn, queryables, crs).condition(node)
    except BadRequest:
        raise
    except RecursionError:
        raise _bad("the filter is too deeply nested") from None
    except Exception as exc:  # noqa: BLE001 - a tree pygeofilter accepted but we cannot read: the client's filter
        log.warning("CQL2 filter not compiled: %r (%s: %s)", node, type(exc).__name__, exc)
        raise _bad(f"unsupported expression ({type(exc).__name__})") from None
