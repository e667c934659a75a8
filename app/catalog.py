"""The DCAT-AP 3 catalogue of Bruso: one catalogue, one dataset per published product, one
distribution per precomputed download (``app/downloads.py``: sizes, checksums and dates are those of
the current files), the data services (APIs), in Turtle, RDF/XML or JSON-LD.

What it says
  * catalogue: title/description NL+FR, publisher (``PUBLISHER``, a foaf:Agent named in NL and FR),
    licence CC BY 4.0 (EU licence authority), languages NL/FR (EU language authority), homepage,
    spatial coverage (NUTS BE10 = Brussels-Capital Region, with the bbox and centroid of the
    communes), theme taxonomy (EU data themes), issued (first build) and modified (last data change,
    i.e. the last successful import or a later edit);
  * datasets (``DATASETS``): organisations directory, thematic tree, accreditations, reference
    districts — titles, descriptions and keywords NL+FR, EU data themes, publisher, contact point,
    languages, spatial coverage, update frequency, issued/modified, distributions;
  * distributions: downloadURL = accessURL = ``{base}/downloads/{name}``, IANA media type (none for
    NDJSON: not registered), EU file type, conformsTo (RFC 7946, RFC 4180, ndjson-spec), byteSize
    (xsd:nonNegativeInteger), spdx:checksum (sha256, xsd:hexBinary), issued/modified, licence,
    availability (EU planned-availability STABLE);
  * data services: v1, OGC API – Features, HSDS NL and FR, legacy /rest — endpointURL,
    endpointDescription (their OpenAPI documents), servesDataset, conformsTo.

The vocabulary resources it uses (themes, licence, languages, media types, file types, standards…)
are typed with the classes DCAT-AP's range shapes expect, and concepts carry a skos:prefLabel.

URIs are stable: ``{base}/catalog`` for the catalogue and ``{base}/catalog#…`` for what it describes,
with ``base`` the configured public base URL (else the request's). No blank nodes: the serialisations
of the same inputs are byte-identical in every process (strong ETags agree across replicas).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from functools import lru_cache

from rdflib import DCAT, DCTERMS, FOAF, RDF, RDFS, SKOS, XSD, Graph, Literal, Namespace, URIRef
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from . import downloads

SPDX = Namespace("http://spdx.org/rdf/terms#")
VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
DCATAP = Namespace("http://data.europa.eu/r5r/")
ADMS = Namespace("http://www.w3.org/ns/adms#")
LOCN = Namespace("http://www.w3.org/ns/locn#")
GSP = Namespace("http://www.opengis.net/ont/geosparql#")
EU = "http://publications.europa.eu/resource/authority/"
IANA = "https://www.iana.org/assignments/media-types/"

FORMATS = {
    # suffix: (media type, rdflib format)
    "ttl": ("text/turtle", "turtle"),
    "rdf": ("application/rdf+xml", "pretty-xml"),
    "jsonld": ("application/ld+json", "json-ld"),
}
PREFIXES = {
    "dcat": DCAT, "dct": DCTERMS, "foaf": FOAF, "skos": SKOS, "spdx": SPDX, "vcard": VCARD, "dcatap": DCATAP,
    "adms": ADMS, "locn": LOCN, "gsp": GSP, "xsd": XSD, "rdfs": RDFS,
}

# ---------------------------------------------------------------- who publishes

PUBLISHER = {
    "name": {"nl": "Sociale kaart van Brussel", "fr": "Carte sociale de Bruxelles"},
    "homepage": "https://social.brussels",
    "type": ("http://purl.org/adms/publishertype/NonProfitOrganisation", "Non-Profit Organisation"),
}
LICENCE = EU + "licence/CC_BY_4_0"
LICENCE_SEE_ALSO = "https://creativecommons.org/licenses/by/4.0/"
LICENCE_TYPE = ("http://purl.org/adms/licencetype/Attribution", "Attribution")
LANGUAGES = (EU + "language/NLD", EU + "language/FRA")
SPATIAL = "http://data.europa.eu/nuts/code/BE10"  # NUTS 2: Région de Bruxelles-Capitale / Brussels Hoofdstedelijk Gewest
SPATIAL_LABEL = {"nl": "Brussels Hoofdstedelijk Gewest", "fr": "Région de Bruxelles-Capitale"}
FREQUENCY = EU + "frequency/IRREG"  # rebuilt after each import
AVAILABILITY = (EU + "planned-availability/STABLE", "stable")
THEME_SCHEME = EU + "data-theme"
THEMES = {
    "SOCI": {"en": "Population and society", "nl": "Bevolking en samenleving", "fr": "Population et société"},
    "HEAL": {"en": "Health", "nl": "Gezondheid", "fr": "Santé"},
    "REGI": {"en": "Regions and cities", "nl": "Regio's en steden", "fr": "Régions et villes"},
    "GOVE": {"en": "Government and public sector", "nl": "Overheid en publieke sector", "fr": "Gouvernement et secteur public"},
}
STANDARDS = {
    "geojson": ("https://www.rfc-editor.org/rfc/rfc7946", "RFC 7946: The GeoJSON Format"),
    "csv": ("https://www.rfc-editor.org/rfc/rfc4180", "RFC 4180: Common Format and MIME Type for CSV Files"),
    "ndjson": ("https://github.com/ndjson/ndjson-spec", "Newline Delimited JSON (ndjson) specification"),
    "problem": ("https://www.rfc-editor.org/rfc/rfc9457", "RFC 9457: Problem Details for HTTP APIs"),
    "ogcapi": ("http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core", "OGC API - Features - Part 1: Core"),
    "hsds": ("https://docs.openreferral.org/en/v3.0/hsds/", "Open Referral Human Services Data Specification 3.0"),
}


@dataclass(frozen=True)
class Format:
    iana: str | None  # IANA media type; None when not registered
    file_type: str  # EU file-type authority code
    standard: str | None  # key of STANDARDS
    label: str


FILE_FORMATS = {
    "geojson": Format("application/geo+json", "GEOJSON", "geojson", "GeoJSON"),
    "csv": Format("text/csv", "CSV", "csv", "CSV"),
    "xlsx": Format("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "XLSX", None, "XLSX"),
    "ndjson": Format(None, "JSON", "ndjson", "NDJSON"),
    "json": Format("application/json", "JSON", None, "JSON"),
}

# ---------------------------------------------------------------- what is published


@dataclass(frozen=True)
class DatasetInfo:
    slug: str
    title: dict
    description: dict
    keywords: dict
    themes: tuple[str, ...]


DATASETS: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        "organisations",
        {"nl": "Sociale kaart van Brussel: welzijns- en gezondheidsaanbod",
         "fr": "Carte sociale de Bruxelles : offre sociale et de santé"},
        {"nl": "Alle gepubliceerde activiteitsplaatsen van de Brusselse sociale kaart (OCMW-antennes, opvangtehuizen, "
               "kinderdagverblijven, centra voor geestelijke gezondheidszorg, schuldbemiddeling, juridische bijstand, …) "
               "met adres, coördinaten, activiteiten, doelpubliek, erkenningen en talen, tweetalig (NL/FR).",
         "fr": "Tous les lieux d'activité publiés de la carte sociale bruxelloise (antennes CPAS, maisons d'accueil, "
               "crèches, services de santé mentale, médiation de dettes, aide juridique, …) avec adresse, coordonnées, "
               "activités, public cible, agréments et langues, en français et en néerlandais."},
        {"nl": ("sociale kaart", "welzijn", "gezondheid", "OCMW", "hulpverlening", "Brussel"),
         "fr": ("carte sociale", "action sociale", "santé", "CPAS", "aide sociale", "Bruxelles")},
        ("SOCI", "HEAL", "REGI"),
    ),
    DatasetInfo(
        "thematic-tree",
        {"nl": "Thematische indeling van de sociale kaart: sectoren en categorieën",
         "fr": "Classement thématique de la carte sociale : secteurs et catégories"},
        {"nl": "De sectoren van de sociale kaart en hun boom van rubrieken en categorieën, met trefwoorden en het aantal "
               "gepubliceerde activiteitsplaatsen per knoop. Plaatsingen die Bruso zelf afleidde, zijn als afgeleid gemarkeerd.",
         "fr": "Les secteurs de la carte sociale et leur arborescence de rubriques et de catégories, avec mots-clés et "
               "nombre de lieux d'activité publiés par nœud. Les placements déduits par Bruso sont marqués comme tels."},
        {"nl": ("sectoren", "categorieën", "thesaurus", "welzijn"),
         "fr": ("secteurs", "catégories", "thésaurus", "action sociale")},
        ("SOCI", "HEAL"),
    ),
    DatasetInfo(
        "accreditations",
        {"nl": "Erkenningen van welzijns- en gezondheidsvoorzieningen in Brussel",
         "fr": "Agréments des services sociaux et de santé à Bruxelles"},
        {"nl": "De erkenningen die activiteitsplaatsen van de sociale kaart kunnen hebben, met de overheid die ze toekent "
               "en, waar bekend, de regelgeving.",
         "fr": "Les agréments que peuvent détenir les lieux d'activité de la carte sociale, avec l'autorité qui les "
               "délivre et, quand elle est connue, la réglementation."},
        {"nl": ("erkenning", "overheid", "regelgeving", "welzijn"),
         "fr": ("agrément", "autorité", "réglementation", "action sociale")},
        ("SOCI", "GOVE"),
    ),
    DatasetInfo(
        "districts",
        {"nl": "Referentiegebieden van het Brussels Gewest: gemeenten, wijken en statistische sectoren",
         "fr": "Découpages de référence de la Région bruxelloise : communes, quartiers et secteurs statistiques"},
        {"nl": "De grenzen (WGS84) van de gemeenten, de wijken van de Wijkmonitoring en de statistische sectoren van het "
               "Brussels Hoofdstedelijk Gewest, met het aantal gepubliceerde activiteitsplaatsen per gebied.",
         "fr": "Les limites (WGS84) des communes, des quartiers du Monitoring des quartiers et des secteurs statistiques "
               "de la Région de Bruxelles-Capitale, avec le nombre de lieux d'activité publiés par zone."},
        {"nl": ("gemeente", "wijk", "statistische sector", "grenzen"),
         "fr": ("commune", "quartier", "secteur statistique", "limites")},
        ("REGI", "SOCI"),
    ),
)

DISTRIBUTIONS = {
    # file name: (title NL, title FR, description NL, description FR)
    "organisations.geojson": (
        "Activiteitsplaatsen (GeoJSON)", "Lieux d'activité (GeoJSON)",
        "RFC 7946-FeatureCollection (WGS84): één feature per activiteitsplaats, met het volledige tweetalige v1-record als properties.",
        "FeatureCollection RFC 7946 (WGS84) : un feature par lieu d'activité, avec la fiche v1 bilingue complète en propriétés."),
    "organisations.csv": (
        "Activiteitsplaatsen (CSV)", "Lieux d'activité (CSV)",
        ("Eén rij per activiteitsplaats, kolommen voor NL en FR (UTF-8 met BOM, komma als scheidingsteken): de kolommen "
         "van de CSV-export van de API en van het importsjabloon."),
        ("Une ligne par lieu d'activité, colonnes pour le FR et le NL (UTF-8 avec BOM, séparateur virgule) : les colonnes "
         "de l'export CSV de l'API et du modèle d'import.")),
    "organisations.xlsx": (
        "Activiteitsplaatsen (Excel)", "Lieux d'activité (Excel)",
        "Dezelfde tabel als Excel-werkmap, met getypeerde cellen.",
        "Le même tableau en classeur Excel, avec des cellules typées."),
    "organisations.ndjson": (
        "Activiteitsplaatsen (NDJSON)", "Lieux d'activité (NDJSON)",
        "Eén tweetalig v1-JSON-record per regel (newline-delimited JSON).",
        "Une fiche v1 bilingue en JSON par ligne (newline-delimited JSON)."),
    "sectors.json": (
        "Sectoren met hun categorieënboom (JSON)", "Secteurs et leur arborescence de catégories (JSON)",
        "De sectoren met hun geneste boom van categorieën en de aantallen activiteitsplaatsen.",
        "Les secteurs avec leur arborescence de catégories et les nombres de lieux d'activité."),
    "categories.json": (
        "Categorieën (JSON)", "Catégories (JSON)",
        "Alle categorieën met titels, beschrijvingen, trefwoorden, sectoren en aantallen activiteitsplaatsen.",
        "Toutes les catégories avec titres, descriptions, mots-clés, secteurs et nombres de lieux d'activité."),
    "accreditations.json": (
        "Erkenningen en overheden (JSON)", "Agréments et autorités (JSON)",
        "Alle erkenningen met hun erkennende overheid, en de lijst van de overheden.",
        "Tous les agréments avec l'autorité qui les délivre, et la liste des autorités."),
    "communes.geojson": (
        "Gemeenten (GeoJSON)", "Communes (GeoJSON)",
        "De gemeenten als polygonen (WGS84) met het aantal activiteitsplaatsen.",
        "Les communes en polygones (WGS84) avec le nombre de lieux d'activité."),
    "quartiers.geojson": (
        "Wijken (GeoJSON)", "Quartiers (GeoJSON)",
        "De wijken van de Wijkmonitoring als polygonen (WGS84) met het aantal activiteitsplaatsen.",
        "Les quartiers du Monitoring des quartiers en polygones (WGS84) avec le nombre de lieux d'activité."),
    "statistical-sectors.geojson": (
        "Statistische sectoren (GeoJSON)", "Secteurs statistiques (GeoJSON)",
        "De statistische sectoren als polygonen (WGS84) met het aantal activiteitsplaatsen.",
        "Les secteurs statistiques en polygones (WGS84) avec le nombre de lieux d'activité."),
}


@dataclass(frozen=True)
class ServiceInfo:
    slug: str
    path: str  # endpoint, under the base URL
    description_path: str  # its OpenAPI document
    title: dict
    description: dict
    keywords: dict
    serves: tuple[str, ...]  # dataset slugs
    standards: tuple[str, ...]  # keys of STANDARDS
    languages: tuple[str, ...] = LANGUAGES


def _hsds(lang: str, name_nl: str, name_fr: str, language: str) -> ServiceInfo:
    return ServiceInfo(
        f"hsds-{lang}", f"/hsds/{lang}", f"/hsds/{lang}/openapi.json",
        {"nl": f"Open Referral HSDS 3.0 ({name_nl})", "fr": f"Open Referral HSDS 3.0 ({name_fr})"},
        {"nl": f"De sociale kaart volgens de Human Services Data Specification 3.0 van Open Referral, in het {name_nl}.",
         "fr": f"La carte sociale selon la Human Services Data Specification 3.0 d'Open Referral, en {name_fr}."},
        {"nl": ("HSDS", "Open Referral", "hulpverlening"), "fr": ("HSDS", "Open Referral", "services sociaux")},
        ("organisations", "thematic-tree"), ("hsds",), (language,),
    )


SERVICES: tuple[ServiceInfo, ...] = (
    ServiceInfo(
        "v1", "/v1", "/openapi.json",
        {"nl": "Bruso API v1: zoeken en lezen", "fr": "API Bruso v1 : recherche et lecture"},
        {"nl": "Multicriteria-zoeken (tekst, thema, erkenning, gebied, afstand, …) en volledige records, in JSON, GeoJSON, "
               "CSV en XLSX, tweetalig of in één taal; referentielijsten, suggesties en statistieken.",
         "fr": "Recherche multicritère (texte, thème, agrément, zone, distance, …) et fiches complètes, en JSON, GeoJSON, "
               "CSV et XLSX, bilingue ou dans une langue ; listes de référence, suggestions et statistiques."},
        {"nl": ("API", "zoeken", "sociale kaart"), "fr": ("API", "recherche", "carte sociale")},
        ("organisations", "thematic-tree", "accreditations", "districts"), ("geojson", "problem"),
    ),
    ServiceInfo(
        "ogc", "/ogc", "/ogc/api",
        {"nl": "OGC API – Features", "fr": "OGC API – Features"},
        {"nl": "De activiteitsplaatsen als OGC API – Features-collectie, voor GIS-software (QGIS, ArcGIS, GDAL).",
         "fr": "Les lieux d'activité en collection OGC API – Features, pour les logiciels SIG (QGIS, ArcGIS, GDAL)."},
        {"nl": ("OGC API", "GIS", "kaart"), "fr": ("OGC API", "SIG", "carte")},
        ("organisations",), ("ogcapi", "geojson"),
    ),
    _hsds("nl", "Nederlands", "néerlandais", LANGUAGES[0]),
    _hsds("fr", "Frans", "français", LANGUAGES[1]),
    ServiceInfo(
        "legacy", "/rest", "/openapi.json",
        {"nl": "Compatibele social.brussels-API (/rest)", "fr": "API compatible social.brussels (/rest)"},
        {"nl": "Dezelfde paden en JSON-vormen als de vroegere API van social.brussels, voor bestaande toepassingen.",
         "fr": "Les mêmes chemins et formes JSON que l'ancienne API de social.brussels, pour les applications existantes."},
        {"nl": ("API", "social.brussels", "compatibiliteit"), "fr": ("API", "social.brussels", "compatibilité")},
        ("organisations", "thematic-tree", "accreditations"), (),
    ),
)

TITLE = {"nl": "Open data van de sociale kaart van Brussel", "fr": "Données ouvertes de la carte sociale de Bruxelles"}
DESCRIPTION = {
    "nl": "Datasets en API's van de tweetalige sociale kaart van het Brussels Hoofdstedelijk Gewest: het welzijns- en "
          "gezondheidsaanbod, de thematische indeling, de erkenningen en de referentiegebieden.",
    "fr": "Jeux de données et API de la carte sociale bilingue de la Région de Bruxelles-Capitale : l'offre sociale et "
          "de santé, le classement thématique, les agréments et les découpages de référence.",
}

# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class FileMeta:
    name: str
    media_type: str
    byte_size: int
    sha256: str
    records: int | None
    modified: dt.datetime | None
    issued: dt.datetime | None


@dataclass(frozen=True)
class Extent:
    bbox: str  # WKT, WGS84
    centroid: str


EXTENT_SQL = """
SELECT ST_AsText(ST_Envelope(ST_Transform(ST_Collect(geom), 4326)), 5) AS bbox,
       ST_AsText(ST_Transform(ST_Centroid(ST_Collect(geom)), 4326), 5) AS centroid
  FROM commune
