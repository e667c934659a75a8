"""Coordinate transforms between Belgian Lambert 72 (EPSG:31370) and WGS84 (lon/lat order)."""

from __future__ import annotations

from functools import lru_cache

from pyproj import Transformer

LAMBERT72 = 31370
WGS84 = 4326

# Region of Brussels-Capital with a margin, in both CRSs: a cheap first check for coordinates.
BRUSSELS_BBOX_WGS84 = (4.23, 50.75, 4.50, 50.93)
BRUSSELS_BBOX_L72 = (138_000.0, 160_000.0, 162_000.0, 180_000.0)


@lru_cache(maxsize=None)
def _transformer(src: int, dst: int) -> Transformer:
    return Transformer.from_crs(src, dst, always_xy=True)


def to_wgs84(x: float, y: float) -> tuple[float, float]:
    """Lambert 72 metres → (lon, lat)."""
    return _transformer(LAMBERT72, WGS84).transform(x, y)


def to_lambert72(lon: float, lat: float) -> tuple[float, float]:
    """(lon, lat) → Lambert 72 metres."""
    return _transformer(WGS84, LAMBERT72).transform(lon, lat)


def many_to_lambert72(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """[(lon, lat), …] → Lambert 72 metres, in one call of PROJ."""
    xs, ys = _transformer(WGS84, LAMBERT72).transform([p[0] for p in points], [p[1] for p in points])
    return list(zip(xs, ys))


def in_brussels_bbox_wgs84(lon: float, lat: float) -> bool:
    x0, y0, x1, y1 = BRUSSELS_BBOX_WGS84
    return x0 <= lon <= x1 and y0 <= lat <= y1


def in_brussels_bbox_l72(x: float, y: float) -> bool:
    x0, y0, x1, y1 = BRUSSELS_BBOX_L72
    return x0 <= x <= x1 and y0 <= y <= y1


# Where lon/lat can go to Lambert 72 sensibly (a world-wide box cannot): Europe, widely.
LAMBERT72_WINDOW = (-30.0, 25.0, 40.0, 80.0)


def clip_to_window(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
    """A lon/lat box clipped to LAMBERT72_WINDOW; a box outside it becomes the window's corner
    point (where nothing is)."""
    w0, v0, w1, v1 = LAMBERT72_WINDOW
    x0, y0, x1, y1 = max(x0, w0), max(y0, v0), min(x1, w1), min(y1, v1)
    if x0 > x1 or y0 > y1:
        return w0, v0, w0, v0
    return x0, y0, x1, y1
