"""The OGC API – Features surface's own module: collections, documents and features.

* the collections (organisations + the reference layers with polygons) and their properties;
* landing page, conformance, collection metadata (with extents), queryables and feature schemas;
* features, with their geometry built by PostGIS in the requested CRS (``ST_AsGeoJSON`` of the
  Lambert 72 column, transformed in SQL) and relayed as text: every coordinate of every CRS is
  derived from the stored ``geom`` by the same PROJ, so ``crs=EPSG:31370`` gives exactly the
  stored coordinates and CRS84 agrees with what ``bbox`` and ``filter`` select;
* the OpenAPI 3.0 document of /ogc (FastAPI's own document is 3.1).

Organisation features are flat (GIS clients make columns of them) and bilingual (``*_fr``,
``*_nl``); the record itself is ``url`` (/v1/organisations/{id}).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson
from sqlalchemy import and_, func, select, text, true
from sqlalchemy.ext.asyncio import AsyncConnection

from ..http import DATA_VERSION_SQL
from ..models import (
    LINKS,
    SRID,
    ActionZone,
    Commune,
    Organisation,
    Quartier,
    StatisticalSector,
)
from ..search.cql2 import (
    DISTRICT_QUERYABLES,
    FILTER_LANGS,
    ORGANISATION_QUERYABLES,
    Queryable,
)
from ..search.criteria import CRS84_URI, EPSG4326_URI, EPSG31370_URI, OgcCrs

JSON = "application/json"
GEOJSON = "application/geo+json"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
SCHEMA = "application/schema+json"
HTML = "text/html"
CRS_LIST = [CRS84_URI, EPSG4326_URI, EPSG31370_URI]
STORAGE_CRS = EPSG31370_URI
TRS = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/case-insensitive-comparison",
    "http://www.opengis.net/spec/cql2/1.0/conf/accent-insensitive-comparison",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
]

o = Organisation.__table__
_commune, _quartier, _sector, _zone = (m.__table__ for m in (Commune, Quartier, StatisticalSector, ActionZone))
_oz = LINKS["action_zone"]


def _string(description: str = "", fmt: str | None = None) -> dict:
    out: dict = {"type": "string"}
    if fmt:
        out["format"] = fmt
    if description:
        out["description"] = description
    return out


def _of(kind: str, description: str = "") -> dict:
    return {"type": kind, **({"description": description} if description else {})}


def _ids(description: str) -> dict:
    return {"type": "array", "items": {"type": "integer"}, "description": description}


def _strings(description: str) -> dict:
    return {"type": "array", "items": {"type": "string"}, "description": description}


ORGANISATION_PROPERTIES: dict[str, dict] = {
    "uuid": _string("Stable UUID of the record", "uuid"),
    "name_fr": _string("Official name (FR)"),
    "name_nl": _string("Official name (NL)"),
    "street_fr": _string("Street (FR)"),
    "street_nl": _string("Street (NL)"),
    "number": _string("House number"),
    "box": _string("Postal box"),
    "postcode": _of("integer", "Postcode"),
    "commune": _string("Commune NIS code"),
    "commune_fr": _string("Commune (FR)"),
    "commune_nl": _string("Commune (NL)"),
    "quartier": _string("Monitoring-quartier code"),
    "statistical_sector": _string("Statistical sector code"),
    "lang_status": _string("Language status: FR, NL or FR-NL"),
    "legal_status": _of("integer", "Legal status id"),
    "is_interpreting": _of("boolean", "Offers interpreting"),
    "sectors": _ids("Sector ids (derived from the categories through the thematic tree)"),
    "categories": _ids("Category ids, in the record's order"),
    "accreditations": _ids("Accreditation ids"),
    "phones": _strings("Phone numbers (NL and FR, unique)"),
    "emails": _strings("E-mail addresses (NL and FR, unique)"),
    "websites": _strings("Official websites (NL and FR, unique)"),
    "updated_at": _string("Last change of the record", "date-time"),
    "url": _string("The full bilingual record (v1 API)", "uri"),
}


@dataclass(frozen=True)
class Collection:
    id: str
    title: str
    description: str
    queryables: dict[str, Queryable]
    properties: dict[str, dict]
    geometry: str  # JSON Schema geometry format
    id_type: str  # integer | string
    temporal: str | None = None  # the queryable that datetime= filters on
    table: object = None  # districts: the table, its key and the SQL of each property
    key: object = None
    columns: dict = field(default_factory=dict)
    precision: int = 7  # decimals of geographic coordinates (8 ≈ 1 mm, 7 ≈ 1 cm)


def _count_by(column) -> object:
    return (
        select(func.count()).select_from(o)
        .where(o.c.publication_state == "published", column)
        .scalar_subquery()
    )


def _district(cid, title, description, table, key, id_type, columns, extra_props) -> Collection:
    properties = {
        "code": _of(id_type, "The feature id"),
        "name_nl": _string("Name (NL)"),
        "name_fr": _string("Name (FR)"),
        **extra_props,
        "organisation_count": _of("integer", "Published activity places with their address here (v1 counting rules)"),
    }
    return Collection(
        id=cid, title=title, description=description, queryables=DISTRICT_QUERYABLES[cid], properties=properties,
        geometry="geometry-multipolygon", id_type=id_type, table=table, key=table.c[key], columns=columns,
    )


COLLECTIONS: dict[str, Collection] = {
    "organisations": Collection(
        id="organisations",
        title="Activity places of the social map / Activiteitsplaatsen van de sociale kaart / Lieux d'activité de la carte sociale",
        description="Published activity places (welfare and health services) of the Brussels-Capital Region, "
        "bilingual NL/FR. Feature ids are the public legacy ids. Filter with the v1 criteria (q, sector, "
        "category, commune, …) as query parameters or with CQL2 (filter=).",
        queryables=ORGANISATION_QUERYABLES, properties=ORGANISATION_PROPERTIES, geometry="geometry-point",
        id_type="integer", temporal="updated_at", precision=8,
    ),
    "communes": _district(
        "communes", "Communes / Gemeenten", "The 19 communes of the Brussels-Capital Region (Statbel); id = NIS code.",
        _commune, "nis_code", "string",
        {"code": _commune.c.nis_code, "name_nl": _commune.c.name_nl, "name_fr": _commune.c.name_fr,
         "area_km2": _commune.c.area_km2, "organisation_count": _count_by(o.c.commune_nis == _commune.c.nis_code)},
        {"area_km2": _of("number", "Area (km²)")},
    ),
    "quartiers": _district(
        "quartiers", "Monitoring quartiers / Wijken", "The 145 quartiers of the Monitoring des Quartiers / Wijkmonitoring (UrbIS); id = code.",
        _quartier, "code", "string",
        {"code": _quartier.c.code, "name_nl": _quartier.c.name_nl, "name_fr": _quartier.c.name_fr,
         "area_km2": _quartier.c.area_km2, "organisation_count": _count_by(o.c.quartier_code == _quartier.c.code)},
        {"area_km2": _of("number", "Area (km²)")},
    ),
    "statistical-sectors": _district(
        "statistical-sectors", "Statistical sectors / Statistische sectoren / Secteurs statistiques",
        "The 724 statistical sectors of the region (Statbel, 2022); id = sector code.",
        _sector, "code", "string",
        {"code": _sector.c.code, "name_nl": _sector.c.name_nl, "name_fr": _sector.c.name_fr,
         "commune": _sector.c.commune_nis, "quartier": _sector.c.quartier_code,
         "organisation_count": _count_by(o.c.statistical_sector_code == _sector.c.code)},
        {"commune": _string("Commune NIS code"), "quartier": _string("Quartier code")},
    ),
    "action-zones": _district(
        "action-zones", "Action zones / Actiezones / Zones d'action",
        "Where services act: the region, communes and quartiers (the zones that have a polygon); id = action zone id.",
        _zone, "id", "integer",
        {"code": _zone.c.id, "name_nl": _zone.c.label_nl, "name_fr": _zone.c.label_fr, "kind": _zone.c.kind,
         "commune": _zone.c.commune_nis, "quartier": _zone.c.quartier_code,
         "organisation_count": select(func.count()).select_from(_oz.join(o, o.c.id == _oz.c.organisation_id))
         .where(o.c.publication_state == "published", _oz.c.action_zone_id == _zone.c.id).scalar_subquery()},
        {"kind": _string("region, commune or quartier"), "commune": _string("Commune NIS code"),
         "quartier": _string("Quartier code")},
    ),
}


# ---------------------------------------------------------------- documents


def link(href: str, rel: str, type_: str, title: str | None = None) -> dict:
    out = {"href": href, "rel": rel, "type": type_}
    if title:
        out["title"] = title
    return out


def landing(base: str) -> dict:
    root = f"{base}/ogc"
    return {
        "title": "Bruso — OGC API Features",
        "description": "The social map of the Brussels-Capital Region (NL/FR) as OGC API – Features "
        "(Part 1 Core, GeoJSON, OpenAPI 3.0; Part 2 CRS; Part 3 Filtering with CQL2).",
        "links": [
            link(f"{root}", "self", JSON, "This document"),
            link(f"{root}/api", "service-desc", OPENAPI, "The API definition (OpenAPI 3.0)"),
            link(f"{root}/api.html", "service-doc", HTML, "The API documentation"),
            link(f"{root}/conformance", "conformance", JSON, "Conformance classes"),
            link(f"{root}/conformance", "http://www.opengis.net/def/rel/ogc/1.0/conformance", JSON, "Conformance classes"),
            link(f"{root}/collections", "data", JSON, "The collections"),
            link(f"{root}/collections", "http://www.opengis.net/def/rel/ogc/1.0/data", JSON, "The collections"),
        ],
    }


def conformance() -> dict:
    return {"conformsTo": CONFORMANCE}


def _stamp(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def collection(base: str, coll: Collection, extent: dict) -> dict:
    root = f"{base}/ogc/collections/{coll.id}"
    doc_extent: dict = {"spatial": {"bbox": [extent["bbox"]] if extent.get("bbox") else [], "crs": CRS84_URI}}
    if coll.temporal:
        doc_extent["temporal"] = {"interval": [[_stamp(extent.get("start")), _stamp(extent.get("end"))]], "trs": TRS}
    return {
        "id": coll.id,
        "title": coll.title,
        "description": coll.description,
        "itemType": "feature",
        "links": [
            link(root, "self", JSON, "This collection"),
            link(f"{root}/items", "items", GEOJSON, "The features (GeoJSON)"),
            link(f"{root}/items?f=json", "items", JSON, "The features (JSON)"),
            link(f"{root}/queryables", "http://www.opengis.net/def/rel/ogc/1.0/queryables", SCHEMA, "Queryables for filter"),
            link(f"{root}/schema", "describedby", SCHEMA, "The schema of the features"),
            link("https://creativecommons.org/licenses/by/4.0/", "license", HTML, "CC BY 4.0"),
        ],
        "extent": doc_extent,
        "crs": CRS_LIST,
        "storageCrs": STORAGE_CRS,
    }


def collections(base: str, docs: list[dict]) -> dict:
    return {
        "links": [link(f"{base}/ogc/collections", "self", JSON, "The collections")],
        "crs": CRS_LIST,
        "collections": docs,
    }


def queryables(base: str, coll: Collection) -> dict:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{base}/ogc/collections/{coll.id}/queryables",
        "type": "object",
        "title": coll.title,
        "description": "The names a CQL2 filter (filter=) may use on this collection",
        "properties": {name: q.schema() for name, q in coll.queryables.items()},
        "additionalProperties": False,
    }


def feature_schema(base: str, coll: Collection) -> dict:
    """The JSON Schema of one feature (GDAL reads field types from it)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{base}/ogc/collections/{coll.id}/schema",
        "title": coll.title,
        "type": "object",
        "required": ["type", "geometry", "properties"],
        "properties": {
            "type": {"type": "string", "enum": ["Feature"]},
            "id": {"type": coll.id_type},
            "geometry": {"format": coll.geometry, "x-ogc-role": "primary-geometry"},
            "properties": {"type": "object", "properties": coll.properties},
        },
    }


