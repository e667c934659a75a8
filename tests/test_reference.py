"""Reference layers: counts, idempotent reloads, point-in-polygon and CRS agreement."""

from __future__ import annotations

import math

from sqlalchemy import text

from app.geo.crs import to_lambert72, to_wgs84
from app.loaders.reference import load_reference
from tests.conftest import REFERENCE_DIR

L72_13219 = (152302, 171263)
WGS84_13219 = (4.401445106123757, 50.851756126658735)  # as the legacy record gives them


def table_digest(conn, table: str) -> str:
    return conn.execute(text(f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t")).scalar()


def test_layer_counts(loaded):
    with loaded.connect() as conn:
        counts = {
            t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
            for t in ("commune", "quartier", "statistical_sector", "postcode", "street", "street_line")
        }
        with_geom = conn.execute(text("SELECT count(*) FROM statistical_sector WHERE geom IS NOT NULL")).scalar()
        points = conn.execute(text("SELECT count(*) FROM address_point")).scalar()
    assert counts == {
        "commune": 19, "quartier": 145, "statistical_sector": 724, "postcode": 43, "street": 5195, "street_line": 10871,
    }
    assert with_geom == 724
    assert points > 10_000


def test_reload_changes_nothing(loaded):
    tables = ("commune", "quartier", "statistical_sector", "postcode", "street", "street_line", "address_point")
    with loaded.connect() as conn:
        before = {t: table_digest(conn, t) for t in tables}
    with loaded.begin() as conn:
        load_reference(conn, REFERENCE_DIR)
    with loaded.connect() as conn:
        after = {t: table_digest(conn, t) for t in tables}
    assert after == before


def test_point_in_polygon_puts_13219_in_schaerbeek_reyers(loaded):
    x, y = L72_13219
    with loaded.connect() as conn:
        point = text("ST_SetSRID(ST_MakePoint(:x, :y), 31370)").text
        commune = conn.execute(text(f"SELECT nis_code, name_fr FROM commune WHERE ST_Contains(geom, {point})"), {"x": x, "y": y}).all()
        quartier = conn.execute(text(f"SELECT code, name_fr FROM quartier WHERE ST_Contains(geom, {point})"), {"x": x, "y": y}).all()
        sector = conn.execute(text(f"SELECT code FROM statistical_sector WHERE ST_Contains(geom, {point})"), {"x": x, "y": y}).all()
    assert commune == [("21015", "Schaerbeek")]
    assert [q[0] for q in quartier] == ["87"] and quartier[0][1] == "Reyers"
    assert sector == [("21015A77-",)]


def _metres(lon1, lat1, lon2, lat2) -> float:
    # local equirectangular distance, plenty precise at metre scale
    kx = 111_320 * math.cos(math.radians(lat1))
    return math.hypot((lon2 - lon1) * kx, (lat2 - lat1) * 110_574)


def test_lambert72_wgs84_agree_with_the_record_within_1m(loaded):
    lon, lat = to_wgs84(*L72_13219)
    assert _metres(lon, lat, *WGS84_13219) < 1.0
    x, y = to_lambert72(*WGS84_13219)
    assert math.hypot(x - L72_13219[0], y - L72_13219[1]) < 1.0
    with loaded.connect() as conn:  # PostGIS agrees with pyproj
        plon, plat = conn.execute(
            text("SELECT ST_X(p), ST_Y(p) FROM ST_Transform(ST_SetSRID(ST_MakePoint(152302, 171263), 31370), 4326) p")
        ).one()
    assert _metres(plon, plat, *WGS84_13219) < 1.0


def test_any_declared_crs_is_honoured(loaded):
    """The CRS84 and Lambert 72 files of the same layer give the same polygons once loaded."""
    import orjson

    from app.loaders.reference import declared_srid

    wgs = orjson.loads((REFERENCE_DIR / "geo" / "communes.geojson").read_bytes())
    l72 = orjson.loads((REFERENCE_DIR / "geo" / "communes_31370.geojson").read_bytes())
    assert declared_srid(wgs) == 4326 and declared_srid(l72) == 31370
    feature = next(f for f in wgs["features"] if f["properties"]["nis_code"] == "21015")
    with loaded.connect() as conn:
        ratio, distance = conn.execute(
            text(
                "SELECT ST_Area(g) / ST_Area(c.geom), ST_HausdorffDistance(g, c.geom) FROM commune c, "
                "ST_Transform(ST_SetSRID(ST_GeomFromGeoJSON(:g), 4326), 31370) g WHERE c.nis_code = '21015'"
            ),
            {"g": orjson.dumps(feature["geometry"]).decode()},
        ).one()
    assert abs(ratio - 1) < 0.001 and distance < 2.0
