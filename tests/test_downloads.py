"""Precomputed bulk downloads: the build (complete, idempotent, atomic, keyed by the data version)
and the HTTP surface (ETag, Last-Modified, Content-Length, gzip, Range, 304, HEAD, 404, 503)."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import gzip
import hashlib
import io
from email.utils import format_datetime

import orjson
import pytest
from sqlalchemy import text

from app import downloads
from app.downloads import FILES, build_downloads
from app.routers.downloads import Unsatisfiable, parse_range

SMALL_CHUNKS = 64 * 1024  # so that the HTTP tests cross chunk boundaries


@pytest.fixture(scope="module")
def built(loaded, settings):
    """Built once with small chunks (forced: the catalogue tests may have built already)."""
    return build_downloads(loaded, settings=settings, force=True, chunk_size=SMALL_CHUNKS)


@pytest.fixture(scope="module")
def stored(built, loaded) -> dict[str, dict]:
    with loaded.connect() as conn:
        rows = conn.execute(text(f"SELECT {downloads.FILE_COLUMNS} FROM download WHERE current")).mappings()
        return {r["name"]: dict(r) for r in rows}


def published_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM organisation WHERE publication_state = 'published'")).scalar_one()


def get_identity(client, name: str, **headers):
    return client.get(f"/downloads/{name}", headers={"Accept-Encoding": "identity", **headers})


# ---------------------------------------------------------------- build


def test_build_produces_every_file(built, stored):
    assert built.built
    assert [f.name for f in built.files] == [f.name for f in FILES]
    assert set(stored) == {f.name for f in FILES}
    for report in built.files:
        row = stored[report.name]
        assert row["sha256"] == report.sha256 and row["byte_size"] == report.byte_size > 0
        assert row["gzip_size"] and row["gzip_sha256"] and row["modified"] is not None
        assert row["issued"] <= row["modified"]
        assert row["data_version"] == built.data_version


def test_chunks_reassemble_to_the_stored_hashes(built, stored, loaded):
    with loaded.connect() as conn:
        for name in ("organisations.geojson", "statistical-sectors.geojson"):
            row = stored[name]
            for encoding, sha, size in (("identity", row["sha256"], row["byte_size"]), ("gzip", row["gzip_sha256"], row["gzip_size"])):
                chunks = conn.execute(text("SELECT seq, data FROM download_chunk WHERE download_id = :d AND encoding = :e ORDER BY seq"),
                                      {"d": row["id"], "e": encoding}).all()
                assert [c.seq for c in chunks] == list(range(len(chunks)))
                assert all(len(c.data) == SMALL_CHUNKS for c in chunks[:-1])
                data = b"".join(c.data for c in chunks)
                assert len(data) == size and hashlib.sha256(data).hexdigest() == sha
            assert row["byte_size"] > SMALL_CHUNKS  # several chunks


def test_geojson_ndjson_csv_xlsx_have_one_record_per_published_organisation(client, built, loaded):
    count = published_count(loaded)
    collection = orjson.loads(get_identity(client, "organisations.geojson").content)
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == count
    feature = next(f for f in collection["features"] if f["id"] == 13219)
    assert feature["geometry"]["type"] == "Point"
    assert feature["properties"]["name"]["nl"] and feature["properties"]["name"]["fr"]
    assert feature["properties"]["url"] == "http://testserver/v1/organisations/13219"
    assert [f["id"] for f in collection["features"]] == sorted(f["id"] for f in collection["features"])

    lines = get_identity(client, "organisations.ndjson").content.splitlines()
    assert len(lines) == count
    assert {orjson.loads(line)["id"] for line in lines} == {f["id"] for f in collection["features"]}

    table = get_identity(client, "organisations.csv").content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(table)))
    assert len(rows) == count + 1 and rows[0][0].startswith("id")

    from openpyxl import load_workbook

    workbook = load_workbook(io.BytesIO(get_identity(client, "organisations.xlsx").content), read_only=True)
    assert sum(1 for _ in workbook["organisations"].iter_rows(values_only=True)) == count + 1
    assert {r.name: r.records for r in built.files}["organisations.xlsx"] == count


def test_taxonomy_and_district_files(client, built, loaded):
    with loaded.connect() as conn:
        sectors, categories, accreditations, communes, sectors_stat = conn.execute(text(
            "SELECT (SELECT count(*) FROM sector), (SELECT count(*) FROM category), (SELECT count(*) FROM accreditation), "
            "(SELECT count(*) FROM commune), (SELECT count(*) FROM statistical_sector)")).one()
    body = get_identity(client, "sectors.json").json()
    assert body["count"] == len(body["items"]) == sectors
    assert any(item["children"] for item in body["items"])
    assert get_identity(client, "categories.json").json()["count"] == categories
    acc = get_identity(client, "accreditations.json").json()
    assert acc["count"] == accreditations and acc["authorities"]
    for name, expected in (("communes.geojson", communes), ("statistical-sectors.geojson", sectors_stat)):
        layer = get_identity(client, name).json()
        assert len(layer["features"]) == expected
        assert layer["features"][0]["geometry"]["type"] in ("Polygon", "MultiPolygon")
    assert len(get_identity(client, "quartiers.geojson").json()["features"]) > 0


def test_rebuild_without_data_change_is_a_no_op(built, stored, loaded, settings):
    with loaded.connect() as conn:
        before = conn.execute(text("SELECT count(*), max(id) FROM download")).one()
    again = build_downloads(loaded, settings=settings)
    assert not again.built and again.data_version == built.data_version
    assert {f.name: f.sha256 for f in again.files} == {f.name: f.sha256 for f in built.files}
    with loaded.connect() as conn:
        assert conn.execute(text("SELECT count(*), max(id) FROM download")).one() == before


def test_data_change_changes_the_version_and_the_organisation_files(built, stored, loaded, settings):
    """In the caller's transaction (the Connection form), rolled back: the session data stay as they are."""
    with loaded.connect() as conn:
        tx = conn.begin()
        try:
            conn.execute(text("UPDATE organisation SET name_official_fr = 'CENTRE RENOMMÉ POUR LE TEST', "
                              "updated_at = now() WHERE id = 13219"))
            report = build_downloads(conn, settings=settings, chunk_size=SMALL_CHUNKS)
            assert report.built and report.data_version != built.data_version
            after = {f.name: f for f in report.files}
            for name in ("organisations.geojson", "organisations.csv", "organisations.xlsx", "organisations.ndjson"):
                assert after[name].sha256 != stored[name]["sha256"] and after[name].changed, name
            for name in ("sectors.json", "communes.geojson"):  # same bytes: same file, same Last-Modified
                assert after[name].sha256 == stored[name]["sha256"] and not after[name].changed, name
            rows = {r["name"]: r for r in conn.execute(text("SELECT name, modified FROM download WHERE current")).mappings()}
            assert rows["communes.geojson"]["modified"] == stored["communes.geojson"]["modified"]
            assert rows["organisations.geojson"]["modified"] > stored["organisations.geojson"]["modified"]
            assert conn.execute(text("SELECT count(*) FROM download WHERE current")).scalar_one() == len(FILES)
            geo = b"".join(conn.execute(text(
                "SELECT data FROM download_chunk c JOIN download d ON d.id = c.download_id "
                "WHERE d.current AND d.name = 'organisations.geojson' AND c.encoding = 'identity' ORDER BY seq")).scalars())
            assert "CENTRE RENOMMÉ POUR LE TEST".encode() in geo
        finally:
            tx.rollback()
    with loaded.connect() as conn:  # rolled back: the first build is current again
        current = dict(conn.execute(text("SELECT name, sha256 FROM download WHERE current")).all())
    assert current == {name: row["sha256"] for name, row in stored.items()}


