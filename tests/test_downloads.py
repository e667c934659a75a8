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
from app.routers import downloads as served
from app.routers.downloads import Unsatisfiable, parse_range
from tests.conftest import REFERENCE_DIR, scratch_database, serve_in_thread

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


def test_organisation_files_are_the_records_as_fetch_records_shapes_them(built, stored, loaded, settings):
    """The build streams the records set-based (``organisation_rows``); the files must hold, byte for
    byte, what the per-record path of the search core (``fetch_records`` + the v1 shape) gives."""
    from app.search import fetch_records
    from app.serialize import tabular
    from app.serialize import v1 as v1_shape

    base = (settings.public_base_url or "").rstrip("/")
    with loaded.connect() as conn:
        ids = conn.execute(text("SELECT id FROM organisation WHERE publication_state = 'published' ORDER BY id")).scalars().all()
        rows = downloads._run(fetch_records(downloads._AsyncFacade(conn), ids))
        files = {name: b"".join(conn.execute(text(
            "SELECT data FROM download_chunk WHERE download_id = :d AND encoding = 'identity' ORDER BY seq"),
            {"d": stored[name]["id"]}).scalars()) for name in ("organisations.ndjson", "organisations.csv")}
    assert len(rows) == len(ids) > 100
    assert files["organisations.ndjson"] == b"".join(orjson.dumps(v1_shape.organisation(r, base)) + b"\n" for r in rows)
    assert files["organisations.csv"] == b"".join(tabular.csv_chunks(rows, sep=","))


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


# ---------------------------------------------------------------- the per-process cache (app/routers/downloads.py)
#
# A database of their own (these tests commit rebuilds), a few generated records, files in SMALL_CHUNKS.

CACHE_RECORDS = 120


@pytest.fixture(scope="module")
def cache_db():
    """(URL, sync engine) of a scratch database with CACHE_RECORDS generated records, downloads built."""
    from sqlalchemy import create_engine

    from app.demo import iter_records
    from app.loaders.legacy import load_organisations

    with scratch_database() as url:
        eng = create_engine(url)
        with eng.begin() as conn:
            load_organisations(conn, (("demo", r) for r in iter_records(CACHE_RECORDS, 11, REFERENCE_DIR)))
        build_downloads(eng, settings=cache_settings(url), chunk_size=SMALL_CHUNKS)
        try:
            yield url, eng
        finally:
            eng.dispose()


def cache_settings(url: str, cache_mb: float | None = None):
    from app.settings import Settings

    extra = {} if cache_mb is None else {"download_cache_mb": cache_mb}
    return Settings(BRUSO_DATABASE_URL=url, reference_dir=REFERENCE_DIR, public_base_url="http://testserver",
                    rate_limit_per_minute=0, **extra)


@contextlib.contextmanager
def cache_client(url: str, cache_mb: float | None = None):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(cache_settings(url, cache_mb))) as client:
        yield client


