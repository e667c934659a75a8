"""The DCAT-AP 3 catalogue: three serialisations of one graph, valid against the DCAT-AP 3.0.1 SHACL
shapes, consistent with the downloads it describes."""

from __future__ import annotations

import hashlib

import pyshacl
import pytest
from rdflib import DCAT, DCTERMS, RDF, SH, Graph, Literal, Namespace, URIRef
from rdflib.compare import isomorphic
from sqlalchemy import text

from app.catalog import DATASETS, SERVICES
from app.downloads import FILES, build_downloads
from app.routers.catalog import negotiate
from tests.conftest import REFERENCE_DIR

SHAPES_DIR = REFERENCE_DIR / ".." / "standards" / "dcat-ap-3.0.1"
SPDX = Namespace("http://spdx.org/rdf/terms#")
BASE = "http://testserver"
MEDIA = {"ttl": ("text/turtle", "turtle"), "rdf": ("application/rdf+xml", "xml"), "jsonld": ("application/ld+json", "json-ld")}

# Recommended properties left out on purpose (severity Warning in shapes_recommended.ttl):
#  * dct:temporal on the datasets: a directory of current services (and reference lists) covers no period;
#  * dct:conformsTo on the legacy /rest service: it follows no published standard (it mimics social.brussels).
ACCEPTED_WARNINGS = {
    *((f"{BASE}/catalog#dataset/{d.slug}", str(DCTERMS.temporal)) for d in DATASETS),
    (f"{BASE}/catalog#service/legacy", str(DCTERMS.conformsTo)),
}


@pytest.fixture(scope="module")
def built(loaded, settings):
    return build_downloads(loaded, settings=settings)


@pytest.fixture(scope="module")
def graphs(client, built) -> dict[str, Graph]:
    out = {}
    for fmt, (media_type, parser) in MEDIA.items():
        response = client.get(f"/catalog.{fmt}")
        assert response.status_code == 200, fmt
        assert response.headers["content-type"].split(";")[0] == media_type
        out[fmt] = Graph().parse(data=response.content, format=parser)
    return out


@pytest.fixture(scope="module")
def graph(graphs) -> Graph:
    return graphs["ttl"]


def _validate(graph: Graph, shapes: str):
    shacl = Graph().parse(SHAPES_DIR / shapes, format="turtle")
    conforms, report, _ = pyshacl.validate(graph, shacl_graph=shacl, inference="none", allow_warnings=True)
    results = [
        (report.value(r, SH.resultSeverity), str(report.value(r, SH.focusNode)), str(report.value(r, SH.resultPath)),
         str(report.value(r, SH.resultMessage)))
        for r in report.subjects(RDF.type, SH.ValidationResult)
    ]
    return conforms, results


def test_the_three_serialisations_are_the_same_graph(graphs):
    ttl, rdf, jsonld = graphs["ttl"], graphs["rdf"], graphs["jsonld"]
    assert len(ttl) > 300
    assert len(ttl) == len(rdf) == len(jsonld)
    assert isomorphic(ttl, rdf) and isomorphic(ttl, jsonld)


def test_content_negotiation_and_head(client, built):
    for accept, media_type in (
        (None, "text/turtle"),
        ("text/html,application/xhtml+xml,*/*;q=0.8", "text/turtle"),
        ("application/rdf+xml", "application/rdf+xml"),
        ("application/ld+json", "application/ld+json"),
        ("text/turtle;q=0.5, application/rdf+xml;q=0.9", "application/rdf+xml"),
    ):
        headers = {"Accept": accept} if accept else {}
        response = client.get("/catalog", headers=headers)
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] == media_type, accept
        assert "Accept" in response.headers["vary"]
        head = client.head("/catalog", headers={**headers, "Accept-Encoding": "identity"})
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-type"] == response.headers["content-type"]
        assert int(head.headers["content-length"]) == len(response.content)
        assert head.headers["etag"] == response.headers["etag"]
    for fmt in MEDIA:
        assert client.head(f"/catalog.{fmt}").status_code == 200
    response = client.get("/catalog.ttl")
    assert response.headers["last-modified"]
    assert client.get("/catalog.ttl", headers={"If-None-Match": response.headers["etag"]}).status_code == 304
    assert client.get("/catalog.ttl", headers={"If-Modified-Since": response.headers["last-modified"]}).status_code == 304


def test_negotiate():
    assert negotiate("") == "ttl"
    assert negotiate("image/png") == "ttl"
    assert negotiate("application/json") == "jsonld"
    assert negotiate("application/ld+json;q=0.2, text/turtle;q=0.1") == "jsonld"
    assert negotiate("application/*") == "jsonld"
    assert negotiate("text/turtle;q=0, application/rdf+xml") == "rdf"


def test_same_bytes_every_time(client, built):
    for fmt in MEDIA:
        first, second = client.get(f"/catalog.{fmt}"), client.get(f"/catalog.{fmt}")
        assert first.content == second.content and first.headers["etag"] == second.headers["etag"]


def test_mandatory_shapes_no_violation(graph):
    conforms, results = _validate(graph, "shapes.ttl")
    violations = [r for r in results if r[0] == SH.Violation]
    assert conforms and violations == [], violations


def test_class_range_shapes_no_violation(graph):
    conforms, results = _validate(graph, "range.ttl")
    assert conforms and [r for r in results if r[0] == SH.Violation] == []