"""


async def load_inputs(conn: AsyncConnection) -> tuple[tuple[FileMeta, ...], Extent | None]:
    """The current downloads and the region's extent: everything the catalogue depends on besides
    the base URL (two short queries)."""
    files = tuple(
        FileMeta(f["name"], f["media_type"], f["byte_size"], f["sha256"], f["records"], _utc(f["modified"]), _utc(f["issued"]))
        for f in await downloads.current_files(conn)
    )
    row = (await conn.execute(text(EXTENT_SQL))).one()
    extent = Extent(row.bbox, row.centroid) if row.bbox else None
    return files, extent


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    return moment.astimezone(dt.UTC).replace(microsecond=0) if moment is not None else None


def modified(files: tuple[FileMeta, ...]) -> dt.datetime | None:
    return max((f.modified for f in files if f.modified), default=None)


# ---------------------------------------------------------------- the graph


def _texts(g: Graph, subject: URIRef, predicate: URIRef, values: dict) -> None:
    for lang, value in values.items():
        for item in (value if isinstance(value, tuple) else (value,)):
            g.add((subject, predicate, Literal(item, lang=lang)))


def _datetime(moment: dt.datetime) -> Literal:
    return Literal(moment.isoformat().replace("+00:00", "Z"), datatype=XSD.dateTime)


def _concept(g: Graph, uri: str, labels: dict, scheme: str | None = None) -> URIRef:
    node = URIRef(uri)
    g.add((node, RDF.type, SKOS.Concept))
    _texts(g, node, SKOS.prefLabel, labels)
    if scheme:
        g.add((node, SKOS.inScheme, URIRef(scheme)))
    return node


def _document(g: Graph, uri: str) -> URIRef:
    node = URIRef(uri)
    g.add((node, RDF.type, FOAF.Document))
    return node


def _standard(g: Graph, key: str) -> URIRef:
    uri, title = STANDARDS[key]
    node = URIRef(uri)
    g.add((node, RDF.type, DCTERMS.Standard))
    g.add((node, DCTERMS.title, Literal(title, lang="en")))
    return node


def _file_format(name: str) -> Format:
    return FILE_FORMATS[name.rsplit(".", 1)[1]]


class _SortedGraph(Graph):
    """A Graph whose triples come out sorted: rdflib's in-memory store iterates sets, so without this
    the RDF/XML and JSON-LD serialisations would vary with the process' hash seed."""

    def triples(self, triple, *args, **kwargs):  # type: ignore[override]
        yield from sorted(super().triples(triple, *args, **kwargs))