def current_rows(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {downloads.FILE_COLUMNS} FROM download WHERE current")).mappings()
        return {r["name"]: dict(r) for r in rows}


def the_cache(client) -> served.DownloadCache:
    return client.app.state.download_cache


def get_raw(client, name: str, **headers):
    """The response and its bytes as sent (not decoded)."""
    with client.stream("GET", f"/downloads/{name}", headers=headers) as response:
        return response, b"".join(response.iter_raw())


def test_cached_bytes_are_the_stored_bytes_in_both_encodings(cache_db):
    url, engine = cache_db
    rows = current_rows(engine)
    with cache_client(url) as client:
        for name in ("organisations.geojson", "organisations.csv", "communes.geojson"):
            row = rows[name]
            for _ in range(2):  # the first loads, the second is served from memory
                response, raw = get_raw(client, name, **{"Accept-Encoding": "gzip"})
                assert response.status_code == 200 and response.headers["content-encoding"] == "gzip"  # not compressed twice
                assert int(response.headers["content-length"]) == row["gzip_size"] == len(raw)
                assert hashlib.sha256(raw).hexdigest() == row["gzip_sha256"] and response.headers["etag"] == f'"{row["gzip_sha256"]}"'
                response = get_identity(client, name)
                assert "content-encoding" not in response.headers
                assert hashlib.sha256(response.content).hexdigest() == row["sha256"] == response.headers["etag"].strip('"')
                assert int(response.headers["content-length"]) == row["byte_size"]
            assert row["gzip_sha256"] in the_cache(client) and row["sha256"] in the_cache(client)
        cache = the_cache(client)
        assert cache.loads == 6 and cache.hits >= 6


def test_a_rebuild_is_served_at_once_with_the_new_etag(cache_db):
    url, engine = cache_db
    name = "organisations.geojson"
    with cache_client(url) as client:
        before = current_rows(engine)[name]
        first, raw = get_raw(client, name, **{"Accept-Encoding": "gzip"})
        old_etag = first.headers["etag"]
        assert old_etag == f'"{before["gzip_sha256"]}"' and before["gzip_sha256"] in the_cache(client)
        with engine.begin() as conn:
            target = conn.execute(text("SELECT min(id) FROM organisation WHERE publication_state = 'published'")).scalar_one()
            conn.execute(text("UPDATE organisation SET name_official_fr = 'RENOMMÉ POUR LE CACHE', updated_at = now() "
                              "WHERE id = :id"), {"id": target})
        report = build_downloads(engine, settings=cache_settings(url), chunk_size=SMALL_CHUNKS)
        assert report.built
        after = current_rows(engine)[name]
        assert after["gzip_sha256"] != before["gzip_sha256"]

        # the very next request: the new bytes, the new ETag (no waiting, no stale copy)
        response, raw = get_raw(client, name, **{"Accept-Encoding": "gzip"})
        assert response.status_code == 200 and response.headers["etag"] == f'"{after["gzip_sha256"]}"' != old_etag
        assert hashlib.sha256(raw).hexdigest() == after["gzip_sha256"]
        assert "RENOMMÉ POUR LE CACHE".encode() in gzip.decompress(raw)
        assert get_identity(client, name).headers["etag"] == f'"{after["sha256"]}"'
        # the version it replaces is dropped from memory at once
        assert after["gzip_sha256"] in the_cache(client) and before["gzip_sha256"] not in the_cache(client)
        # a client holding the old ETag gets the new bytes; one holding the new one a 304
        assert client.get(f"/downloads/{name}", headers={"Accept-Encoding": "gzip", "If-None-Match": old_etag}).status_code == 200
        assert client.get(f"/downloads/{name}", headers={"Accept-Encoding": "gzip",
                                                        "If-None-Match": response.headers["etag"]}).status_code == 304


def test_the_cap_is_respected(cache_db):
    url, engine = cache_db
    rows = current_rows(engine)
    geo, nd = rows["organisations.geojson"], rows["organisations.ndjson"]
    # room for either gzip file, not for both, nor for any raw organisation file
    cap = max(geo["gzip_size"], nd["gzip_size"]) + 1000
    assert cap < geo["gzip_size"] + nd["gzip_size"] and cap < min(geo["byte_size"], nd["byte_size"])
    with cache_client(url, cache_mb=cap / (1 << 20)) as client:
        cache = the_cache(client)
        assert cache.cap == cap

        def check():
            assert cache.size + cache.reserved <= cache.cap
            assert cache.size == sum(e.size for e in cache._entries.values())

        response = get_identity(client, "organisations.geojson")  # too large: streamed from the chunks
        assert hashlib.sha256(response.content).hexdigest() == geo["sha256"]
        assert geo["sha256"] not in cache and len(cache) == 0
        check()
        get_raw(client, "organisations.geojson", **{"Accept-Encoding": "gzip"})
        assert geo["gzip_sha256"] in cache
        check()
        response, raw = get_raw(client, "organisations.ndjson", **{"Accept-Encoding": "gzip"})
        assert hashlib.sha256(raw).hexdigest() == nd["gzip_sha256"]
        assert nd["gzip_sha256"] in cache and geo["gzip_sha256"] not in cache  # least recently used, evicted
        assert cache.evictions == 1
        check()
        for name, row in rows.items():  # everything, both encodings: right bytes, within the cap
            response, raw = get_raw(client, name, **{"Accept-Encoding": "gzip"})
            assert hashlib.sha256(raw).hexdigest() == row["gzip_sha256"], name
            check()
            assert hashlib.sha256(get_identity(client, name).content).hexdigest() == row["sha256"], name
            check()

    with cache_client(url, cache_mb=0) as client:  # no cache at all: every file streamed
        response, raw = get_raw(client, "organisations.geojson", **{"Accept-Encoding": "gzip"})
        assert hashlib.sha256(raw).hexdigest() == geo["gzip_sha256"]
        assert len(the_cache(client)) == 0 and the_cache(client).loads == 0


@pytest.mark.parametrize("mode", ["cached", "streamed"])
def test_head_304_and_ranges_from_memory_and_from_the_chunks(cache_db, mode, monkeypatch):
    # cached entries in parts of two stored chunks, so that ranges cross both part and chunk boundaries
    monkeypatch.setattr(served, "SEND_PART", 2 * SMALL_CHUNKS)
    url, engine = cache_db
    name = "organisations.geojson"
    row = current_rows(engine)[name]
    size, etag = row["byte_size"], f'"{row["sha256"]}"'
    assert size > 4 * SMALL_CHUNKS
    with cache_client(url, cache_mb=None if mode == "cached" else 0) as client:
        cache = the_cache(client)
        # HEAD and 304 answer from the row: they load nothing
        head = client.head(f"/downloads/{name}", headers={"Accept-Encoding": "identity"})
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) == size and head.headers["etag"] == etag
        zipped = client.head(f"/downloads/{name}", headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip" and int(zipped.headers["content-length"]) == row["gzip_size"]
        assert get_identity(client, name, **{"If-None-Match": etag}).status_code == 304
        assert len(cache) == 0

        whole = get_identity(client, name).content
        assert hashlib.sha256(whole).hexdigest() == row["sha256"]
        if mode == "cached":
            entry = cache.get(row["sha256"])
            assert entry is not None and len(entry.parts) > 2 and entry.part_size == 2 * SMALL_CHUNKS
        else:
            assert len(cache) == 0
        part = 2 * SMALL_CHUNKS
        cases = [(0, 0), (0, 99), (SMALL_CHUNKS - 10, SMALL_CHUNKS + 9), (part - 1, part), (part, 2 * part - 1),
                 (part - 5, 2 * part + 5), (part + 3, size - 1), (size - 1, size - 1), (0, size - 1)]
        for first, last in cases:
            response = client.get(f"/downloads/{name}", headers={"Range": f"bytes={first}-{last}", "Accept-Encoding": "gzip"})
            assert response.status_code == 206, (first, last)
            assert response.headers["content-range"] == f"bytes {first}-{last}/{size}"
            assert "content-encoding" not in response.headers  # a range of the raw bytes, never compressed
            assert int(response.headers["content-length"]) == last - first + 1
            assert response.content == whole[first:last + 1], (first, last)
        head = client.head(f"/downloads/{name}", headers={"Range": "bytes=10-19"})
        assert head.status_code == 206 and head.headers["content-length"] == "10" and head.content == b""
        assert get_identity(client, name, Range=f"bytes={size}-").status_code == 416
        assert get_identity(client, name, **{"If-None-Match": etag}).status_code == 304
        assert cache.loads == (1 if mode == "cached" else 0)


def test_concurrent_requests_load_once_through_a_real_server(cache_db):
    """uvicorn in a thread, 16 requests at once for a file not in memory yet: one load, right bytes."""
    import concurrent.futures

    import httpx

    from app.main import create_app

    url, engine = cache_db
    row = current_rows(engine)["organisations.csv"]
    app = create_app(cache_settings(url))
    with serve_in_thread(app) as base:
        def fetch(_):
            response = httpx.get(f"{base}/downloads/organisations.csv", headers={"Accept-Encoding": "gzip"}, timeout=30)
            return response.status_code, response.headers.get("content-encoding"), hashlib.sha256(response.content).hexdigest()

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(fetch, range(16)))
        # httpx decodes the gzip: the bytes are the raw file's
        assert answers == [(200, "gzip", row["sha256"])] * 16
        cache = app.state.download_cache
        assert cache.loads == 1 and cache.size == row["gzip_size"] and cache.reserved == 0