def test_recommended_shapes_only_the_accepted_warnings(graph):
    conforms, results = _validate(graph, "shapes_recommended.ttl")
    assert conforms
    assert all(r[0] == SH.Warning for r in results), results
    warnings = {(focus, path) for _, focus, path, _ in results}
    assert warnings <= ACCEPTED_WARNINGS, sorted(warnings - ACCEPTED_WARNINGS)


def test_distributions_match_the_downloads(client, graph, loaded):
    with loaded.connect() as conn:
        rows = {r["name"]: r for r in conn.execute(text("SELECT name, sha256, byte_size, modified FROM download WHERE current")).mappings()}
    distributions = list(graph.subjects(RDF.type, DCAT.Distribution))
    assert len(distributions) == len(FILES)
    seen = set()
    for dist in distributions:
        url = graph.value(dist, DCAT.downloadURL)
        assert graph.value(dist, DCAT.accessURL) == url
        name = str(url).rsplit("/", 1)[1]
        seen.add(name)
        size = graph.value(dist, DCAT.byteSize)
        assert size.datatype == URIRef("http://www.w3.org/2001/XMLSchema#nonNegativeInteger")
        checksum = graph.value(dist, SPDX.checksum)
        assert graph.value(checksum, SPDX.algorithm) == SPDX.checksumAlgorithm_sha256
        value = str(graph.value(checksum, SPDX.checksumValue)).lower()
        assert int(size) == rows[name]["byte_size"] and value == rows[name]["sha256"]
        assert graph.value(dist, DCTERMS.modified).toPython() == rows[name]["modified"].replace(microsecond=0)
        assert str(graph.value(dist, DCTERMS.format)).startswith("http://publications.europa.eu/resource/authority/file-type/")
        assert str(url).startswith(BASE)
        response = client.get(str(url).removeprefix(BASE), headers={"Accept-Encoding": "identity"})
        assert response.status_code == 200, url
        assert len(response.content) == int(size)
        assert hashlib.sha256(response.content).hexdigest() == value
        if not name.endswith(".ndjson"):
            assert str(graph.value(dist, DCAT.mediaType)).startswith("https://www.iana.org/assignments/media-types/")
    assert seen == {f.name for f in FILES}


def test_languages_titles_keywords_themes(graph):
    catalog = URIRef(f"{BASE}/catalog")
    assert (catalog, RDF.type, DCAT.Catalog) in graph
    nodes = [catalog, *graph.subjects(RDF.type, DCAT.Dataset), *graph.subjects(RDF.type, DCAT.DataService),
             *graph.subjects(RDF.type, DCAT.Distribution)]
    assert len(nodes) == 1 + len(DATASETS) + len(SERVICES) + len(FILES)
    for node in nodes:
        for predicate in (DCTERMS.title, DCTERMS.description):
            langs = {o.language for o in graph.objects(node, predicate) if isinstance(o, Literal)}
            assert {"nl", "fr"} <= langs, (node, predicate)
    for node in [*graph.subjects(RDF.type, DCAT.Dataset), *graph.subjects(RDF.type, DCAT.DataService)]:
        assert {o.language for o in graph.objects(node, DCAT.keyword)} == {"nl", "fr"}, node
        themes = {str(t) for t in graph.objects(node, DCAT.theme)}
        assert themes and all(t.startswith("http://publications.europa.eu/resource/authority/data-theme/") for t in themes)
    languages = {str(o) for o in graph.objects(catalog, DCTERMS.language)}
    assert languages == {"http://publications.europa.eu/resource/authority/language/NLD",
                         "http://publications.europa.eu/resource/authority/language/FRA"}
    assert str(graph.value(catalog, DCTERMS.license)) == "http://publications.europa.eu/resource/authority/licence/CC_BY_4_0"
    publisher = graph.value(catalog, DCTERMS.publisher)
    assert {o.language for o in graph.objects(publisher, URIRef("http://xmlns.com/foaf/0.1/name"))} == {"nl", "fr"}


def test_datasets_services_and_dates(graph, loaded):
    catalog = URIRef(f"{BASE}/catalog")
    datasets = {str(d) for d in graph.objects(catalog, DCAT.dataset)}
    assert datasets == {f"{BASE}/catalog#dataset/{d.slug}" for d in DATASETS}
    services = {str(s): s for s in graph.objects(catalog, DCAT.service)}
    endpoints = {str(graph.value(s, DCAT.endpointURL)): str(graph.value(s, DCAT.endpointDescription)) for s in services.values()}
    assert endpoints == {
        f"{BASE}/v1": f"{BASE}/openapi.json",
        f"{BASE}/ogc": f"{BASE}/ogc/api",
        f"{BASE}/hsds/nl": f"{BASE}/hsds/nl/openapi.json",
        f"{BASE}/hsds/fr": f"{BASE}/hsds/fr/openapi.json",
        f"{BASE}/rest": f"{BASE}/openapi.json",
    }
    for service in services.values():
        served = {str(d) for d in graph.objects(service, DCAT.servesDataset)}
        assert served and served <= datasets
    organisations = URIRef(f"{BASE}/catalog#dataset/organisations")
    formats = {str(graph.value(d, DCTERMS.format)).rsplit("/", 1)[1] for d in graph.objects(organisations, DCAT.distribution)}
    assert formats == {"GEOJSON", "CSV", "XLSX", "JSON"}
    with loaded.connect() as conn:
        last = conn.execute(text("SELECT max(modified) FROM download WHERE current")).scalar_one()
    assert graph.value(catalog, DCTERMS.modified).toPython() == last.replace(microsecond=0)