# ---------------------------------------------------------------- HTTP


@pytest.mark.parametrize("name", [f.name for f in FILES])
def test_served_bytes_match_the_stored_sha256(client, stored, name):
    row = stored[name]
    response = get_identity(client, name)
    assert response.status_code == 200
    assert response.headers["content-type"] == row["media_type"]
    assert int(response.headers["content-length"]) == row["byte_size"] == len(response.content)
    assert hashlib.sha256(response.content).hexdigest() == row["sha256"]
    assert response.headers["etag"] == f'"{row["sha256"]}"'
    assert "content-encoding" not in response.headers


def test_conditional_requests(client, stored):
    row = stored["organisations.geojson"]
    first = get_identity(client, "organisations.geojson")
    etag, last_modified = first.headers["etag"], first.headers["last-modified"]
    assert last_modified == format_datetime(row["modified"].astimezone(dt.UTC).replace(microsecond=0), usegmt=True)
    assert first.headers["cache-control"].startswith("public")
    assert first.headers["accept-ranges"] == "bytes"
    assert "Accept-Encoding" in first.headers["vary"]

    again = get_identity(client, "organisations.geojson", **{"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert get_identity(client, "organisations.geojson", **{"If-None-Match": f'"other", W/{etag}'}).status_code == 304
    assert get_identity(client, "organisations.geojson", **{"If-None-Match": '"other"'}).status_code == 200
    assert get_identity(client, "organisations.geojson", **{"If-Modified-Since": last_modified}).status_code == 304
    older = format_datetime(row["modified"].astimezone(dt.UTC) - dt.timedelta(days=1), usegmt=True)
    assert get_identity(client, "organisations.geojson", **{"If-Modified-Since": older}).status_code == 200
    # If-None-Match wins over If-Modified-Since
    assert get_identity(client, "organisations.geojson", **{"If-None-Match": '"other"', "If-Modified-Since": last_modified}).status_code == 200


def test_gzip_serves_the_pre_compressed_bytes(client, stored):
    row = stored["organisations.geojson"]
    with client.stream("GET", "/downloads/organisations.geojson", headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
        headers = response.headers
    assert response.status_code == 200
    assert headers["content-encoding"] == "gzip" and "Accept-Encoding" in headers["vary"]
    assert int(headers["content-length"]) == row["gzip_size"] == len(raw)
    assert hashlib.sha256(raw).hexdigest() == row["gzip_sha256"] and headers["etag"] == f'"{row["gzip_sha256"]}"'
    assert hashlib.sha256(gzip.decompress(raw)).hexdigest() == row["sha256"]
    assert client.get("/downloads/organisations.geojson", headers={"Accept-Encoding": "gzip", "If-None-Match": headers["etag"]}).status_code == 304


def test_ranges(client, stored):
    row = stored["organisations.geojson"]
    size = row["byte_size"]
    whole = get_identity(client, "organisations.geojson").content
    cases = {
        "bytes=0-99": (0, 99),
        "bytes=100-": (100, size - 1),
        "bytes=-500": (size - 500, size - 1),
        f"bytes={SMALL_CHUNKS - 10}-{2 * SMALL_CHUNKS + 9}": (SMALL_CHUNKS - 10, 2 * SMALL_CHUNKS + 9),  # across chunks
        f"bytes={size - 10}-{size + 1000}": (size - 10, size - 1),  # clamped
        f"bytes=-{size + 5}": (0, size - 1),
    }
    for header, (first, last) in cases.items():
        response = client.get("/downloads/organisations.geojson", headers={"Range": header, "Accept-Encoding": "gzip"})
        assert response.status_code == 206, header
        assert response.headers["content-range"] == f"bytes {first}-{last}/{size}", header
        assert "content-encoding" not in response.headers  # ranges are of the raw bytes
        assert int(response.headers["content-length"]) == last - first + 1
        assert response.content == whole[first:last + 1], header

    for header in (f"bytes={size}-", f"bytes={size + 5}-{size + 10}", "bytes=abc", "bytes=5-2", "bytes=-0", "bytes=-"):
        response = get_identity(client, "organisations.geojson", Range=header)
        assert response.status_code == 416, header
        assert response.headers["content-range"] == f"bytes */{size}"
        assert response.headers["content-type"] == "application/problem+json"

    # several ranges or another unit: the whole file
    assert get_identity(client, "organisations.geojson", Range="bytes=0-1,5-6").status_code == 200
    assert get_identity(client, "organisations.geojson", Range="items=0-1").status_code == 200
    # If-Range: the range only while the file is the one the client has
    etag = f'"{row["sha256"]}"'
    assert get_identity(client, "organisations.geojson", Range="bytes=0-9", **{"If-Range": etag}).status_code == 206
    stale = get_identity(client, "organisations.geojson", Range="bytes=0-9", **{"If-Range": '"stale"'})
    assert stale.status_code == 200 and len(stale.content) == size


def test_parse_range():
    assert parse_range(None, 10) is None
    assert parse_range("bytes=2-4", 10) == (2, 4)
    assert parse_range("bytes = 2-", 10) == (2, 9)
    assert parse_range("bytes=-3", 10) == (7, 9)
    for bad in ("bytes=10-", "bytes=4-2", "bytes=x-1", "bytes=", "bytes=-0"):
        with pytest.raises(Unsatisfiable):
            parse_range(bad, 10)
    with pytest.raises(Unsatisfiable):
        parse_range("bytes=0-", 0)


def test_head(client, stored):
    row = stored["organisations.csv"]
    response = client.head("/downloads/organisations.csv", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200 and response.content == b""
    assert int(response.headers["content-length"]) == row["byte_size"]
    assert response.headers["etag"] == f'"{row["sha256"]}"'
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="organisations.csv"'
    zipped = client.head("/downloads/organisations.csv", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip" and int(zipped.headers["content-length"]) == row["gzip_size"]
    ranged = client.head("/downloads/organisations.csv", headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and ranged.headers["content-length"] == "10"
    assert client.head("/downloads/nope.csv").status_code == 404


def test_unknown_file_is_a_404_problem(client, built):
    for name in ("nope.csv", "organisations.nl.csv", "..%2Fetc%2Fpasswd"):
        response = client.get(f"/downloads/{name}")
        assert response.status_code == 404, name
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 404


@contextlib.contextmanager
def hidden(engine, names: list[str] | None = None):
    """Files made not current for a while (all of them by default), then current again."""
    with engine.begin() as conn:
        ids = conn.execute(text("UPDATE download SET current = false WHERE current AND (CAST(:names AS text[]) IS NULL "
                                "OR name = ANY(CAST(:names AS text[]))) RETURNING id"), {"names": names}).scalars().all()
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE download SET current = true WHERE id = ANY(:ids)"), {"ids": ids})


def test_not_built_yet_is_a_503_with_retry_after(client, built, loaded):
    with hidden(loaded):
        response = client.get("/downloads/quartiers.geojson")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert int(response.headers["retry-after"]) > 0
        assert client.get("/downloads").json()["pending"] == [f.name for f in FILES]
        catalogue = client.get("/catalog.ttl")  # still described, without sizes or checksums
        assert catalogue.status_code == 200 and b"organisations.xlsx" in catalogue.content and b"byteSize" not in catalogue.content
    assert client.get("/downloads/quartiers.geojson", headers={"Accept-Encoding": "identity"}).status_code == 200


def test_a_file_left_out_of_the_current_build_is_a_404(client, built, loaded):
    with hidden(loaded, ["organisations.xlsx"]):
        response = client.get("/downloads/organisations.xlsx")
        assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"
        assert b"organisations.xlsx" not in client.get("/catalog.ttl").content
    assert client.get("/downloads/organisations.xlsx", headers={"Accept-Encoding": "identity"}).status_code == 200


def test_xlsx_is_left_out_above_its_row_limit(built, loaded, settings):
    with loaded.connect() as conn:
        tx = conn.begin()
        try:
            report = build_downloads(conn, settings=settings, xlsx_max_rows=10)
            assert report.built and "organisations.xlsx" in report.skipped
            assert "organisations.xlsx" not in {f.name for f in report.files}
            names = set(conn.execute(text("SELECT name FROM download WHERE current")).scalars())
            assert names == {f.name for f in FILES} - {"organisations.xlsx"}
            again = build_downloads(conn, settings=settings, xlsx_max_rows=10)
            assert not again.built
        finally:
            tx.rollback()


def test_index_lists_every_file(client, stored):
    body = client.get("/downloads").json()
    assert [item["name"] for item in body["items"]] == [f.name for f in FILES]
    assert body["pending"] == []
    for item in body["items"]:
        row = stored[item["name"]]
        assert item["sha256"] == row["sha256"] and item["byte_size"] == row["byte_size"]
        assert item["url"] == f"http://testserver/downloads/{item['name']}"