def test_the_lookup_connection_survives_being_killed(cache_db):
    """The per-process lookup connection ended by the server: that request asks through the pool, the
    next one opens a new connection. One that cannot connect: the pool answers, a new attempt waits
    RETRY_S. Closed at shutdown."""
    import time

    from tests.conftest import free_port

    url, engine = cache_db
    name = "categories.json"
    with cache_client(url) as client:
        assert get_identity(client, name).status_code == 200
        (lookup,) = client.app.state.download_lookups.values()
        pid = lookup._conn.info.backend_pid
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
        assert get_identity(client, name).status_code == 200  # the lookup failed: asked through the pool
        assert lookup._conn is None
        assert get_identity(client, name).status_code == 200
        assert lookup._conn is not None and lookup._conn.info.backend_pid != pid

        conninfo = lookup.conninfo
        lookup.conninfo = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"  # nothing listens there
        lookup._drop()
        assert get_identity(client, name).status_code == 200
        assert lookup._conn is None and lookup._retry_at > time.monotonic()
        lookup.conninfo = conninfo
        assert get_identity(client, name).status_code == 200 and lookup._conn is None  # still pausing
        lookup._retry_at = 0.0
        assert get_identity(client, name).status_code == 200 and lookup._conn is not None
    assert lookup._conn is None  # the application's shutdown closed it