# ---------------------------------------------------------------- geometries in SQL


def geometry_sql(column, crs: OgcCrs, precision: int):
    """GeoJSON geometry text of ``column`` (Lambert 72) in ``crs`` (lat/lon order for EPSG:4326):
    millimetres in Lambert 72, ``precision`` decimals in degrees."""
    geometry = column if crs.srid == SRID else func.ST_Transform(column, crs.srid)
    if crs.lat_lon:
        geometry = func.ST_FlipCoordinates(geometry)
    return func.ST_AsGeoJSON(geometry, 3 if crs.srid == SRID else precision, 0)  # 0: no "crs" member


def organisation_geometry(crs: OgcCrs):
    """The GeoJSON geometry column of organisations in ``crs`` (read with the stored documents)."""
    return geometry_sql(o.c.geom, crs, COLLECTIONS["organisations"].precision)


def stored_feature(fid: int, properties: str, geometry: str | None) -> dict:
    """A feature around stored properties (``app.search.documents``), the same members and order
    as ``organisation_feature``; serialized as is by orjson."""
    return {"type": "Feature", "id": fid, "geometry": orjson.Fragment(geometry) if geometry else None,
            "properties": orjson.Fragment(properties)}


def _unique(*lists) -> list:
    return list(dict.fromkeys(v for values in lists for v in (values or []) if v))


