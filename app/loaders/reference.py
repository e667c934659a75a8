"""Load the Brussels reference layers (communes, quartiers, statistical sectors, postcodes, streets,
address points) from ``BRUSO_REFERENCE_DIR/geo``.

GeoJSON files may be in any CRS they declare (``crs`` member, else CRS84 per RFC 7946); PostGIS
transforms them to Lambert 72. Rows are merged by their natural keys (upsert + delete of rows gone
from the source), so loading the same files twice changes nothing.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path

import orjson
from sqlalchemy import Connection, text

from ..models import SRID
from . import LoadError, Problem
from .sql import copy_rows, temp_table

_EPSG = re.compile(r"(?:EPSG:+|EPSG/\d+/)(\d+)$", re.I)


def declared_srid(collection: dict) -> int:
    """The SRID a GeoJSON file declares (legacy ``crs`` member); CRS84/4326 when absent."""
    name = ((collection.get("crs") or {}).get("properties") or {}).get("name", "")
    if not name or "CRS84" in name.upper():
        return 4326
    match = _EPSG.search(name)
    if not match:
        raise ValueError(f"unsupported crs {name!r}")
    return int(match.group(1))


def _read_geojson(path: Path) -> tuple[int, list[dict]]:
    collection = orjson.loads(path.read_bytes())
    return declared_srid(collection), collection["features"]


def _pick(geo: Path, layer: str) -> Path | None:
    """Prefer the file already in Lambert 72, else the CRS84 one."""
    for name in (f"{layer}_31370.geojson", f"{layer}.geojson"):
        if (geo / name).is_file():
            return geo / name
    return None


def _geom_sql(multi: bool = True) -> str:
    inner = f"ST_Transform(ST_SetSRID(ST_GeomFromGeoJSON(s.geojson), s.srid), {SRID})"
    return f"ST_Multi({inner})" if multi else inner


def _none(value):
    return None if value in ("", None) else value


def _postcode(value: str | None) -> int | None:
    """``'B-1000'`` → 1000 (the OSM extract has a few prefixed postcodes)."""
    digits = re.sub(r"\D", "", value or "")
    return int(digits) if len(digits) == 4 else None


def _merge(conn: Connection, table: str, key: str, columns: list[str], select_sql: str) -> None:
    """Upsert from a SELECT and delete rows of ``table`` whose key is no longer in it."""
    cols = ", ".join(columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != key)
    changed = " OR ".join(f"{table}.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in columns if c != key)
    temp_table(conn, f"_merge_{table}", f"AS {select_sql}")
    conn.execute(
        text(
            f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _merge_{table} "
            f"ON CONFLICT ({key}) DO UPDATE SET {updates} WHERE {changed}"
        )
    )
    conn.execute(text(f"DELETE FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM _merge_{table} m WHERE m.{key} = t.{key})"))


def _stage_features(conn: Connection, name: str, path: Path, props: list[str]) -> None:
    srid, features = _read_geojson(path)
    temp_table(conn, name, "(srid int, geojson text, props jsonb)")
    rows = (
        (srid, orjson.dumps(f["geometry"]).decode(), orjson.dumps({k: f["properties"].get(k) for k in props}).decode())
        for f in features
    )
    copy_rows(conn, name, ["srid", "geojson", "props"], rows)


def load_communes(conn: Connection, geo: Path) -> None:
    path = _pick(geo, "communes")
    if path is None:
        raise LoadError([Problem(str(geo), "-", "communes", None, "no communes(.geojson|_31370.geojson) file")])
    _stage_features(conn, "_communes", path, ["nis_code", "name_nl", "name_fr", "area_km2"])
    _merge(
        conn,
        "commune",
        "nis_code",
        ["nis_code", "name_nl", "name_fr", "area_km2", "geom"],
        f"""SELECT props->>'nis_code' AS nis_code, props->>'name_nl' AS name_nl, props->>'name_fr' AS name_fr,
                  (props->>'area_km2')::float AS area_km2, {_geom_sql()} AS geom FROM _communes s""",
    )


def load_quartiers(conn: Connection, geo: Path) -> None:
    path = _pick(geo, "quartiers")
    if path is None:
        return
    _stage_features(
        conn,
        "_quartiers",
        path,
        ["mdrc", "name_nl", "name_fr", "name_nl_display", "name_fr_display", "inspire_id", "area_km2"],
    )
    _merge(
        conn,
        "quartier",
        "code",
        ["code", "name_nl", "name_fr", "name_nl_official", "name_fr_official", "inspire_id", "area_km2", "geom"],
        f"""SELECT props->>'mdrc' AS code,
                  coalesce(props->>'name_nl_display', props->>'name_nl') AS name_nl,
                  coalesce(props->>'name_fr_display', props->>'name_fr') AS name_fr,
                  props->>'name_nl' AS name_nl_official, props->>'name_fr' AS name_fr_official,
                  props->>'inspire_id' AS inspire_id, (props->>'area_km2')::float AS area_km2,
                  {_geom_sql()} AS geom FROM _quartiers s""",
    )


def load_statistical_sectors(conn: Connection, geo: Path) -> None:
    """Polygons when a GeoJSON is present; else codes and names from the CSV (geometry NULL)."""
    path = _pick(geo, "statistical_sectors")
    props = ["cd_sector", "name_nl", "name_fr", "name_nl_display", "name_fr_display", "nis_municipality", "mdrc"]
    if path is not None:
        _stage_features(conn, "_sectors", path, props)
        geom = _geom_sql()
    else:
        names = geo / "statistical_sectors_names.csv"
        if not names.is_file():
            return
        temp_table(conn, "_sectors", "(srid int, geojson text, props jsonb)")
        with names.open(newline="", encoding="utf-8") as fh:
            rows = (
                (None, None, json.dumps({**row, "name_nl": row["name_nl_statbel"], "name_fr": row["name_fr_statbel"]}))
                for row in csv.DictReader(fh)
            )
            copy_rows(conn, "_sectors", ["srid", "geojson", "props"], rows)
        geom = "NULL::geometry"
    _merge(
        conn,
        "statistical_sector",
        "code",
        ["code", "name_nl", "name_fr", "name_nl_official", "name_fr_official", "commune_nis", "quartier_code", "geom"],
        f"""SELECT props->>'cd_sector' AS code,
                  coalesce(props->>'name_nl_display', props->>'name_nl') AS name_nl,
                  coalesce(props->>'name_fr_display', props->>'name_fr') AS name_fr,
                  props->>'name_nl' AS name_nl_official, props->>'name_fr' AS name_fr_official,
                  props->>'nis_municipality' AS commune_nis,
                  (SELECT q.code FROM quartier q WHERE q.code = props->>'mdrc') AS quartier_code,
                  {geom} AS geom FROM _sectors s""",
    )


def load_postcodes(conn: Connection, geo: Path) -> None:
    path = geo / "postcodes.csv"
    if not path.is_file():
        return
    temp_table(conn, "_postcodes", "(LIKE postcode)")
    columns = ["postcode", "name_nl", "name_fr", "kind", "commune_nis", "commune_nis_codes"]
    with path.open(newline="", encoding="utf-8") as fh:
        rows = (
            (
                int(r["postcode"]), r["postname_nl"], r["postname_fr"], r["kind"],
                _none(r["statbel_refnis"].split("|")[0]),
                [c for c in r["municipality_nis"].split("|") if c],
            )
            for r in csv.DictReader(fh)
        )
        copy_rows(conn, "_postcodes", columns, rows)
    _merge(conn, "postcode", "postcode", columns, "SELECT * FROM _postcodes")


def _replace(conn: Connection, table: str, columns: dict[str, str], rows: Iterator[tuple], geom_sql: str) -> None:
    """Reload a table that nothing references (ids = row order in the source, so deterministic).

    Rewrites only when the content differs: re-running with the same files changes nothing.
    """
    names = list(columns)
    cols = ", ".join(names)
    typed = ", ".join(f"{c} {t}" for c, t in columns.items())
    temp_table(conn, f"_{table}", f"(srid int, geojson text, {typed})")
    copy_rows(conn, f"_{table}", ["srid", "geojson", *names], rows)
    temp_table(conn, f"_new_{table}", f"AS SELECT (row_number() OVER ())::int AS id, {cols}, {geom_sql} AS geom FROM _{table} s")
    differs = conn.execute(
        text(
            f"SELECT EXISTS (SELECT id, {cols}, geom FROM _new_{table} EXCEPT SELECT id, {cols}, geom FROM {table}) "
            f"OR (SELECT count(*) FROM _new_{table}) <> (SELECT count(*) FROM {table})"
        )
    ).scalar()
    if differs:
        conn.execute(text(f"DELETE FROM {table}"))
        conn.execute(text(f"INSERT INTO {table} (id, {cols}, geom) SELECT id, {cols}, geom FROM _new_{table}"))


def load_streets(conn: Connection, geo: Path) -> None:
    path = geo / "streets_best.csv"
    if path.is_file():
        with path.open(newline="", encoding="utf-8") as fh:
            rows = (
                (
                    4326 if r["rep_lon"] else None,
                    f'{{"type":"Point","coordinates":[{r["rep_lon"]},{r["rep_lat"]}]}}' if r["rep_lon"] else None,
                    _none(r["best_street_id"]),
                    _postcode(r["postcode"]),
                    _none(r["nis_municipality"]),
                    _none(r["street_nl"]),
                    _none(r["street_fr"]),
                    _none(r["street_de"]),
                )
                for r in csv.DictReader(fh)
            )
            _replace(
                conn,
                "street",
                {"best_id": "text", "postcode": "int", "commune_nis": "text", "name_nl": "text", "name_fr": "text", "name_de": "text"},
                rows,
                f"CASE WHEN s.geojson IS NULL THEN NULL ELSE {_geom_sql(multi=False)} END",
            )
    path = geo / "streets_osm.geojson"
    if path.is_file():
        srid, features = _read_geojson(path)
        rows = (
            (
                srid,
                orjson.dumps(f["geometry"]).decode(),
                f"{f['properties'].get('osm_type')}/{f['properties'].get('osm_id')}",
                f["properties"].get("name_nl"),
                f["properties"].get("name_fr"),
                f["properties"].get("nis_municipality"),
            )
            for f in features
            if f.get("geometry")
        )
        _replace(
            conn, "street_line", {"osm_id": "text", "name_nl": "text", "name_fr": "text", "commune_nis": "text"}, rows, _geom_sql()
        )


def load_address_points(conn: Connection, geo: Path) -> None:
    def osm() -> Iterator[tuple]:
        path = geo / "addresses_osm2013.csv"
        if not path.is_file():
            return
        with path.open(newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                yield (
                    31370, f'{{"type":"Point","coordinates":[{r["x_31370"]},{r["y_31370"]}]}}',
                    "osm2013", f'{r["osm_type"]}/{r["osm_id"]}', _none(r["street_nl"]), _none(r["street_fr"]),
                    _none(r["housenumber"]), None, _postcode(r["postcode"]), _none(r["nis_municipality"]),
                    _none(r["cd_sector"]), _none(r["mdrc"]),
                )

    def best() -> Iterator[tuple]:
        path = geo / "addresses_best_haren.csv"
        if not path.is_file():
            return
        with path.open(newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                yield (
                    31370, f'{{"type":"Point","coordinates":[{r["x_31370"]},{r["y_31370"]}]}}',
                    "best", r["address_id"], _none(r["streetname_nl"]), _none(r["streetname_fr"]),
                    _none(r["house_number"]), _none(r["box_number"]), _postcode(r["postcode"]),
                    _none(r["municipality_nis"]), None, _none(r["pip_mdrc"]),
                )

    def rows() -> Iterator[tuple]:
        yield from best()
        yield from osm()

    cols = {"source": "text", "source_id": "text", "street_nl": "text", "street_fr": "text", "number": "text",
            "box": "text", "postcode": "int", "commune_nis": "text", "statistical_sector_code": "text",
            "quartier_code": "text"}
    _replace(conn, "address_point", cols, rows(), _geom_sql(multi=False))


def load_reference(conn: Connection, reference_dir: Path) -> dict[str, int]:
    """Load every reference layer found under ``reference_dir/geo`` in one transaction."""
    geo = Path(reference_dir) / "geo"
    if not geo.is_dir():
        raise LoadError([Problem(str(geo), "-", "-", None, "reference directory has no geo/ folder")])
    load_communes(conn, geo)
    load_quartiers(conn, geo)
    load_statistical_sectors(conn, geo)
    load_postcodes(conn, geo)
    load_streets(conn, geo)
    load_address_points(conn, geo)
    conn.execute(text("REFRESH MATERIALIZED VIEW suggest_entry"))
    from ..search import documents  # records show commune names: rebuild their documents

    documents.drop_all(conn)
    documents.refresh(conn)
    counts = {}
    for table in ("commune", "quartier", "statistical_sector", "postcode", "street", "street_line", "address_point"):
        counts[table] = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    return counts