def build_graph(base: str, files: tuple[FileMeta, ...], extent: Extent | None) -> Graph:
    """The catalogue as an rdflib Graph (``base`` without a trailing slash)."""
    g = _SortedGraph()
    for prefix, namespace in PREFIXES.items():
        g.bind(prefix, namespace)
    here = f"{base}/catalog"
    catalog = URIRef(here)

    # shared resources
    publisher = URIRef(f"{here}#publisher")
    g.add((publisher, RDF.type, FOAF.Agent))
    g.add((publisher, RDF.type, FOAF.Organization))
    _texts(g, publisher, FOAF.name, PUBLISHER["name"])
    g.add((publisher, FOAF.homepage, _document(g, PUBLISHER["homepage"])))
    g.add((publisher, DCTERMS.type, _concept(g, PUBLISHER["type"][0], {"en": PUBLISHER["type"][1]})))

    contact = URIRef(f"{here}#contact-point")
    g.add((contact, RDF.type, VCARD.Kind))
    g.add((contact, RDF.type, VCARD.Organization))
    _texts(g, contact, VCARD.fn, PUBLISHER["name"])
    g.add((contact, VCARD.hasURL, URIRef(PUBLISHER["homepage"])))

    licence = URIRef(LICENCE)
    g.add((licence, RDF.type, DCTERMS.LicenseDocument))
    g.add((licence, DCTERMS.type, _concept(g, LICENCE_TYPE[0], {"en": LICENCE_TYPE[1]})))
    g.add((licence, RDFS.seeAlso, URIRef(LICENCE_SEE_ALSO)))

    languages = [URIRef(uri) for uri in LANGUAGES]
    for language in languages:
        g.add((language, RDF.type, DCTERMS.LinguisticSystem))

    spatial = URIRef(SPATIAL)
    g.add((spatial, RDF.type, DCTERMS.Location))
    _texts(g, spatial, SKOS.prefLabel, SPATIAL_LABEL)
    if extent is not None:
        g.add((spatial, DCAT.bbox, Literal(extent.bbox, datatype=GSP.wktLiteral)))
        g.add((spatial, DCAT.centroid, Literal(extent.centroid, datatype=GSP.wktLiteral)))

    scheme = URIRef(THEME_SCHEME)
    g.add((scheme, RDF.type, SKOS.ConceptScheme))
    _texts(g, scheme, DCTERMS.title, {"en": "Data theme", "nl": "Gegevensthema", "fr": "Thème des données"})
    themes = {code: _concept(g, f"{THEME_SCHEME}/{code}", labels, THEME_SCHEME) for code, labels in THEMES.items()}

    frequency = URIRef(FREQUENCY)
    g.add((frequency, RDF.type, DCTERMS.Frequency))
    availability = _concept(g, AVAILABILITY[0], {"en": AVAILABILITY[1]})
    docs = _document(g, f"{base}/docs")

    # the catalogue
    g.add((catalog, RDF.type, DCAT.Catalog))
    _texts(g, catalog, DCTERMS.title, TITLE)
    _texts(g, catalog, DCTERMS.description, DESCRIPTION)
    g.add((catalog, DCTERMS.publisher, publisher))
    g.add((catalog, DCTERMS.license, licence))
    for language in languages:
        g.add((catalog, DCTERMS.language, language))
    g.add((catalog, FOAF.homepage, docs))
    g.add((catalog, DCTERMS.spatial, spatial))
    g.add((catalog, DCAT.themeTaxonomy, scheme))
    issued = min((f.issued for f in files if f.issued), default=None)
    if issued is not None:
        g.add((catalog, DCTERMS.issued, _datetime(issued)))
    last = modified(files)
    if last is not None:
        g.add((catalog, DCTERMS.modified, _datetime(last)))

    # The current files; before the first build, every file without size, checksum or dates.
    by_dataset: dict[str, list[FileMeta]] = {}
    built = {f.name: f for f in files}
    for spec in downloads.FILES:
        by_dataset.setdefault(spec.dataset, [])
        if spec.name in built:
            by_dataset[spec.dataset].append(built[spec.name])
        elif not built:
            by_dataset[spec.dataset].append(FileMeta(spec.name, spec.media_type, -1, "", None, None, None))

    dataset_nodes: dict[str, URIRef] = {}
    for info in DATASETS:
        node = URIRef(f"{here}#dataset/{info.slug}")
        dataset_nodes[info.slug] = node
        g.add((catalog, DCAT.dataset, node))
        g.add((node, RDF.type, DCAT.Dataset))
        g.add((node, DCTERMS.identifier, Literal(str(node))))
        _texts(g, node, DCTERMS.title, info.title)
        _texts(g, node, DCTERMS.description, info.description)
        _texts(g, node, DCAT.keyword, info.keywords)
        for code in info.themes:
            g.add((node, DCAT.theme, themes[code]))
        g.add((node, DCTERMS.publisher, publisher))
        g.add((node, DCAT.contactPoint, contact))
        for language in languages:
            g.add((node, DCTERMS.language, language))
        g.add((node, DCTERMS.spatial, spatial))
        g.add((node, DCTERMS.accrualPeriodicity, frequency))
        g.add((node, DCAT.landingPage, docs))
        members = by_dataset.get(info.slug, [])
        first = min((f.issued for f in members if f.issued), default=None)
        latest = max((f.modified for f in members if f.modified), default=None)
        if first is not None:
            g.add((node, DCTERMS.issued, _datetime(first)))
        if latest is not None:
            g.add((node, DCTERMS.modified, _datetime(latest)))
        for meta in members:
            g.add((node, DCAT.distribution, _distribution(g, here, base, meta, licence, availability, languages)))

    for info in SERVICES:
        node = URIRef(f"{here}#service/{info.slug}")
        g.add((catalog, DCAT.service, node))
        g.add((node, RDF.type, DCAT.DataService))
        _texts(g, node, DCTERMS.title, info.title)
        _texts(g, node, DCTERMS.description, info.description)
        _texts(g, node, DCAT.keyword, info.keywords)
        g.add((node, DCAT.endpointURL, URIRef(f"{base}{info.path}")))
        g.add((node, DCAT.endpointDescription, URIRef(f"{base}{info.description_path}")))
        for slug in info.serves:
            g.add((node, DCAT.servesDataset, dataset_nodes[slug]))
        for key in info.standards:
            g.add((node, DCTERMS.conformsTo, _standard(g, key)))
        g.add((node, DCTERMS.publisher, publisher))
        g.add((node, DCAT.contactPoint, contact))
        g.add((node, DCTERMS.license, licence))
        for code in ("SOCI", "HEAL"):
            g.add((node, DCAT.theme, themes[code]))
        for language in info.languages:
            g.add((node, DCTERMS.language, URIRef(language)))
        g.add((node, DCAT.landingPage, docs))
    return g