def organisation_feature(row: dict, geometry: str | None, base: str) -> dict:
    ref = row.get("commune_ref") or {}
    legal = row.get("legal_status")
    properties = {
        "uuid": str(row["uuid"]),
        "name_fr": row["name_official_fr"],
        "name_nl": row["name_official_nl"],
        "street_fr": row["street_fr"],
        "street_nl": row["street_nl"],
        "number": row["number"],
        "box": row["postal_box"],
        "postcode": row["postcode"],
        "commune": row["commune_nis"],
        "commune_fr": ref.get("fr") or row["commune_fr"],
        "commune_nl": ref.get("nl") or row["commune_nl"],
        "quartier": row["quartier_code"],
        "statistical_sector": row["statistical_sector_code"],
        "lang_status": row["lang_status"],
        "legal_status": legal["id"] if legal else None,
        "is_interpreting": row["is_interpreting"],
        "sectors": [s["id"] for s in row["sectors"]],
        "categories": [c["id"] for c in row["categories"]],
        "accreditations": [a["id"] for a in row["accreditations"]],
        "phones": _unique(row["phone_nl"], row["phone_fr"]),
        "emails": _unique(row["email_nl"], row["email_fr"]),
        "websites": _unique(row["website_official_nl"], row["website_official_fr"]),
        "updated_at": _stamp(row["updated_at"]),
        "url": f"{base}/v1/organisations/{row['id']}",
    }
    return {
        "type": "Feature",
        "id": row["id"],
        "geometry": orjson.Fragment(geometry) if geometry else None,
        "properties": properties,
    }


