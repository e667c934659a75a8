"""GeoJSON (RFC 7946) features of organisations: WGS84 lon/lat points, rounded to 7 decimals (~1 cm).

The coordinates are the row's ``lon``/``lat`` (WGS84 as given, or derived from the Lambert 72
point by the loader); a record without both gets a ``null`` geometry, as RFC 7946 §3.2 allows.
``feature_collection`` adds the OGC API Features members ``numberMatched``, ``numberReturned``
and ``links`` when they are given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

PRECISION = 7


def point(lon: float | None, lat: float | None) -> dict | None:
    """A GeoJSON Point in lon/lat order, or None when either coordinate is missing (or not finite)."""
    if lon is None or lat is None:
        return None
    lon, lat = float(lon), float(lat)
    if not (math.isfinite(lon) and math.isfinite(lat)):
        return None
    return {"type": "Point", "coordinates": [round(lon, PRECISION), round(lat, PRECISION)]}


def feature(row: dict, properties: dict) -> dict:
    """One Feature: ``id`` = the record's legacy id, the point from ``lon``/``lat``, ``properties`` as given."""
    return {
        "type": "Feature",
        "id": row["id"],
        "geometry": point(row.get("lon"), row.get("lat")),
        "properties": properties,
    }


def feature_collection(
    features: Iterable[dict],
    *,
    number_matched: int | None = None,
    number_returned: int | None = None,
    links: list[dict] | None = None,
) -> dict:
    """A FeatureCollection; ``numberMatched``/``numberReturned``/``links`` only when given."""
    collection: dict = {"type": "FeatureCollection", "features": list(features)}
    if number_matched is not None:
        collection["numberMatched"] = number_matched
    if number_returned is not None:
        collection["numberReturned"] = number_returned
    if links is not None:
        collection["links"] = links
    return collection