def _distribution(g: Graph, here: str, base: str, meta: FileMeta, licence: URIRef, availability: URIRef,
                  languages: list[URIRef]) -> URIRef:
    node = URIRef(f"{here}#distribution/{meta.name}")
    title_nl, title_fr, description_nl, description_fr = DISTRIBUTIONS[meta.name]
    fmt = _file_format(meta.name)
    url = URIRef(f"{base}/downloads/{meta.name}")
    g.add((node, RDF.type, DCAT.Distribution))
    _texts(g, node, DCTERMS.title, {"nl": title_nl, "fr": title_fr})
    _texts(g, node, DCTERMS.description, {"nl": description_nl, "fr": description_fr})
    g.add((node, DCAT.accessURL, url))
    g.add((node, DCAT.downloadURL, url))
    file_type = URIRef(f"{EU}file-type/{fmt.file_type}")
    g.add((file_type, RDF.type, DCTERMS.MediaTypeOrExtent))
    g.add((node, DCTERMS.format, file_type))
    if fmt.iana is not None:
        media_type = URIRef(IANA + fmt.iana)
        g.add((media_type, RDF.type, DCTERMS.MediaType))
        g.add((node, DCAT.mediaType, media_type))
    if fmt.standard is not None:
        g.add((node, DCTERMS.conformsTo, _standard(g, fmt.standard)))
    g.add((node, DCTERMS.license, licence))
    g.add((node, DCATAP.availability, availability))
    for language in languages:
        g.add((node, DCTERMS.language, language))
    if meta.byte_size >= 0:
        g.add((node, DCAT.byteSize, Literal(str(meta.byte_size), datatype=XSD.nonNegativeInteger)))
    if meta.sha256:
        checksum = URIRef(f"{here}#checksum/{meta.name}")
        g.add((node, SPDX.checksum, checksum))
        g.add((checksum, RDF.type, SPDX.Checksum))
        g.add((checksum, SPDX.algorithm, SPDX.checksumAlgorithm_sha256))
        g.add((checksum, SPDX.checksumValue, Literal(meta.sha256, datatype=XSD.hexBinary)))
    if meta.issued is not None:
        g.add((node, DCTERMS.issued, _datetime(meta.issued)))
    if meta.modified is not None:
        g.add((node, DCTERMS.modified, _datetime(meta.modified)))
    return node


