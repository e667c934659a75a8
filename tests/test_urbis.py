"""The URBIS Localize client against the local twin, over real HTTP (uvicorn in a thread).

Addresses come from the reference address points loaded by the ``loaded`` fixture."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, text

from app.geo.crs import to_wgs84
from app.geo.urbis import (
    AddressQuery,
    CircuitBreaker,
    GeocodeResult,
    KeepAlivePool,
    MemoryCache,
    PgCache,
    UrbisClient,
    UrbisError,
    UrbisUnavailable,
    _keep_alive_pool,
)
from app.geo.urbis_server import (
    StreetGroup,
    _Point,
    create_urbis_app,
    load_gazetteer,
    locate,
    normalise_street,
    parse_free_text,
    parse_number,
)
from app.text import fold

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


class ServerThread:
    """uvicorn serving an ASGI app on 127.0.0.1 in a background thread."""

    def __init__(self, app, port: int = 0, **config):
        self.app = app
        self.port = port
        self.config = config
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> ServerThread:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False, lifespan="on",
                                **self.config)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join(15)


class ServerProcess:
    """``serve()`` (what ``bruso urbis serve`` runs) in a child process: its own interpreter, as in production."""

    def __init__(self, database_url: str):
        self.port = free_port()
        code = f"from app.geo.urbis_server import serve; serve({database_url!r}, '127.0.0.1', {self.port}, log_level='warning')"
        self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{self.url}/", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the URBIS twin did not start") from None
                time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def served(self) -> int:
        return httpx.get(f"{self.url}/stats", timeout=5).json()["requests"].get("total", 0)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def twin(db_url: str, loaded: Engine):
    server = ServerProcess(db_url)
    yield server
    server.stop()


def client(server: ServerThread | ServerProcess, **kw) -> UrbisClient:
    kw.setdefault("cache", MemoryCache())
    kw.setdefault("backoff_s", 0.01)
    return UrbisClient(server.url, **kw)


@pytest.fixture(scope="module")
def sample(loaded: Engine) -> dict:
    """A plain address (one point for its number, both street names, a postcode)."""
    with loaded.connect() as conn:
        row = conn.execute(text("""
            SELECT ap.street_fr, ap.street_nl, ap.number, ap.postcode, ST_X(ap.geom) AS x, ST_Y(ap.geom) AS y,
                   c.name_fr AS commune_fr, c.name_nl AS commune_nl
              FROM address_point ap JOIN commune c ON c.nis_code = ap.commune_nis
             WHERE ap.source = 'osm2013' AND ap.number ~ '^[0-9]+$' AND ap.postcode IS NOT NULL
               AND ap.street_fr ~ '[éèêë]' AND ap.street_nl IS NOT NULL
               AND (SELECT count(*) FROM address_point o WHERE o.street_fr = ap.street_fr AND o.number = ap.number) = 1
               AND (SELECT count(*) FROM street s WHERE s.name_fr = ap.street_fr AND s.postcode = ap.postcode) = 1
             ORDER BY ap.id LIMIT 1
        """)).one()
    return dict(row._mapping)


@pytest.fixture(scope="module")
def gap(loaded: Engine) -> dict:
    """Two numbers of one street, 4 apart and 10–100 m apart, the one between them unknown."""
    with loaded.connect() as conn:
        row = conn.execute(text(r"""
            WITH p AS (
              SELECT street_fr, street_nl, postcode, number::int AS n, geom FROM address_point
               WHERE number ~ '^[0-9]+$' AND street_fr IS NOT NULL AND street_nl IS NOT NULL AND postcode IS NOT NULL
                 AND (SELECT count(*) FROM address_point o WHERE o.street_fr = address_point.street_fr
                        AND o.number = address_point.number) = 1)
            SELECT a.street_fr, a.street_nl, a.postcode, a.n AS lo, b.n AS hi,
                   ST_X(a.geom) AS lo_x, ST_Y(a.geom) AS lo_y, ST_X(b.geom) AS hi_x, ST_Y(b.geom) AS hi_y,
                   (SELECT max(number::int) FROM address_point m WHERE m.street_fr = a.street_fr AND m.postcode = a.postcode
                     AND m.number ~ '^[0-9]+$' AND m.number::int % 2 = a.n % 2) AS top
              FROM p a JOIN p b ON b.street_fr = a.street_fr AND b.postcode = a.postcode AND b.n = a.n + 4
             WHERE NOT EXISTS (SELECT 1 FROM address_point c WHERE c.street_fr = a.street_fr AND c.number ~ ('^' || (a.n + 2) || '([^0-9]|$)'))
               AND ST_Distance(a.geom, b.geom) BETWEEN 10 AND 100
               AND (SELECT count(*) FROM street s WHERE s.name_fr = a.street_fr AND s.postcode = a.postcode) = 1
             ORDER BY a.street_fr, a.n LIMIT 1
        """)).one()
    return dict(row._mapping)


def segment_distance(px, py, ax, ay, bx, by) -> float:
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


# ---------------------------------------------------------------------------------------------
# parsing (no server)
# ---------------------------------------------------------------------------------------------


def test_parsing_helpers():
    assert parse_number("59") .label == "59"
    assert parse_number("59 a").label == "59A"
    assert parse_number("59/2").box == "2" and parse_number("59 bte 3").box == "3"
    assert parse_number("59-61").value == 59
    assert parse_number("rez") is None
    assert normalise_street("Av. Ducpétiaux") == "avenue ducpetiaux"
    assert normalise_street("Chée de Wavre") == "chaussee de wavre"
    assert normalise_street("Naamsestr.") == "naamsestraat"
    q = parse_free_text("Rue de Namur 59, 1000 Bruxelles")
    assert (q.street, q.number, q.postcode, q.municipality) == ("Rue de Namur", "59", 1000, "Bruxelles")
    q = parse_free_text("59 rue de Namur 1000")
    assert (q.street, q.number, q.postcode) == ("rue de Namur", "59", 1000)
    q = parse_free_text("Avenue du 11 Novembre 25, Etterbeek", lambda s: s == "Etterbeek")
    assert (q.street, q.number, q.municipality) == ("Avenue du 11 Novembre", "25", "Etterbeek")
    assert AddressQuery.of({"street": " Rue  X ", "postcode": "B-1000", "number": 5}) == AddressQuery("Rue X", "5", "1000")


async def _breaker_cycle() -> None:
    now = [0.0]
    b = CircuitBreaker(failure_threshold=2, reset_timeout_s=10, clock=lambda: now[0])
    assert await b.acquire() is False
    b.failure()
    assert b.state == "closed"
    b.failure()
    assert b.state == "open"
    with pytest.raises(UrbisUnavailable):
        await b.acquire()
    now[0] = 10.5
    assert await b.acquire() is True  # the probe
    waiter = asyncio.create_task(b.acquire())
    await asyncio.sleep(0)
    assert not waiter.done()  # others wait for the probe
    b.failure()  # probe failed → open again
    with pytest.raises(UrbisUnavailable):
        await waiter
    now[0] = 21
    assert await b.acquire() is True
    b.success()
    assert b.state == "closed" and await b.acquire() is False


def test_circuit_breaker_states():
    run(_breaker_cycle())


# ---------------------------------------------------------------------------------------------
# the twin's answers
# ---------------------------------------------------------------------------------------------


def test_twin_answer_shapes(twin: ServerProcess, sample: dict):
    base = f"{twin.url}/Rest/Localize"
    with httpx.Client(timeout=10) as http:
        body = http.get(f"{base}/getaddresses", params={
            "language": "nl", "spatialReference": "4326",
            "address": f"{sample['street_fr']} {sample['number']} {sample['postcode']} {sample['commune_fr']}",
        }).json()
        assert body["error"] is False and body["status"] == "success" and body["version"]
        hit = body["result"][0]
        assert set(hit) >= {"language", "address", "adNc", "score", "point", "extent", "qualificationText", "qualificationCode"}
        assert hit["language"] == "nl" and hit["address"]["street"]["name"] == sample["street_nl"]
        assert hit["address"]["street"]["postCode"] == str(sample["postcode"]) and hit["address"]["street"]["id"]
        assert hit["address"]["number"] == sample["number"]
        lon, lat = to_wgs84(sample["x"], sample["y"])
        assert abs(hit["point"]["x"] - lon) < 1e-5 and abs(hit["point"]["y"] - lat) < 1e-5
        assert hit["qualificationText"]["policeNumber"] == "Found"

        fields = {"language": "fr", "address": {"street": {"name": sample["street_nl"], "postcode": str(sample["postcode"])},
                                                "number": sample["number"]}, "spatialReference": "31370"}
        body = http.get(f"{base}/getaddressesfields", params={"json": json.dumps(fields)}).json()
        hit = body["result"][0]
        assert hit["address"]["street"]["name"] == sample["street_fr"]
        assert math.hypot(hit["point"]["x"] - sample["x"], hit["point"]["y"] - sample["y"]) < 0.01
        # as a POSTed form too, and under the regional service's path prefix
        posted = http.post(f"{base}/getaddressesfields", data={"json": json.dumps(fields)}).json()
        assert posted["result"][0]["address"] == hit["address"]
        assert http.get(f"{twin.url}/localization/Rest/Localize/getaddressesfields", params={"json": json.dumps(fields)}).json()["result"]

        # bad input: error true, empty result, HTTP 200
        for path, params in [
            ("getaddresses", {"language": "fr"}),
            ("getaddresses", {"language": "de", "address": "Rue de la Loi 16"}),
            ("getaddresses", {"address": "Rue de la Loi 16", "spatialReference": "3857"}),
            ("getaddressesfields", {"json": "{not json"}),
            ("getaddressesfields", {"json": json.dumps({"language": "fr", "address": {"street": {"name": ""}}})}),
            ("getaddressfromxy", {"json": json.dumps({"language": "fr", "point": {"x": "a", "y": 1}})}),
        ]:
            r = http.get(f"{base}/{path}", params=params)
            assert r.status_code == 200, (path, params)
            assert r.json()["error"] is True and r.json()["result"] == [] and r.json()["status"] == "error", (path, params)
        # nothing there: success, empty result
        far = {"language": "fr", "point": {"x": 5.5, "y": 50.6}, "spatialReference": 4326}
        assert http.get(f"{base}/getaddressfromxy", params={"json": json.dumps(far)}).json() == {
            "result": [], "error": False, "status": "success", "version": "2.0.2"}
        unknown = http.get(f"{base}/getaddresses", params={"language": "fr", "address": "Rue Qwxzv Blorpique 12, 1000 Bruxelles"}).json()
        assert unknown["result"] == [] and unknown["error"] is False


# ---------------------------------------------------------------------------------------------
# geocoding through the client
# ---------------------------------------------------------------------------------------------


def test_exact_address_bilingual(twin: ServerProcess, sample: dict):
    async def go():
        async with client(twin) as c:
            return await c.geocode(sample["street_fr"], sample["number"], str(sample["postcode"])), c.stats

    r, stats = run(go())
    assert isinstance(r, GeocodeResult)
    assert (r.street_fr, r.street_nl, r.number, r.postcode) == (sample["street_fr"], sample["street_nl"], sample["number"], str(sample["postcode"]))
    assert (r.municipality_fr, r.municipality_nl) == (sample["commune_fr"], sample["commune_nl"])
    assert math.hypot(r.x - sample["x"], r.y - sample["y"]) < 0.05
    lon, lat = to_wgs84(sample["x"], sample["y"])
    assert abs(r.lon - lon) < 1e-6 and abs(r.lat - lat) < 1e-6
    assert r.precision == "address" and r.score == 100 and r.street_id and r.adnc
    assert r.qualification["policeNumber"] == "Found"
    assert stats.requests == 2 and stats.geocoded == 1  # one request per language


def test_accents_typos_and_dutch_input(twin: ServerProcess, sample: dict):
    words = sample["street_fr"].split()
    longest = max(range(len(words)), key=lambda i: len(words[i]))
    w = words[longest]
    words[longest] = w[:2] + w[3] + w[2] + w[4:]  # swap two letters
    typo = " ".join(words)

    async def go():
        async with client(twin) as c:
            plain = await c.geocode(fold(sample["street_fr"]).upper(), sample["number"], str(sample["postcode"]))
            typoed = await c.geocode(typo, sample["number"], str(sample["postcode"]))
            dutch = await c.geocode(sample["street_nl"], sample["number"], municipality=sample["commune_nl"])
            exact = await c.geocode(sample["street_fr"], sample["number"], str(sample["postcode"]))
            return plain, typoed, dutch, exact

    plain, typoed, dutch, exact = run(go())
    assert plain.street_fr == sample["street_fr"] and plain.score == exact.score == 100  # accents and case do not matter
    assert typoed is not None and typoed.street_id == exact.street_id and typoed.street_nl == sample["street_nl"]
    assert typoed.score < exact.score and typoed.qualification["streetName"] == "Corrected"
    assert dutch is not None and dutch.street_fr == sample["street_fr"] and dutch.number == sample["number"]
    assert math.hypot(dutch.x - sample["x"], dutch.y - sample["y"]) < 0.05


def test_interpolated_and_nearest_numbers_score_lower(twin: ServerProcess, gap: dict):
    async def go():
        async with client(twin) as c:
            exact = await c.geocode(gap["street_fr"], str(gap["lo"]), str(gap["postcode"]))
            between = await c.geocode(gap["street_fr"], str(gap["lo"] + 2), str(gap["postcode"]))
            beyond = await c.geocode(gap["street_fr"], str(gap["top"] + 40), str(gap["postcode"]))
            street = await c.geocode(gap["street_fr"], None, str(gap["postcode"]))
            return exact, between, beyond, street

    exact, between, beyond, street = run(go())
    assert exact.precision == "address"
    assert between.precision == "interpolated" and between.number == str(gap["lo"] + 2)
    assert between.street_nl == gap["street_nl"]
    # between its neighbours (along the street line, on their side of the street)
    assert segment_distance(between.x, between.y, gap["lo_x"], gap["lo_y"], gap["hi_x"], gap["hi_y"]) < 25
    assert math.hypot(between.x - gap["lo_x"], between.y - gap["lo_y"]) > 1
    assert math.hypot(between.x - gap["hi_x"], between.y - gap["hi_y"]) > 1
    assert beyond.precision == "approximated"
    assert street.precision == "street"
    assert exact.score > between.score > beyond.score


def test_reverse_geocoding(twin: ServerProcess, sample: dict):
    lon, lat = to_wgs84(sample["x"] + 3, sample["y"] - 2)

    async def go():
        async with client(twin) as c:
            return await c.reverse(lon, lat, 4326), await c.reverse(sample["x"], sample["y"]), await c.reverse(5.5, 50.6, 4326)

    near, same, nowhere = run(go())
    for r in (near, same):
        assert (r.street_fr, r.street_nl, r.number, r.postcode) == (sample["street_fr"], sample["street_nl"], sample["number"], str(sample["postcode"]))
        assert math.hypot(r.x - sample["x"], r.y - sample["y"]) < 0.05
    assert 3 < near.distance < 4 and same.distance < 0.05
    assert nowhere is None


def test_unknown_address_is_not_found(twin: ServerProcess):
    async def go():
        async with client(twin) as c:
            results = await c.geocode_many([
                AddressQuery("Rue Qwxzv Blorpique", "12", "1000"),
                {"street": "Zzyzxstraat", "number": "3", "municipality": "Jette"},
                AddressQuery("", "3", "1000"),
            ])
            return results, c.stats

    results, stats = run(go())
    assert results == [None, None, None] and stats.not_found == 3


def test_cache_persists_across_clients(twin: ServerProcess, sample: dict, loaded: Engine):
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    address = (sample["street_nl"], sample["number"], str(sample["postcode"]))

    async def first():
        async with client(twin, cache=PgCache(loaded), cache_namespace=namespace) as c:
            a = await c.geocode(*address)
            b = await c.geocode(*address)  # same client: answered from memory
            many = await c.geocode_many([address, address, {"street": "Qwxzvstraat", "number": "1", "postcode": "1000"}])
            return a, b, many, c.stats

    before = twin.served()
    a, b, many, stats = run(first())
    assert a == b == many[0] == many[1] and many[2] is None
    assert stats.requests == 4  # FR + NL for the address, FR + NL for the unknown one
    assert twin.served() - before == 4
    with loaded.connect() as conn:
        rows = conn.execute(text("SELECT request, response FROM geocode_cache WHERE request->>'service' = :ns"), {"ns": namespace}).all()
    assert len(rows) == 4 and all(r.response["status"] == "success" for r in rows)

    async def second():  # a new client, a new run: nothing asked again, not even "not found"
        async with client(twin, cache=PgCache(loaded), cache_namespace=namespace) as c:
            return await c.geocode(*address), await c.geocode("Qwxzvstraat", "1", "1000"), c.stats

    before = twin.served()
    again, unknown, stats = run(second())
    assert again == a and unknown is None
    assert stats.requests == 0 and stats.cache_hits == 4
    assert twin.served() == before


def test_pg_cache_with_an_async_engine(db_url: str, loaded: Engine):
    from datetime import timedelta

    from sqlalchemy.ext.asyncio import create_async_engine

    key = f"test:{uuid.uuid4().hex}"
    answer = {"result": [], "error": False, "status": "success", "version": "2.0.2"}

    async def go():
        engine = create_async_engine(db_url)
        try:
            cache = PgCache(engine)
            await cache.put_many([(key, {"endpoint": "getaddresses"}, answer)])
            await cache.put_many([(key, {"endpoint": "getaddresses"}, answer)])  # replaced, not duplicated
            return await cache.get_many([key, "absent"]), await PgCache(engine, max_age=timedelta(0)).get_many([key])
        finally:
            await engine.dispose()

    found, expired = run(go())
    assert found == {key: answer} and expired == {}


class Flaky:
    """Answers 503 to the first ``failures`` requests, then passes them to the app."""

    def __init__(self, app, failures: int):
        self.app, self.left = app, failures
        self.state = app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.left > 0:
            self.left -= 1
            await send({"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"text/html")]})
            await send({"type": "http.response.body", "body": b"<h1>Service Unavailable</h1>"})
            return
        await self.app(scope, receive, send)


def test_retries_on_server_errors(db_url: str, loaded: Engine, sample: dict):
    server = ServerThread(Flaky(create_urbis_app(db_url), failures=2)).start()
    try:
        async def go(**kw):
            async with client(server, **kw) as c:
                try:
                    return await c.geocode(sample["street_fr"], sample["number"], str(sample["postcode"])), c.stats
                except UrbisUnavailable as exc:
                    return exc, c.stats

        r, stats = run(go(retries=3))
        assert isinstance(r, GeocodeResult) and r.precision == "address"
        assert stats.retries == 2 and stats.failures == 2 and stats.requests == 4
        server.app.left = 10  # more failures than retries: unavailable
        r, stats = run(go(retries=2, failure_threshold=100))
        assert isinstance(r, UrbisUnavailable) and stats.requests == 6 and stats.retries == 4
    finally:
        server.stop()


class Slow:
    """Takes ``delay`` seconds before passing requests to the app."""

    def __init__(self, app, delay: float):
        self.app, self.delay = app, delay
        self.state = app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.delay:
            await asyncio.sleep(self.delay)
        await self.app(scope, receive, send)


def test_timeouts_open_the_breaker(db_url: str, loaded: Engine, sample: dict):
    server = ServerThread(Slow(create_urbis_app(db_url), delay=3.0)).start()
    try:
        async def go():
            async with client(server, timeout=0.3, retries=2, failure_threshold=4, reset_timeout_s=0.5) as c:
                t0 = time.monotonic()
                with pytest.raises(UrbisUnavailable):
                    await c.geocode(sample["street_fr"], sample["number"], str(sample["postcode"]))
                slow = time.monotonic() - t0
                assert c.breaker.state == "open" and c.stats.breaker_opened == 1
                t0 = time.monotonic()
                results = await c.geocode_many([(sample["street_fr"], str(n), str(sample["postcode"])) for n in range(1, 51)])
                fast = time.monotonic() - t0
                assert all(isinstance(r, UrbisUnavailable) for r in results)
                server.app.delay = 0  # the service recovers
                await asyncio.sleep(0.6)
                recovered = await c.geocode(sample["street_fr"], sample["number"], str(sample["postcode"]))
                return slow, fast, recovered, c

        slow, fast, recovered, c = run(go())
        assert slow >= 0.3 and fast < 0.1, (slow, fast)  # 50 addresses refused faster than one timeout
        assert recovered is not None and c.breaker.state == "closed"
    finally:
        server.stop()


def test_breaker_fails_fast_when_down_and_recovers(db_url: str, loaded: Engine, sample: dict):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    timeout, retries = 2.0, 3
    address = (sample["street_fr"], sample["number"], str(sample["postcode"]))

    async def go():
        async with UrbisClient(url, cache=MemoryCache(), timeout=timeout, retries=retries, backoff_s=0.05,
                               failure_threshold=3, reset_timeout_s=1.0) as c:
            with pytest.raises(UrbisUnavailable):
                await c.geocode(*address)  # nothing listens: connection refused, retried, breaker opens
            assert c.breaker.state == "open"
            sent = c.stats.requests
            timings = []
            for _ in range(5):
                t0 = time.perf_counter()
                with pytest.raises(UrbisUnavailable):
                    await c.geocode(*address)
                timings.append(time.perf_counter() - t0)
            assert c.stats.requests == sent and c.stats.rejected >= 5  # no request went out
            # half-open while still down: one probe, which fails → open again
            await asyncio.sleep(max(0.0, c.breaker.retry_at - time.monotonic()) + 0.05)
            with pytest.raises(UrbisUnavailable):
                await c.geocode(*address)
            assert c.stats.requests == sent + 1 and c.breaker.state == "open" and c.breaker.opened == 2
            # the service comes back on the same port
            server = ServerThread(create_urbis_app(db_url), port).start()
            try:
                await asyncio.sleep(max(0.0, c.breaker.retry_at - time.monotonic()) + 0.05)
                r = await c.geocode(*address)
                assert c.breaker.state == "closed"
                more = await c.geocode_many([(sample["street_fr"], str(n), str(sample["postcode"])) for n in range(1, 11)])
            finally:
                server.stop()
            return timings, r, more

    timings, r, more = run(go())
    print(f"\nbreaker open: calls failed in {max(timings) * 1000:.2f} ms at most "
          f"(a down service costs up to {timeout * (retries + 1):.0f} s of timeouts per call without it)")
    assert max(timings) < 0.05
    assert isinstance(r, GeocodeResult) and r.precision == "address"
    assert all(isinstance(x, GeocodeResult) for x in more)


def test_throughput_bilingual(twin: ServerProcess, loaded: Engine):
    with loaded.connect() as conn:
        rows = conn.execute(text("""
            SELECT DISTINCT ON (street_fr, number, postcode) street_fr, street_nl, number, postcode
              FROM address_point
             WHERE street_fr IS NOT NULL AND street_nl IS NOT NULL AND postcode IS NOT NULL AND number IS NOT NULL
             ORDER BY street_fr, number, postcode, id
        """)).all()
    step = max(1, len(rows) // 300)
    picked = rows[::step][:300]
    items = [AddressQuery(r.street_fr if i % 2 else r.street_nl, r.number, str(r.postcode)) for i, r in enumerate(picked)]

    cache = MemoryCache()

    async def go():
        async with client(twin, concurrency=8, cache=cache) as c:
            t0 = time.perf_counter()
            results = await c.geocode_many(items)
            return results, time.perf_counter() - t0, c.stats

    async def again():  # a new run: every answer from the cache
        async with client(twin, cache=cache) as c:
            t0 = time.perf_counter()
            results = await c.geocode_many(items)
            return results, time.perf_counter() - t0, c.stats

    cpu0 = time.process_time()
    results, seconds, stats = run(go())
    cpu = time.process_time() - cpu0  # the client's only: the twin is another process
    cached, cached_seconds, cached_stats = run(again())
    assert cached == results and cached_stats.requests == 0
    found = [r for r in results if isinstance(r, GeocodeResult)]
    exact = [r for r, p in zip(results, picked) if isinstance(r, GeocodeResult) and r.street_fr == p.street_fr
             and r.street_nl == p.street_nl and r.precision == "address"]
    print(f"\nURBIS twin: {len(items)} addresses geocoded bilingually in {seconds:.2f} s = {len(items) / seconds:.0f} records/s "
          f"({stats.requests} HTTP requests, {stats.requests / seconds:.0f} req/s; client CPU {cpu * 1000 / len(items):.1f} ms "
          f"per address); found {len(found)}, exact {len(exact)}; {stats}; "
          f"again from the cache: {len(items) / cached_seconds:.0f} records/s")
    assert len(items) == 300
    assert len(found) >= 0.97 * len(items) and len(exact) >= 0.9 * len(items)
    assert not any(isinstance(r, UrbisError) for r in results)


# ---------------------------------------------------------------------------------------------
# the twin's in-memory layers, its per-address memory, its direct ASGI path
# ---------------------------------------------------------------------------------------------

# what the twin asked PostGIS for each street before the layers were in memory: the reference
_POINTS_NEAR = """
SELECT ap.number, ST_X(ap.geom) AS x, ST_Y(ap.geom) AS y, ap.commune_nis FROM address_point ap
 WHERE ap.geom && ST_Expand(ST_MakeEnvelope(:x0, :y0, :x1, :y1, 31370), :radius) AND (ap.street_fr = :fr OR ap.street_nl = :nl)
   AND (ap.postcode = :pc OR (ap.postcode IS NULL AND ap.commune_nis = ANY(CAST(:communes AS text[]))))