def _district_select(coll: Collection, crs: OgcCrs):
    return select(
        coll.key.label("__id"),
        *(sql.label(name) for name, sql in coll.columns.items()),
        geometry_sql(coll.table.c.geom, crs, coll.precision).label("__geometry"),
    )


def _district_feature(row) -> dict:
    data = dict(row._mapping)
    fid, geometry = data.pop("__id"), data.pop("__geometry")
    return {"type": "Feature", "id": fid, "geometry": orjson.Fragment(geometry) if geometry else None, "properties": data}


async def district_page(
    conn: AsyncConnection, coll: Collection, conds: list, crs: OgcCrs, limit: int, offset: int
) -> tuple[list[dict], int]:
    where = and_(true(), coll.table.c.geom.is_not(None), *conds)
    stmt = _district_select(coll, crs).where(where).order_by(coll.key).offset(offset or None).limit(limit)
    rows = (await conn.execute(stmt)).all()
    matched = (await conn.execute(select(func.count()).select_from(coll.table).where(where))).scalar_one()
    return [_district_feature(r) for r in rows], matched


async def district_feature(conn: AsyncConnection, coll: Collection, fid: str, crs: OgcCrs) -> dict | None:
    if coll.id_type == "integer":
        if not re.fullmatch(r"[0-9]{1,9}", fid):
            return None
        key = int(fid)
    else:
        if len(fid) > 64 or "\x00" in fid or not fid.isprintable():  # no such code; and NUL cannot reach SQL
            return None
        key = fid
    stmt = _district_select(coll, crs).where(coll.key == key, coll.table.c.geom.is_not(None))
    row = (await conn.execute(stmt)).first()
    return _district_feature(row) if row else None


def feature_collection(features: Iterable[dict], *, matched: int, links: list[dict]) -> dict:
    features = list(features)
    return {
        "type": "FeatureCollection",
        "numberMatched": matched,
        "numberReturned": len(features),
        "timeStamp": _stamp(dt.datetime.now(dt.UTC)),
        "links": links,
        "features": features,
    }


# ---------------------------------------------------------------- extents (cached per data version)

_EXTENTS: dict[tuple, dict] = {}