JSONLD_CONTEXT = {prefix: str(namespace) for prefix, namespace in PREFIXES.items()}


@lru_cache(maxsize=32)
def render(base: str, files: tuple[FileMeta, ...], extent: Extent | None, fmt: str) -> bytes:
    """The catalogue serialised in ``fmt`` (a key of FORMATS). Cached on its inputs: the same
    inputs give the same bytes in every process."""
    graph = build_graph(base, files, extent)
    rdflib_format = FORMATS[fmt][1]
    if rdflib_format == "json-ld":
        data = graph.serialize(format="json-ld", context=JSONLD_CONTEXT, auto_compact=True)
        return (json.dumps(_sorted_lists(json.loads(data)), indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()
    data = graph.serialize(format=rdflib_format)
    if rdflib_format == "pretty-xml":  # namespace declarations come out in set order
        data = _XMLNS.sub(lambda m: "".join(sorted(m.group(0).splitlines(keepends=True))), data)
    return data.encode("utf-8")


_XMLNS = re.compile(r"(?:^  xmlns:[\w-]+=\"[^\"]*\"\n)+", re.MULTILINE)


def _sorted_lists(value):
    """JSON-LD with every array in a canonical order (node and value order carry no meaning)."""
    if isinstance(value, dict):
        return {k: _sorted_lists(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_sorted_lists(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True, ensure_ascii=False))
    return value