"""
_POINTS_ANYWHERE = """
SELECT ap.number, ST_X(ap.geom) AS x, ST_Y(ap.geom) AS y, ap.commune_nis FROM address_point ap
 WHERE (ap.street_fr = :fr OR ap.street_nl = :nl)
   AND (ap.postcode = :pc OR (ap.postcode IS NULL AND ap.commune_nis = ANY(CAST(:communes AS text[]))))
"""
_LINES_NEAR = """
SELECT ST_AsText(sl.geom) FROM street_line sl
 WHERE sl.geom && ST_Expand(ST_MakeEnvelope(:x0, :y0, :x1, :y1, 31370), :radius) AND (sl.name_fr = :fr OR sl.name_nl = :nl)
"""
_LINES_ANYWHERE = """
SELECT ST_AsText(sl.geom) FROM street_line sl
 WHERE (sl.name_fr = :fr OR sl.name_nl = :nl) AND sl.commune_nis = ANY(CAST(:communes AS text[]))
"""


def test_in_memory_street_data_is_what_postgis_selects(db_url: str, loaded: Engine):
    """Each street's address points and lines, gathered from the layers in memory, are the rows
    the per-street PostGIS queries select (names, postcode or communes, near the street)."""
    import shapely
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.geo.urbis_server import STREET_LINE_RADIUS_M

    async def load():
        engine = create_async_engine(db_url)
        try:
            return await load_gazetteer(engine)
        finally:
            await engine.dispose()

    gaz = run(load())
    assert gaz.layers.points and gaz.layers.line_parts
    named = [g for g in gaz.groups if g.name_fr in gaz.layers.points_by_fr or g.name_nl in gaz.layers.points_by_nl]
    groups = named[:: max(1, len(named) // 300)] + gaz.groups[:: max(1, len(gaz.groups) // 100)]
    with_points = with_lines = 0
    with loaded.connect() as conn:
        for g in groups:
            communes = sorted(set(g.communes) | set(gaz.postcode_communes.get(g.postcode, ())))
            params = {"fr": g.name_fr, "nl": g.name_nl, "pc": g.postcode, "communes": communes}
            reps = [(r.x, r.y) for r in g.rows if r.x is not None]
            if reps:
                params.update(x0=min(x for x, _ in reps), y0=min(y for _, y in reps), x1=max(x for x, _ in reps),
                              y1=max(y for _, y in reps), radius=STREET_LINE_RADIUS_M)
            points_sql, lines_sql = (_POINTS_NEAR, _LINES_NEAR) if reps else (_POINTS_ANYWHERE, _LINES_ANYWHERE)
            expected = sorted((r.number, r.x, r.y, r.commune_nis) for r in conn.execute(text(points_sql), params)
                              if parse_number(r.number) is not None)
            points, street_lines = gaz.street_data(g)
            assert sorted((p.raw, p.x, p.y, p.commune_nis) for p in points) == expected, (g.name_fr, g.postcode)
            parts = sorted(part.wkt for (wkt,) in conn.execute(text(lines_sql), params)
                           for part in getattr(shapely.from_wkt(wkt), "geoms", [shapely.from_wkt(wkt)]))
            got = [ln.wkt for ln in street_lines()]
            assert set(got) <= set(parts), (g.name_fr, g.postcode)  # then kept near the street's points
            if not (points or reps):
                assert sorted(got) == parts
            assert gaz.street_data(g) is gaz.street_data(g)  # gathered once
            with_points += bool(points)
            with_lines += bool(got)
    assert with_points > 100 and with_lines > 100, (with_points, with_lines)


def test_exact_number_prefers_its_own_label():
    group = StreetGroup(1000, "Wetstraat", "Rue de la Loi")
    points = [_Point(parse_number("16-18"), "16-18", 1.0, 1.0, None), _Point(parse_number("16"), "16", 2.0, 2.0, None),
              _Point(parse_number("16"), "16", 3.0, 3.0, None)]
    where = locate(group, parse_number("16"), points, list)
    assert (where.number, where.x, where.police) == ("16", 2.0, "Found")  # the plain "16", the first loaded
    assert locate(group, parse_number("16-18"), points[:1], list).number == "16-18"


def test_twin_locates_an_address_once_for_both_languages(db_url: str, loaded: Engine, sample: dict):
    app = create_urbis_app(db_url)
    routed = create_urbis_app(db_url)
    seen = []

    @routed.middleware("http")
    async def count(request, call_next):  # middleware: the routed path, not the direct one
        seen.append(request.url.path)
        return await call_next(request)

    servers = [ServerThread(app).start(), ServerThread(routed).start()]
    try:
        def ask(server, language, **extra):
            fields = {"language": language, "address": {"street": {"name": sample["street_fr"], "postcode": str(sample["postcode"]), **extra},
                                                        "number": sample["number"]}, "spatialReference": "31370"}
            r = httpx.get(f"{server.url}/Rest/Localize/getaddressesfields", params={"json": json.dumps(fields)}, timeout=10)
            assert r.status_code == 200 and r.headers["content-type"] == "application/json"
            return r.json()

        fr, nl = ask(servers[0], "fr"), ask(servers[0], "nl")
        gaz = app.state.localizer.gazetteer
        assert len(gaz._located) == 1  # the second language was only rendered
        assert fr["result"][0]["address"]["street"]["name"] == sample["street_fr"]
        assert nl["result"][0]["address"]["street"]["name"] == sample["street_nl"]
        assert fr["result"][0]["point"] == nl["result"][0]["point"] and fr["result"][0]["adNc"] == nl["result"][0]["adNc"]
        assert app.state.requests["getaddressesfields"] == 2
        # the direct path answers what the routes answer
        assert ask(servers[1], "fr") == fr and ask(servers[1], "nl") == nl and len(seen) == 2
        free = {"language": "nl", "address": f"{sample['street_fr']} {sample['number']}, {sample['postcode']}"}
        assert httpx.get(f"{servers[0].url}/localization/Rest/Localize/getaddresses", params=free).json() == \
            httpx.get(f"{servers[1].url}/localization/Rest/Localize/getaddresses", params=free).json()
        assert httpx.post(f"{servers[0].url}/Rest/Localize/getaddresses", data=free).json() == \
            httpx.post(f"{servers[1].url}/Rest/Localize/getaddresses", data=free).json()
        # a municipality that is not a string is read as text, not a server error
        assert ask(servers[0], "fr", municipality=1000)["error"] is False
        assert httpx.get(f"{servers[0].url}/stats").json()["requests"]["total"] == 5
    finally:
        for server in servers:
            server.stop()


# ---------------------------------------------------------------------------------------------
# the client's keep-alive HTTP/1.1 pool
# ---------------------------------------------------------------------------------------------


def test_keep_alive_pool_only_for_plain_http(monkeypatch):
    headers = {"Accept": "application/json"}
    assert isinstance(_keep_alive_pool("http://127.0.0.1:8765", headers, 5, 3), KeepAlivePool)
    assert _keep_alive_pool("https://geoservices.irisnet.be/localization", headers, 5, 3) is None
    assert _keep_alive_pool("http://user:secret@127.0.0.1:8765", headers, 5, 3) is None
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    monkeypatch.setenv("no_proxy", "localhost")
    assert _keep_alive_pool("http://urbis.invalid:8765", headers, 5, 3) is None  # through the proxy: httpx
    assert _keep_alive_pool("http://localhost:8765", headers, 5, 3) is not None
    assert UrbisClient("http://urbis.invalid:8765")._pool is None
    with pytest.raises(ValueError):
        UrbisClient("https://geoservices.irisnet.be/localization", keep_alive_pool=True)
    assert UrbisClient("http://127.0.0.1:8765", transport=httpx.MockTransport(lambda r: httpx.Response(500)))._pool is None


def test_keep_alive_pool_and_httpx_give_the_same_results(twin: ServerProcess, loaded: Engine):
    with loaded.connect() as conn:
        rows = conn.execute(text(
            "SELECT street_fr, number, postcode FROM address_point WHERE street_fr IS NOT NULL AND number IS NOT NULL "
            "AND postcode IS NOT NULL ORDER BY id LIMIT 60")).all()
    items = [AddressQuery(r.street_fr, r.number, str(r.postcode)) for r in rows]

    async def go(**kw):
        async with client(twin, concurrency=4, **kw) as c:
            return await c.geocode_many(items), c.stats, c._pool

    pooled, stats, pool = run(go())
    plain, plain_stats, no_pool = run(go(keep_alive_pool=False))
    assert pool is not None and no_pool is None
    assert pooled == plain and stats.requests == plain_stats.requests and stats.failures == 0
    assert 1 <= pool.opened <= 4  # connections reused, at most one per concurrent request


class RawServer:
    """A hand-written HTTP/1.1 server on 127.0.0.1 (its own event loop, in a thread), to test the
    client's pool on what uvicorn never does: ``behaviour(n, request)`` gives the bytes to answer
    the ``n``-th request on a connection (``None``: close it without answering);
    ``close_after_answer``: close each connection after its first answer."""

    def __init__(self, behaviour, close_after_answer: bool = False):
        self.behaviour = behaviour
        self.close_after_answer = close_after_answer
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _run(self):
        async def handle(reader, writer):
            self.connections += 1
            n = 0
            try:
                while True:
                    request = await reader.readuntil(b"\r\n\r\n")
                    answer = self.behaviour(n, request)
                    n += 1
                    if answer is None:
                        break
                    writer.write(answer)
                    await writer.drain()
                    if self.close_after_answer:
                        break
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        async def main():
            self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            self.ready.set()
            await self.server.serve_forever()

        try:
            self.loop.run_until_complete(main())
        except (asyncio.CancelledError, RuntimeError):
            pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(self.loop)])
        self.thread.join(5)


_EMPTY = json.dumps({"result": [], "error": False, "status": "success", "version": "2.0.2"}).encode()


def test_keep_alive_pool_reconnects_when_the_server_dropped_an_idle_connection():
    # each connection answers one request, then closes when the next one arrives (as a server whose
    # idle timeout struck just then): the request goes out again on a new connection, no failure
    plain = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(_EMPTY), _EMPTY)
    server = RawServer(lambda n, request: plain if n == 0 else None)
    try:
        async def go():
            async with UrbisClient(server.url, concurrency=1, retries=0, failure_threshold=1) as c:
                return [await c.get_addresses(f"Rue de la Loi {i}") for i in range(3)], c.stats

        answers, stats = run(go())
        assert all(a["result"] == [] for a in answers)
        assert stats.failures == 0 and stats.requests == 3 and server.connections == 3
    finally:
        server.stop()


def test_keep_alive_pool_reads_chunked_answers_and_honours_connection_close():
    chunks = [_EMPTY[:10], _EMPTY[10:]]
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    cases = [  # answer, whether the server closes after it, connections for 3 requests
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n" + body, False, 1),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_EMPTY), _EMPTY), True, 3),
        (b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + _EMPTY, True, 3),  # ends with the connection
    ]
    for answer, close, connections in cases:
        server = RawServer(lambda n, request, answer=answer: answer, close_after_answer=close)
        try:
            async def go(url: str):
                async with UrbisClient(url, concurrency=1, retries=0) as c:
                    return [await c.get_addresses(f"Rue de la Loi {i}") for i in range(3)], c._pool, c.stats

            answers, pool, stats = run(go(server.url))
            assert all(a["result"] == [] for a in answers) and stats.failures == 0
            assert server.connections == connections and pool.opened == connections
        finally:
            server.stop()