async def extent(conn: AsyncConnection, coll: Collection) -> dict:
    """CRS84 bbox (of the transformed geometries) and, for organisations, the interval of
    ``updated_at``; computed once per data version (organisations) or row count (districts)."""
    if coll.id == "organisations":
        version = (await conn.execute(text(DATA_VERSION_SQL))).scalar()
    else:
        version = (await conn.execute(select(func.count()).select_from(coll.table))).scalar()
    key = (str(conn.engine.url), coll.id, version)
    if key in _EXTENTS:
        return _EXTENTS[key]
    if coll.id == "organisations":
        box = func.ST_Extent(func.ST_Transform(o.c.geom, 4326))
        stmt = select(
            func.ST_XMin(box), func.ST_YMin(box), func.ST_XMax(box), func.ST_YMax(box),
            func.min(o.c.updated_at), func.max(o.c.updated_at),
        ).where(o.c.publication_state == "published")
    else:
        box = func.ST_Extent(func.ST_Transform(coll.table.c.geom, 4326))
        stmt = select(func.ST_XMin(box), func.ST_YMin(box), func.ST_XMax(box), func.ST_YMax(box))
    row = (await conn.execute(stmt)).one()
    result: dict = {"bbox": None}
    if row[0] is not None:  # rounded outwards to 7 decimals, so that the box still contains every feature
        x0, y0, x1, y1 = row[:4]
        result["bbox"] = [math.floor(x0 * 1e7) / 1e7, math.floor(y0 * 1e7) / 1e7,
                          math.ceil(x1 * 1e7) / 1e7, math.ceil(y1 * 1e7) / 1e7]
    if coll.id == "organisations":
        result.update(start=row[4], end=row[5])
    if len(_EXTENTS) > 64:
        _EXTENTS.clear()
    _EXTENTS[key] = result
    return result


# ---------------------------------------------------------------- OpenAPI 3.0

_PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "instance": {"type": "string"},
        "parameter": {"type": "string", "description": "The query parameter at fault"},
    },
}
_LINK = {
    "type": "object", "required": ["href", "rel"],
    "properties": {"href": {"type": "string"}, "rel": {"type": "string"}, "type": {"type": "string"},
                   "title": {"type": "string"}},
}


def _param(name: str, schema: dict, description: str, *, array: bool = False, where: str = "query",
           required: bool = False) -> dict:
    out = {"name": name, "in": where, "required": required, "description": description, "schema": schema}
    if array:
        out.update(style="form", explode=False)
    return out