def test_cache_bookkeeping_without_a_database():
    """Eviction order, the replaced version dropped, a load that does not fit beside another in flight."""
    import asyncio

    async def scenario():
        cache = served.DownloadCache(100)

        def loader(size):
            async def load():
                await asyncio.sleep(0.01)
                return served.CachedBytes((b"x" * size,), size, size)
            return load

        a = await cache.get_or_load("a", ("f1", "gzip"), 40, loader(40))
        b = await cache.get_or_load("b", ("f2", "gzip"), 40, loader(40))
        assert a.size == b.size == 40 and cache.size == 80 and len(cache) == 2
        assert cache.get("a") is a  # a is now the most recently used
        await cache.get_or_load("c", ("f3", "gzip"), 40, loader(40))  # evicts b
        assert "b" not in cache and "a" in cache and "c" in cache and cache.size == 80
        await cache.get_or_load("a2", ("f1", "gzip"), 10, loader(10))  # a new version of f1: a dropped
        assert "a" not in cache and "a2" in cache and cache.size == 50
        assert await cache.get_or_load("big", ("f4", "gzip"), 101, loader(101)) is None  # above the cap
        assert not cache.fits(0)
        # two loads at once that do not fit together: the second is not cached (it streams)
        first = asyncio.ensure_future(cache.get_or_load("d", ("f5", "gzip"), 60, loader(60)))
        await asyncio.sleep(0)
        assert cache.reserved == 60 and cache.size + cache.reserved <= cache.cap
        assert await cache.get_or_load("e", ("f6", "gzip"), 60, loader(60)) is None
        same = await asyncio.gather(first, cache.get_or_load("d", ("f5", "gzip"), 60, loader(60)))
        assert same[0] is same[1] and cache.loads == 5 and cache.reserved == 0 and cache.size <= cache.cap

        async def failing():
            raise RuntimeError("chunk gone")
        assert await cache.get_or_load("f", ("f7", "gzip"), 10, failing) is None
        assert "f" not in cache and cache.reserved == 0

    asyncio.run(scenario())
