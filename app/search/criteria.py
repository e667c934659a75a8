"""Criteria: every filter of the social map, parsed once from query parameters for every surface.

A query parameter means the same thing on v1, OGC, HSDS, legacy /rest, exports and embeds. Lists
accept repetition (``category=1&category=2``) and commas (``category=1,2``): OR within a criterion,
AND across criteria. Every parse error is a 400 naming the parameter.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ..errors import BadRequest
from ..identifiers import InvalidEnterpriseNumber, normalise_enterprise_number

Sort = Literal["relevance", "name", "distance", "updated"]
SORTS: tuple[str, ...] = ("relevance", "name", "distance", "updated")
LANG_STATUSES = ("FR", "NL", "FR-NL")
WITHIN_KINDS = ("commune", "quartier", "statistical_sector")


class Criteria(BaseModel):
    """What to find. Empty tuples and None mean "no constraint"."""

    model_config = ConfigDict(frozen=True)

    q: str | None = None
    sector: tuple[int, ...] = ()
    category: tuple[int, ...] = ()
    accreditation: tuple[int, ...] = ()
    authority: tuple[int, ...] = ()
    commune: tuple[str, ...] = ()
    postcode: tuple[int, ...] = ()
    quartier: tuple[str, ...] = ()
    statistical_sector: tuple[str, ...] = ()
    action_zone: tuple[int, ...] = ()
    offer_type: tuple[int, ...] = ()
    language: tuple[int, ...] = ()
    lang_status: tuple[str, ...] = ()
    legal_status: tuple[int, ...] = ()
    enterprise_number: tuple[str, ...] = ()
    near: tuple[float, float] | None = None  # (lat, lon), WGS84
    radius: float | None = None  # metres
    bbox: tuple[float, float, float, float] | None = None
    bbox_crs: int = 4326
    within: tuple[tuple[str, str], ...] = ()  # (kind, code)
    updated_since: dt.datetime | None = None
    ids: tuple[int, ...] = ()


# ---------------------------------------------------------------- parsers (each raises BadRequest)


def bad(parameter: str, reason: str) -> BadRequest:
    return BadRequest(f"{parameter}: {reason}", parameter=parameter)


def split(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def int_list(name: str, values: Sequence[str], lo: int = 1, hi: int = 2**31 - 1) -> tuple[int, ...]:
    out = []
    for part in split(values):
        if not re.fullmatch(r"[+-]?\d{1,12}", part) or not lo <= int(part) <= hi:
            raise bad(name, f"{part!r} is not an id (an integer from {lo} to {hi})")
        out.append(int(part))
    return tuple(dict.fromkeys(out))


def code_list(name: str, values: Sequence[str], pattern: str, example: str) -> tuple[str, ...]:
    out = []
    for part in split(values):
        if not re.fullmatch(pattern, part):
            raise bad(name, f"{part!r} is not a valid code (e.g. {example})")
        out.append(part)
    return tuple(dict.fromkeys(out))


COMMUNE_CODE = r"21\d{3}"
QUARTIER_CODE = r"\d{1,3}"
SECTOR_CODE = r"21\d{3}[A-Z0-9]{3}[0-9A-Z-]"


def number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise bad(name, f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise bad(name, f"{text!r} is not a finite number")
    return value


def parse_near(text: str) -> tuple[float, float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise bad("near", "expected 'lat,lon' in WGS84 degrees, e.g. near=50.8466,4.3528")
    lat, lon = (number("near", p.strip()) for p in parts)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise bad("near", f"{text!r} is not a latitude,longitude pair")
    return lat, lon


def parse_bbox(text: str, crs: int) -> tuple[float, float, float, float]:
    parts = text.split(",")
    if len(parts) != 4:
        raise bad("bbox", "expected four numbers minx,miny,maxx,maxy (lon/lat for CRS84)")
    x0, y0, x1, y1 = (number("bbox", p.strip()) for p in parts)
    if x0 > x1 or y0 > y1:
        raise bad("bbox", "minimum greater than maximum")
    if crs == 4326 and not (-180 <= x0 <= 180 and -180 <= x1 <= 180 and -90 <= y0 <= 90 and -90 <= y1 <= 90):
        raise bad("bbox", "longitudes must be within ±180 and latitudes within ±90")
    return x0, y0, x1, y1


BBOX_CRS = {
    "http://www.opengis.net/def/crs/OGC/1.3/CRS84": 4326,
    "CRS84": 4326,
    "EPSG:4326": 4326,
    "http://www.opengis.net/def/crs/EPSG/0/4326": 4326,
    "EPSG:31370": 31370,
    "http://www.opengis.net/def/crs/EPSG/0/31370": 31370,
}


def parse_crs(name: str, text: str) -> int:
    if text not in BBOX_CRS:
        raise bad(name, f"unsupported CRS {text!r}; use CRS84 (…/OGC/1.3/CRS84) or EPSG:31370")
    return BBOX_CRS[text]


def parse_datetime(name: str, text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise bad(name, f"{text!r} is not an ISO 8601 date or date-time (e.g. 2024-05-01 or 2024-05-01T12:00:00Z)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value


def parse_within(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for part in split(values):
        kind, _, code = part.rpartition(":")
        if kind and kind not in WITHIN_KINDS:
            raise bad("within", f"unknown kind {kind!r}; use commune:, quartier: or statistical_sector:")
        if not kind:
            if re.fullmatch(COMMUNE_CODE, code):
                kind = "commune"
            elif re.fullmatch(SECTOR_CODE, code):
                kind = "statistical_sector"
            elif re.fullmatch(QUARTIER_CODE, code):
                kind = "quartier"
            else:
                raise bad("within", f"{part!r} is not a commune NIS code, quartier code or statistical sector code")
        out.append((kind, code))
    return tuple(dict.fromkeys(out))


def parse_criteria(params: Mapping[str, Sequence[str]], max_radius: float) -> Criteria:
    """Criteria from a multi-valued mapping of query parameters (only the criteria keys are read)."""

    def one(name: str) -> str | None:
        values = params.get(name) or []
        if len(values) > 1:
            raise bad(name, "give this parameter once")
        return values[0] if values else None

    fields: dict = {}
    q = one("q")
    if q is not None:
        q = q.strip()
        if len(q) > 200:
            raise bad("q", "at most 200 characters")
        fields["q"] = q or None
    for name in ("sector", "category", "accreditation", "authority", "action_zone", "offer_type", "language", "legal_status"):
        fields[name] = int_list(name, params.get(name) or [])
    fields["postcode"] = int_list("postcode", params.get("postcode") or [], 1000, 1299)
    fields["commune"] = code_list("commune", params.get("commune") or [], COMMUNE_CODE, "21015")
    fields["quartier"] = code_list("quartier", params.get("quartier") or [], QUARTIER_CODE, "87")
    fields["statistical_sector"] = code_list("statistical_sector", params.get("statistical_sector") or [], SECTOR_CODE, "21015A77-")
    statuses = tuple(dict.fromkeys(s.upper() for s in split(params.get("lang_status") or [])))
    for status in statuses:
        if status not in LANG_STATUSES:
            raise bad("lang_status", f"{status!r} is not one of FR, NL, FR-NL")
    fields["lang_status"] = statuses
    numbers = []
    for value in split(params.get("enterprise_number") or []):
        try:
            numbers.append(normalise_enterprise_number(value))
        except InvalidEnterpriseNumber as exc:
            raise bad("enterprise_number", str(exc)) from None
    fields["enterprise_number"] = tuple(numbers)

    near, radius = one("near"), one("radius")
    if near is not None:
        fields["near"] = parse_near(near)
    if radius is not None:
        if near is None:
            raise bad("radius", "radius needs near=lat,lon")
        value = number("radius", radius)
        if not 0 < value <= max_radius:
            raise bad("radius", f"must be greater than 0 and at most {max_radius:g} metres")
        fields["radius"] = value
    bbox_crs = one("bbox-crs")
    crs = parse_crs("bbox-crs", bbox_crs) if bbox_crs else 4326
    bbox = one("bbox")
    if bbox is not None:
        fields["bbox"] = parse_bbox(bbox, crs)
        fields["bbox_crs"] = crs
    elif bbox_crs:
        raise bad("bbox-crs", "bbox-crs needs bbox")
    fields["within"] = parse_within(params.get("within") or [])
    since = one("updated_since")
    if since is not None:
        fields["updated_since"] = parse_datetime("updated_since", since)
    return Criteria(**fields)


CRITERIA_PARAMETERS = frozenset(
    {
        "q", "sector", "category", "accreditation", "authority", "commune", "postcode", "quartier",
        "statistical_sector", "action_zone", "offer_type", "language", "lang_status", "legal_status",
        "enterprise_number", "near", "radius", "bbox", "bbox-crs", "within", "updated_since",
    }
)


# ---------------------------------------------------------------- OGC API parsers (CRS URIs, datetime)
# Additions for the OGC surface; nothing above uses them.

CRS84_URI = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG4326_URI = "http://www.opengis.net/def/crs/EPSG/0/4326"
EPSG31370_URI = "http://www.opengis.net/def/crs/EPSG/0/31370"


class OgcCrs(BaseModel):
    """A CRS of the OGC surface: its URI, the SRID of its coordinates and whether they are given
    latitude first (EPSG:4326 is lat/lon; CRS84 is lon/lat)."""

    model_config = ConfigDict(frozen=True)

    uri: str
    srid: int
    lat_lon: bool = False


OGC_CRSS = {
    CRS84_URI: OgcCrs(uri=CRS84_URI, srid=4326),
    EPSG4326_URI: OgcCrs(uri=EPSG4326_URI, srid=4326, lat_lon=True),
    EPSG31370_URI: OgcCrs(uri=EPSG31370_URI, srid=31370),
}
_CRS_ALIASES = {
    "crs84": CRS84_URI, "ogc:crs84": CRS84_URI, "urn:ogc:def:crs:ogc:1.3:crs84": CRS84_URI,
    "https://www.opengis.net/def/crs/ogc/1.3/crs84": CRS84_URI,
    "epsg:4326": EPSG4326_URI, "urn:ogc:def:crs:epsg::4326": EPSG4326_URI,
    "https://www.opengis.net/def/crs/epsg/0/4326": EPSG4326_URI,
    "epsg:31370": EPSG31370_URI, "urn:ogc:def:crs:epsg::31370": EPSG31370_URI,
    "https://www.opengis.net/def/crs/epsg/0/31370": EPSG31370_URI,
}


def parse_ogc_crs(name: str, text: str) -> OgcCrs:
    """A CRS given as a URI (``http://www.opengis.net/def/crs/EPSG/0/31370``), a safe CURIE
    (``[EPSG:31370]``), a URN or a short form (``EPSG:31370``, ``CRS84``)."""
    key = text.strip()
    if key in OGC_CRSS:
        return OGC_CRSS[key]
    folded = key.removeprefix("[").removesuffix("]").lower()
    if folded in _CRS_ALIASES:
        return OGC_CRSS[_CRS_ALIASES[folded]]
    raise bad(name, f"unsupported CRS {text!r}; supported: {', '.join(OGC_CRSS)}")


_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_datetime_interval(name: str, text: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """An OGC ``datetime``: an instant or an interval ``start/end`` (``..`` or empty = open) →
    a half-open range [start, end) in UTC (None = open). A date covers its whole day, a date-time
    instant is [t, t + 1 µs) (PostgreSQL's resolution); both ends open is a 400."""

    def bound(part: str, end: bool) -> dt.datetime | None:
        part = part.strip()
        if _DATE_ONLY.fullmatch(part[:-1]) and part.endswith("T"):  # GDAL sends dates as 2024-01-01T
            part = part[:-1]
        if part in ("", ".."):
            return None
        value = parse_datetime(name, part)
        if end:
            try:
                value += dt.timedelta(days=1) if _DATE_ONLY.fullmatch(part) else dt.timedelta(microseconds=1)
            except OverflowError:
                raise bad(name, f"{part!r} is out of range") from None
        return value

    text = text.strip()
    if not text:
        raise bad(name, "empty value")
    if "/" in text:
        parts = text.split("/")
        if len(parts) != 2:
            raise bad(name, f"{text!r} is not an instant or an interval start/end")
        start, end = bound(parts[0], False), bound(parts[1], True)
        if start is None and end is None:
            raise bad(name, "an interval needs at least one bound")
        if start is not None and end is not None and start >= end:
            raise bad(name, "the start of the interval is after its end")
        return start, end
    if text == "..":
        raise bad(name, "'..' is only allowed as one bound of an interval")
    return bound(text, False), bound(text, True)