def _problem(description: str) -> dict:
    return {"description": description, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


CRITERIA_DOCS = {
    "q": ("string", "Free text over NL+FR names, activities, categories and keywords (accent-, case- and typo-tolerant)"),
    "sector": ("ids", "Sector ids (comma-separated: OR); as /v1"),
    "category": ("ids", "Category ids, including the categories below them in the tree"),
    "accreditation": ("ids", "Accreditation ids"),
    "authority": ("ids", "Accrediting authority ids"),
    "commune": ("codes", "Commune NIS codes, e.g. 21015"),
    "postcode": ("ids", "Postcodes, e.g. 1030"),
    "quartier": ("codes", "Monitoring-quartier codes"),
    "statistical_sector": ("codes", "Statistical sector codes"),
    "action_zone": ("ids", "Action zone ids"),
    "offer_type": ("ids", "Offer type ids"),
    "language": ("ids", "Offered language ids"),
    "lang_status": ("codes", "Language status: FR, NL or FR-NL"),
    "legal_status": ("ids", "Legal status ids"),
    "enterprise_number": ("codes", "BCE/KBO enterprise numbers"),
    "near": ("string", "lat,lon in WGS84; features are then sorted by distance"),
    "radius": ("number", "Radius in metres around near"),
    "within": ("codes", "Inside a commune, quartier or statistical sector polygon (kind:code)"),
    "updated_since": ("string", "Only records changed since this ISO 8601 date or date-time"),
}


def openapi(base: str, default_limit: int, max_limit: int) -> dict:
    """The OpenAPI 3.0 document of /ogc: one path per collection so that clients (GDAL) see which
    query parameters each items path takes."""
    crs_schema = {"type": "string", "format": "uri", "enum": CRS_LIST}
    common = {
        "bbox": _param("bbox", {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
                       "minx,miny,maxx,maxy in bbox-crs (default CRS84, lon/lat)", array=True),
        "bbox-crs": _param("bbox-crs", crs_schema, "CRS of bbox (EPSG:4326 is lat/lon)"),
        "crs": _param("crs", {**crs_schema, "default": CRS84_URI}, "CRS of the returned geometries (Content-Crs header)"),
        "datetime": _param("datetime", {"type": "string"},
                           "Instant or interval (start/end, '..' open) on updated_at; collections without time ignore it"),
        "limit": _param("limit", {"type": "integer", "minimum": 1, "maximum": max_limit, "default": default_limit},
                        f"Page size (default {default_limit}; larger values are clamped to {max_limit})"),
        "offset": _param("offset", {"type": "integer", "minimum": 0, "default": 0}, "Features to skip"),
        "filter": _param("filter", {"type": "string"}, "CQL2 filter over the queryables"),
        "filter-lang": _param("filter-lang", {"type": "string", "enum": list(FILTER_LANGS), "default": "cql2-text"},
                              "Language of filter"),
        "filter-crs": _param("filter-crs", {**crs_schema, "default": CRS84_URI}, "CRS of the geometry literals in filter"),
        "f-items": _param("f", {"type": "string", "enum": ["geojson", "json"], "default": "geojson"},
                          "geojson (application/geo+json) or json (application/json)"),
        "f": _param("f", {"type": "string", "enum": ["json"], "default": "json"}, "json"),
    }
    parameters = {name.replace("-", "_"): value for name, value in common.items()}
    ref = {name: {"$ref": f"#/components/parameters/{name.replace('-', '_')}"} for name in common}
    feature_id = {"string": {"type": "string"}, "integer": {"type": "integer"}}

    def ok(description: str, media: dict, headers: dict | None = None) -> dict:
        out: dict = {"description": description, "content": media}
        if headers:
            out["headers"] = headers
        return out

    content_crs = {"Content-Crs": {"description": "The CRS of the geometries, as <URI>", "schema": {"type": "string"}}}
    errors = {"400": _problem("A parameter is unknown or malformed"), "500": _problem("Server error")}
    paths: dict = {
        "/": {"get": {"operationId": "getLandingPage", "summary": "Landing page", "tags": ["Capabilities"],
                      "parameters": [ref["f"]],
                      "responses": {"200": ok("Links to the API", {JSON: {"schema": {"$ref": "#/components/schemas/LandingPage"}}}), **errors}}},
        "/conformance": {"get": {"operationId": "getConformance", "summary": "Conformance classes", "tags": ["Capabilities"],
                                 "parameters": [ref["f"]],
                                 "responses": {"200": ok("The conformance classes", {JSON: {"schema": {"$ref": "#/components/schemas/ConfClasses"}}}), **errors}}},
        "/api": {"get": {"operationId": "getApi", "summary": "This document", "tags": ["Capabilities"],
                         "parameters": [ref["f"]],
                         "responses": {"200": ok("OpenAPI 3.0", {OPENAPI: {"schema": {"type": "object"}}}), **errors}}},
        "/collections": {"get": {"operationId": "getCollections", "summary": "The collections", "tags": ["Capabilities"],
                                 "parameters": [ref["f"]],
                                 "responses": {"200": ok("The collections", {JSON: {"schema": {"$ref": "#/components/schemas/Collections"}}}), **errors}}},
    }
    for coll in COLLECTIONS.values():
        root = f"/collections/{coll.id}"
        tag = coll.id
        criteria = []
        if coll.id == "organisations":
            for name, (kind, description) in CRITERIA_DOCS.items():
                schema = {"ids": {"type": "array", "items": {"type": "integer"}},
                          "codes": {"type": "array", "items": {"type": "string"}},
                          "string": {"type": "string"}, "number": {"type": "number"}}[kind]
                criteria.append(_param(name, schema, description, array=kind in ("ids", "codes")))
        not_found = {"404": _problem("No such collection or feature")}
        paths[root] = {"get": {
            "operationId": f"describe_{coll.id.replace('-', '_')}", "summary": f"{coll.title}", "tags": [tag],
            "parameters": [ref["f"]],
            "responses": {"200": ok("Collection metadata", {JSON: {"schema": {"$ref": "#/components/schemas/Collection"}}}), **errors, **not_found}}}
        paths[f"{root}/items"] = {"get": {
            "operationId": f"get_{coll.id.replace('-', '_')}_items", "summary": f"Features of {coll.id}", "tags": [tag],
            "parameters": [ref[n] for n in ("bbox", "bbox-crs", "crs", "datetime", "limit", "offset", "filter",
                                             "filter-lang", "filter-crs", "f-items")] + criteria,
            "responses": {"200": ok("A page of features", {
                GEOJSON: {"schema": {"$ref": "#/components/schemas/FeatureCollection"}},
                JSON: {"schema": {"$ref": "#/components/schemas/FeatureCollection"}}}, content_crs), **errors, **not_found}}}
        paths[f"{root}/items/{{featureId}}"] = {"get": {
            "operationId": f"get_{coll.id.replace('-', '_')}_item", "summary": f"One feature of {coll.id}", "tags": [tag],
            "parameters": [_param("featureId", feature_id[coll.id_type], "The feature id", where="path", required=True),
                           ref["crs"], ref["f-items"]],
            "responses": {"200": ok("The feature", {GEOJSON: {"schema": {"$ref": "#/components/schemas/Feature"}},
                                                   JSON: {"schema": {"$ref": "#/components/schemas/Feature"}}}, content_crs),
                          **errors, **not_found}}}
        paths[f"{root}/queryables"] = {"get": {
            "operationId": f"get_{coll.id.replace('-', '_')}_queryables", "summary": f"Queryables of {coll.id}", "tags": [tag],
            "parameters": [ref["f"]],
            "responses": {"200": ok("JSON Schema of the queryables", {SCHEMA: {"schema": {"type": "object"}}}), **errors, **not_found}}}
        paths[f"{root}/schema"] = {"get": {
            "operationId": f"get_{coll.id.replace('-', '_')}_schema", "summary": f"Feature schema of {coll.id}", "tags": [tag],
            "parameters": [ref["f"]],
            "responses": {"200": ok("JSON Schema of the features", {SCHEMA: {"schema": {"type": "object"}}}), **errors, **not_found}}}
    links = {"type": "array", "items": {"$ref": "#/components/schemas/Link"}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Bruso — OGC API Features",
            "version": "1.0.0",
            "description": "The social map of the Brussels-Capital Region as OGC API – Features. Conformance: "
            + ", ".join(c.rsplit("/", 1)[-1] for c in CONFORMANCE),
            "license": {"name": "CC BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"},
        },
        "servers": [{"url": f"{base}/ogc"}],
        "tags": [{"name": "Capabilities"}, *({"name": c} for c in COLLECTIONS)],
        "paths": paths,
        "components": {
            "parameters": parameters,
            "schemas": {
                "Problem": _PROBLEM,
                "Link": _LINK,
                "LandingPage": {"type": "object", "required": ["links"],
                                "properties": {"title": {"type": "string"}, "description": {"type": "string"}, "links": links}},
                "ConfClasses": {"type": "object", "required": ["conformsTo"],
                                "properties": {"conformsTo": {"type": "array", "items": {"type": "string"}}}},
                "Collection": {"type": "object", "required": ["id", "links"],
                               "properties": {"id": {"type": "string"}, "title": {"type": "string"},
                                              "description": {"type": "string"}, "links": links,
                                              "extent": {"type": "object"}, "itemType": {"type": "string"},
                                              "crs": {"type": "array", "items": {"type": "string"}},
                                              "storageCrs": {"type": "string"}}},
                "Collections": {"type": "object", "required": ["links", "collections"],
                                "properties": {"links": links, "crs": {"type": "array", "items": {"type": "string"}},
                                               "collections": {"type": "array", "items": {"$ref": "#/components/schemas/Collection"}}}},
                "Feature": {"type": "object", "required": ["type", "geometry", "properties"],
                            "properties": {"type": {"type": "string", "enum": ["Feature"]},
                                           "id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                                           "geometry": {"type": "object", "nullable": True},
                                           "properties": {"type": "object", "nullable": True},
                                           "links": links}},
                "FeatureCollection": {"type": "object", "required": ["type", "features"],
                                      "properties": {"type": {"type": "string", "enum": ["FeatureCollection"]},
                                                     "features": {"type": "array", "items": {"$ref": "#/components/schemas/Feature"}},
                                                     "links": links, "timeStamp": {"type": "string", "format": "date-time"},
                                                     "numberMatched": {"type": "integer", "minimum": 0},
                                                     "numberReturned": {"type": "integer", "minimum": 0}}},
            },
        },
    }
