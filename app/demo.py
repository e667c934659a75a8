"""Deterministic demo-directory generator.

``generate(out_path, count, seed, reference_dir)`` streams ``count`` organisation records as NDJSON; the records have
the shape of the legacy social.brussels REST API (``/rest/organisation/{id}``): exactly the keys of the real record
``organisation-13219.json``, in the same order, followed by the Bruso extension keys :data:`EXTENSION_KEYS`.

* The first record is the real record 13219, unchanged, plus the extension keys (empty lists, ``"published"``).
* Generated records get ids 100000, 100001, … Their names are invented (a bilingual type prefix + a proper name
  from a syllable generator), so no real organisation is named; addresses are real address points of the reference
  layers (OSM 2013 address points and BeST points of Haren), the lookups (categories, accreditations, languages,
  legal statuses, offer types, action zones) are the real 2019 lists.
* Everything random comes from one ``random.Random(seed)``: same seed and count give a byte-identical file, and a
  shorter run is a prefix of a longer one with the same seed.
* Memory stays bounded: the lookups and address points are loaded once (~15 MB, cached per reference directory),
  records are made and written one by one (the tracemalloc peak of 50,000 records is ~2 MB above that).

The reference files are read at run time from ``reference_dir`` (e.g. ``/work/shared/reference``) and never copied.
"""

from __future__ import annotations

import csv
import random
import re
from bisect import bisect
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

import orjson

from .identifiers import BOJ_URL
from .text import fold as _fold

__all__ = [
    "EXTENSION_KEYS",
    "FIRST_GENERATED_ID",
    "LEGACY_RECORD_ID",
    "generate",
    "iter_records",
    "legacy_record",
    "load_reference",
]

LEGACY_RECORD_ID = 13219
LEGACY_RECORD_PATH = "socialbrussels-2019/organisation-13219.json"
FIRST_GENERATED_ID = 100_000
#: Keys appended after the legacy keys, in this order.
EXTENSION_KEYS: tuple[str, ...] = ("agreements", "languagesOffer", "offerTypes", "actionZones", "publicationState")
#: Extension values of the real legacy record (it predates these fields).
LEGACY_EXTENSION_VALUES: dict[str, Any] = {
    "agreements": [],
    "languagesOffer": [],
    "offerTypes": [],
    "actionZones": [],
    "publicationState": "published",
}
REGION_ZONE_ID = 268
# lon/lat box every generated address lies in (the Region with a small margin).
BRUSSELS_LONLAT_BOX = (4.24, 50.76, 4.49, 50.92)

# --------------------------------------------------------------------------------------------------------------------
# Small bilingual pools
# --------------------------------------------------------------------------------------------------------------------

# (French type, Dutch type, slug code, weight, legal status id forced for this type or None)
ORG_TYPES: tuple[tuple[str, str, str, float, int | None], ...] = (
    ("Maison de quartier", "Buurthuis", "mq", 8, None),
    ("Centre de santé mentale", "Centrum voor geestelijke gezondheidszorg", "csm", 5, None),
    ("Service social", "Sociale dienst", "ss", 8, None),
    ("Crèche", "Kinderdagverblijf", "creche", 7, None),
    ("Maison médicale", "Wijkgezondheidscentrum", "mm", 5, None),
    ("Service de médiation de dettes", "Schuldbemiddelingsdienst", "smd", 4, None),
    ("Antenne CPAS", "Antenne OCMW", "cpas", 3, 932),
    ("Maison d'accueil", "Onthaalhuis", "ma", 4, None),
    ("Service d'aide juridique", "Juridische dienst", "saj", 3, None),
    ("Centre de jour", "Dagcentrum", "cdj", 4, None),
    ("Maison de jeunes", "Jeugdhuis", "mj", 5, None),
    ("École de devoirs", "Huiswerkschool", "edd", 4, None),
    ("Centre de planning familial", "Centrum voor gezinsplanning", "cpf", 3, None),
    ("Service d'aide à domicile", "Thuishulpdienst", "sad", 4, None),
    ("Maison de repos", "Woonzorgcentrum", "mr", 4, None),
    ("Restaurant social", "Sociaal restaurant", "resto", 2, None),
    ("Épicerie sociale", "Sociale kruidenierszaak", "epicerie", 2, None),
    ("Agence immobilière sociale", "Sociaal verhuurkantoor", "ais", 2, None),
    ("Mission locale pour l'emploi", "Lokale werkwinkel", "mle", 3, None),
    ("Centre d'alphabétisation", "Alfabetiseringscentrum", "alpha", 3, None),
    ("Espace public numérique", "Openbare computerruimte", "epn", 2, None),
    ("Coordination sociale", "Sociale coördinatie", "coord", 2, None),
    ("Service communal de prévention", "Gemeentelijke preventiedienst", "prev", 2, 931),
)

# Syllables of the invented proper names ("Quelbrecq", "Vandermolk", …).
_ONSETS = (
    "Qu", "Br", "Vr", "Kl", "Z", "Gh", "Fl", "Tr", "M", "V", "L", "D", "S", "Pl", "Gr", "W", "N", "R", "H", "Bl",
    "Vander", "Ker", "Str", "Sn",
)
_VOWELS = ("el", "a", "ou", "ie", "oe", "ei", "au", "u", "i", "e", "o", "aa", "y", "ui")
_CODAS = (
    "brecq", "molk", "ven", "dael", "sart", "mont", "loo", "gem", "ac", "ix", "elle", "ard", "berg", "rode",
    "ieux", "ot", "zeel", "lin", "ster", "vorde", "quet", "rik", "nesse", "hout",
)

ACCESS = (  # (fr, nl, weight)
    ("Sur rendez-vous", "Op afspraak", 5),
    ("Par téléphone", "Telefonisch", 4),
    ("Par e-mail", "Per e-mail", 3),
    ("Sans rendez-vous", "Zonder afspraak", 3),
    ("Via un service partenaire", "Via een partnerdienst", 1),
)
PUBLICS = (  # (fr, nl, weight); "{fr}" / "{nl}" = commune name
    ("Tout public", "Iedereen", 6),
    ("Jeunes de 12 à 25 ans", "Jongeren van 12 tot 25 jaar", 3),
    ("Enfants de 0 à 3 ans et leurs parents", "Kinderen van 0 tot 3 jaar en hun ouders", 2),
    ("Personnes âgées", "Ouderen", 2),
    ("Familles", "Gezinnen", 2),
    ("Personnes sans abri", "Daklozen", 1),
    ("Personnes en situation de handicap", "Personen met een handicap", 1),
    ("Femmes", "Vrouwen", 1),
    ("Primo-arrivants", "Nieuwkomers", 1),
    ("Personnes en difficulté financière", "Personen met financiële moeilijkheden", 2),
    ("Habitants de {fr}", "Inwoners van {nl}", 3),
)
DAYS = (  # (fr, nl, weight)
    ("Du lundi au vendredi", "Van maandag tot vrijdag", 8),
    ("Du lundi au jeudi", "Van maandag tot donderdag", 2),
    ("Le mardi et le jeudi", "Op dinsdag en donderdag", 1),
    ("Le mercredi", "Op woensdag", 1),
    ("Du lundi au samedi", "Van maandag tot zaterdag", 1),
)
OPENING_HOURS = ((8, 0), (8, 30), (9, 0), (9, 0), (9, 30), (10, 0))
CLOSING_HOURS = ((12, 0), (16, 0), (16, 30), (17, 0), (17, 0), (18, 0))
REMARKS = (
    ("Accessible aux personnes à mobilité réduite", "Toegankelijk voor personen met beperkte mobiliteit"),
    ("Fermé pendant les vacances d'été", "Gesloten tijdens de zomervakantie"),
    ("Permanences supplémentaires sur rendez-vous", "Bijkomende permanenties op afspraak"),
    ("Inscription préalable souhaitée", "Voorafgaande inschrijving gewenst"),
)
ADDRESS_REMARKS = (
    ("Entrée à l'arrière du bâtiment", "Ingang achteraan het gebouw"),
    ("2e étage", "2de verdieping"),
    ("Sonner à l'interphone", "Aanbellen via de parlofoon"),
)
PUBLICATIONS = (
    ("Rapport d'activités annuel", "Jaarverslag"),
    ("Lettre d'information trimestrielle", "Driemaandelijkse nieuwsbrief"),
    ("Guide pratique", "Praktische gids"),
)
SUBVENTIONS = (
    ("Commission communautaire française (COCOF)", "Franse Gemeenschapscommissie (COCOF)"),
    ("Commission communautaire commune (COCOM)", "Gemeenschappelijke Gemeenschapscommissie (GGC)"),
    ("Vlaamse Gemeenschapscommissie (VGC)", "Vlaamse Gemeenschapscommissie (VGC)"),
    ("Région de Bruxelles-Capitale", "Brussels Hoofdstedelijk Gewest"),
    ("Fédération Wallonie-Bruxelles", "Federatie Wallonië-Brussel"),
)
OTHER_AGREEMENTS = (
    ("Agréé par la commune", "Erkend door de gemeente"),
    ("Label qualité en cours", "Kwaliteitslabel in aanvraag"),
)
SERVICE_NAMES = (
    ("Permanence sociale", "Sociale permanentie"),
    ("Service d'accueil", "Onthaaldienst"),
    ("Écrivain public", "Openbare schrijver"),
    ("Vestiaire social", "Sociale kledingwinkel"),
    ("Halte-garderie", "Kinderopvang"),
    ("Service insertion socioprofessionnelle", "Dienst socio-professionele inschakeling"),
    ("Atelier informatique", "Computeratelier"),
)
ACTIVITY_TEMPLATES = (  # (fr, nl); {cats} = category titles in that language
    ("Accueil, information et accompagnement : {cats}.", "Onthaal, informatie en begeleiding: {cats}."),
    ("Activités principales : {cats}.", "Voornaamste activiteiten: {cats}."),
    ("Le service propose : {cats}.", "De dienst biedt: {cats}."),
    ("Permanences et suivi individuel dans les domaines suivants : {cats}.",
     "Permanenties en individuele opvolging op de volgende domeinen: {cats}."),
)
ACTIVITY_EXTRAS = (
    ("Orientation vers les services adaptés.", "Doorverwijzing naar gepaste diensten."),
    ("Animations collectives et ateliers.", "Groepsactiviteiten en workshops."),
    ("Travail en réseau avec les acteurs du quartier.", "Netwerking met de actoren uit de wijk."),
)
DESCRIPTION_TEMPLATES = (  # {name}, {commune}, {cat}
    ("{name} est active à {commune} dans le domaine « {cat} ».",
     "{name} is actief in {commune} op het gebied van '{cat}'."),
    ("Service de proximité pour les habitants de {commune} : {cat}.",
     "Buurtdienst voor de inwoners van {commune}: {cat}."),
    ("Projet associatif bruxellois autour du thème « {cat} ».",
     "Brussels verenigingsproject rond het thema '{cat}'."),
)
# Other languages offered (matched on languages.json nameFr, accents and case ignored) with weights.
OTHER_LANGUAGES = (
    ("anglais", 30), ("arabe (maghrébin)", 14), ("arabe (standard moderne)", 8), ("turc", 8), ("espagnol", 8),
    ("portugais", 5), ("italien", 5), ("polonais", 4), ("roumain", 4), ("allemand", 4), ("rifain", 3),
    ("kabyle", 2), ("lingala", 3), ("russe", 3), ("persan", 2), ("dari", 2), ("pashto", 2), ("albanais", 2),
    ("bulgare", 2), ("somali", 1), ("tigrigna", 1), ("langue des signes de Belgique francophone (LSFB)", 1),
    ("Vlaamse Gebarentaal (VGT)", 1),
)
OFFER_TYPE_WEIGHTS = {736: 20, 737: 6, 733: 5, 734: 3, 738: 1, 735: 2}  # Sur place, Téléphonique, À domicile, …
LEGAL_STATUS_WEIGHTS = {922: 60, 932: 4, 931: 5, 920: 4, 923: 2, 924: 1, 938: 2, 925: 2, 929: 2, 928: 2, 936: 2,
                        930: 1, 935: 1, 933: 1, 940: 1, 941: 1, 919: 2, 927: 1}
# Approximate 2019 population by commune (NIS), to spread addresses realistically over the Region.
COMMUNE_POPULATION = {
    "21001": 119_000, "21002": 34_000, "21003": 25_000, "21004": 176_000, "21005": 48_000, "21006": 42_000,
    "21007": 56_000, "21008": 25_000, "21009": 87_000, "21010": 52_000, "21011": 22_000, "21012": 97_000,
    "21013": 50_000, "21014": 27_000, "21015": 133_000, "21016": 83_000, "21017": 25_000, "21018": 56_000,
    "21019": 41_000,
}
HAREN_POPULATION = 5_000

_HOUSE_NUMBER = re.compile(r"\d{1,4}(?: ?(?:bis|ter|[A-Za-z]))?(?:-\d{1,4}[A-Za-z]?)?")
_ACRONYM_STOPWORDS = ("de", "du", "des", "la", "le", "les", "l", "d", "à", "a", "et", "pour", "van", "voor", "het", "en")
# Language-bound keys blanked in monolingual records: (key, True if the empty value is [] else None).
_LANGUAGE_BOUND = (
    ("nameOfficial", False), ("description", False), ("activities", False), ("access", True),
    ("permanency", False), ("public", False), ("publication", True), ("remark", False), ("nameAlternative", True),
    ("nameFormer", True), ("nameService", True), ("otherAgreement", True), ("subvention", True),
)
_FR_TEXT_KEYS = tuple((f"{k}Fr", empty) for k, empty in _LANGUAGE_BOUND)
_NL_TEXT_KEYS = tuple((f"{k}Nl", empty) for k, empty in _LANGUAGE_BOUND)
EMAIL_USERS = ("info", "info", "contact", "accueil", "secretariat")
_POSTCODE = re.compile(r"(?<!\d)(1\d{3})(?!\d)")


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------

def fold(text: str) -> str:
    """Lower case without accents and surrounding spaces (for matching labels)."""
    return _fold(text.strip())


def enterprise_check_digits(first8: int) -> int:
    """Mod-97 check of a Belgian enterprise number: ``97 - first8 % 97`` (01..97)."""
    return 97 - first8 % 97


def format_enterprise_number(first8: int) -> str:
    """``2123479`` → ``'0212.347.945'``."""
    digits = f"{first8:08d}{enterprise_check_digits(first8):02d}"
    return f"{digits[:4]}.{digits[4:7]}.{digits[7:]}"


class _Weighted:
    """Weighted choice with precomputed cumulative weights (same arithmetic as ``random.choices``)."""

    __slots__ = ("items", "cum", "total", "hi", "n_positive")

    def __init__(self, items: Sequence[Any], weights: Sequence[float]):
        if not items or len(items) != len(weights):
            raise ValueError("weighted pool needs as many (≥1) weights as items")
        self.items = list(items)
        self.cum: list[float] = []
        acc = 0.0
        for w in weights:
            acc += float(w)
            self.cum.append(acc)
        self.total = acc
        self.hi = len(self.items) - 1
        self.n_positive = sum(1 for w in weights if w > 0)
        if not self.n_positive:
            raise ValueError("weighted pool needs a positive weight")

    def pick(self, rnd) -> Any:  # rnd = Random.random (bound method)
        return self.items[bisect(self.cum, rnd() * self.total, 0, self.hi)]

    def pick_distinct(self, rnd, k: int) -> list[Any]:
        k = min(k, self.n_positive)
        out: list[Any] = []
        while len(out) < k:
            item = self.items[bisect(self.cum, rnd() * self.total, 0, self.hi)]
            if item not in out:  # identity/equality on small lists, no set order involved
                out.append(item)
        return out


def _read_json(path: Path) -> Any:
    with path.open("rb") as fh:
        return orjson.loads(fh.read())


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _label(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _dmy(d: date) -> str:
    return f"{d.day:02d}/{d.month:02d}/{d.year % 100:02d}"


def _date_strings(start: date, end: date) -> list[str]:
    return [_dmy(date.fromordinal(o)) for o in range(start.toordinal(), end.toordinal() + 1)]


# --------------------------------------------------------------------------------------------------------------------
# Reference data (loaded once per reference directory)
# --------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Point:
    """One usable address point, with everything the record needs precomputed."""

    address: dict[str, Any]          # address object template (legacy key order), copied per record
    commune_fr: str                  # display names for sentences
    commune_nl: str
    commune_zone: dict | None        # {"id","labelFr","labelNl"} of the commune, if in zones.json
    sub_zone: dict | None            # e.g. "Bruxelles - Haren" for 1130, "Bruxelles - Laeken" for 1020
    quartier_zone: dict | None       # action zone named like the quartier (e.g. "Reyers"), if any
    box: str | None                  # official box number (BeST), if any


@dataclass(frozen=True)
class Reference:
    legacy: dict[str, Any]
    legacy_keys: tuple[str, ...]
    address_keys: tuple[str, ...]
    list_keys: frozenset[str]        # legacy keys whose value is a list (default [] instead of None)
    categories: _Weighted            # of (id, titleFr, titleNl)
    accreditations: list[tuple]      # (id, labelFr, labelNl, agreementPowerId)
    legal_statuses: _Weighted        # of (id, labelFr, labelNl)
    legal_status_by_id: dict[int, tuple]
    languages: dict[str, tuple]      # folded nameFr → (id, nameFr, nameNl)
    other_languages: _Weighted       # of (id, nameFr, nameNl)
    offer_types: _Weighted           # of (id, labelFr, labelNl)
    region_zone: dict | None
    points: _Weighted                # of list[_Point] (one list per commune / Haren)
    reserved_enterprise_numbers: tuple[int, ...]  # first-8-digit values of real numbers, never generated


def _zone_obj(z: dict) -> dict:
    return {"id": z["id"], "labelFr": _label(z["labelFr"]), "labelNl": _label(z["labelNl"])}


@lru_cache(maxsize=4)
def _load_reference_cached(reference_dir: str) -> Reference:
    ref = Path(reference_dir)
    sb = ref / "socialbrussels-2019"
    geo = ref / "geo"

    legacy = _read_json(ref / LEGACY_RECORD_PATH)
    legacy_keys = tuple(legacy)
    address_keys = tuple(legacy.get("address") or ())
    list_keys = frozenset(k for k, v in legacy.items() if isinstance(v, list))

    cats = _read_json(sb / "categories.json")
    categories = _Weighted(
        [(c["id"], _label(c["titleFr"]), _label(c["titleNl"])) for c in cats],
        [(c.get("organisationsCount") or 0) + 1 for c in cats],
    )
    accreditations = [
        (a["id"], _label(a["labelFr"]), _label(a["labelNl"]), a.get("agreementPowerId"))
        for a in _read_json(sb / "accreditations.json")
    ]
    statuses = [(s["id"], _label(s["labelFr"]), _label(s["labelNl"])) for s in _read_json(sb / "legal-status.json")]
    legal_statuses = _Weighted(statuses, [LEGAL_STATUS_WEIGHTS.get(s[0], 0.5) for s in statuses])
    legal_status_by_id = {s[0]: s for s in statuses}

    languages: dict[str, tuple] = {}
    for lang in _read_json(sb / "languages.json"):
        languages.setdefault(fold(lang["nameFr"]), (lang["id"], _label(lang["nameFr"]), _label(lang["nameNl"])))
    others = [(languages[fold(n)], w) for n, w in OTHER_LANGUAGES if fold(n) in languages]
    if not others:  # any language but French/Dutch
        others = [(v, 1) for k, v in languages.items() if k not in ("francais", "neerlandais")]
    other_languages = _Weighted([o[0] for o in others], [o[1] for o in others])

    types = _read_json(sb / "service-types.json")
    offer_types = _Weighted(
        [(t["id"], _label(t["labelFr"]), _label(t["labelNl"])) for t in types],
        [OFFER_TYPE_WEIGHTS.get(t["id"], 1) for t in types],
    )

    zones = _read_json(sb / "zones.json")
    zones_by_label: dict[str, dict] = {}
    for z in zones:
        zones_by_label.setdefault(fold(z["labelFr"]), _zone_obj(z))
    region_zone = next((_zone_obj(z) for z in zones if z["id"] == REGION_ZONE_ID), None)

    # Communes (NIS → French/Dutch names) and postcodes from postcodes.csv.
    communes: dict[str, tuple[str, str]] = {}
    postcodes: dict[str, dict[str, str]] = {}
    for row in _read_csv(geo / "postcodes.csv"):
        nis = [s.strip() for s in (row.get("municipality_nis") or "").split("|")]
        fr = [s.strip() for s in (row.get("municipality_fr") or "").split("|")]
        nl = [s.strip() for s in (row.get("municipality_nl") or "").split("|")]
        if row.get("kind") == "geographic" and all(nis):
            postcodes[row["postcode"].strip()] = row
        for code, name_fr, name_nl in zip(nis, fr, nl):
            if code and name_fr and name_nl:
                communes.setdefault(code, (name_fr, name_nl))
    sectors = {r["cd_sector"]: r for r in _read_csv(geo / "statistical_sectors_names.csv")}
    quartiers = {r["mdrc"].strip(): r for r in _read_csv(geo / "quartiers_names.csv")}

    def sub_zone_for(postcode: str) -> dict | None:
        # "Bruxelles (Laeken)" → zone "Bruxelles - Laeken"
        m = re.fullmatch(r"(.+?) \((.+)\)", (postcodes.get(postcode) or {}).get("postname_fr", ""))
        return zones_by_label.get(fold(f"{m.group(1)} - {m.group(2)}")) if m else None

    lon_min, lat_min, lon_max, lat_max = BRUSSELS_LONLAT_BOX

    def make_point(*, nis: str, postcode: str, street_fr: str, street_nl: str, number: str, lon: str, lat: str,
                   x: str, y: str, cd_sector: str | None, mdrc: str | None, box: str | None) -> _Point | None:
        if not (street_fr and street_nl and lon and lat and postcode and x and y):
            return None
        m = _POSTCODE.search(postcode)
        pc = m.group(1) if m else None
        if pc not in postcodes or nis not in postcodes[pc]["municipality_nis"].split("|") or nis not in communes:
            return None
        number = re.sub(r"\s*[-;\\]\s*", "-", number.strip())
        if not _HOUSE_NUMBER.fullmatch(number):
            return None
        lon_f, lat_f = float(lon), float(lat)
        if not (lon_min <= lon_f <= lon_max and lat_min <= lat_f <= lat_max):
            return None
        name_fr, name_nl = communes[nis]
        up_fr, up_nl = name_fr.upper(), name_nl.upper()
        sector = sectors.get(cd_sector) if cd_sector else None
        quartier = quartiers.get(mdrc) if mdrc else None
        values = {
            "id": None,
            "x": round(float(x)),
            "y": round(float(y)),
            "lon": lon_f,
            "lat": lat_f,
            "municipalityFr": up_fr,
            "municipalityNl": up_nl,
            "streetFr": street_fr.strip(),
            "streetNl": street_nl.strip(),
            "number": number,
            "numberBuilding": None,
            "zipCode": int(pc),
            "postalBox": None,
            "postalCodeFr": f"{pc} {up_fr}",
            "postalCodeNl": f"{pc} {up_nl}",
            "districtFr": quartier["name_fr_official_upper"] if quartier else None,
            "districtNl": quartier["name_nl_official_upper"] if quartier else None,
            "districtCode": mdrc if quartier else None,
            "statisticsCode": cd_sector if sector else None,
            "remarkFr": None,
            "remarkNl": None,
            "statisticsNameFr": (sector["name_fr_statbel"] or sector["name_fr_display"].upper() or None) if sector else None,
            "statisticsNameNl": (sector["name_nl_statbel"] or sector["name_nl_display"].upper() or None) if sector else None,
        }
        address = {k: values.get(k) for k in address_keys}
        q_zone = zones_by_label.get(fold(quartier["name_fr_display"])) if quartier else None
        return _Point(address, name_fr, name_nl, zones_by_label.get(fold(name_fr)), sub_zone_for(pc), q_zone, box)

    groups: dict[str, list[_Point]] = {}
    for r in _read_csv(geo / "addresses_osm2013.csv"):
        p = make_point(nis=r["nis_municipality"].strip(), postcode=r["postcode"], street_fr=r["street_fr"],
                       street_nl=r["street_nl"], number=r["housenumber"], lon=r["lon"], lat=r["lat"],
                       x=r["x_31370"], y=r["y_31370"], cd_sector=r["cd_sector"].strip() or None,
                       mdrc=r["mdrc"].strip() or None, box=None)
        if p:
            groups.setdefault(r["nis_municipality"].strip(), []).append(p)
    for r in _read_csv(geo / "addresses_best_haren.csv"):
        box = (r.get("box_number") or "").strip().lower().lstrip("b").lstrip("0") or None
        p = make_point(nis=(r["pip_municipality_nis"] or r["municipality_nis"]).strip(), postcode=r["postcode"],
                       street_fr=r["streetname_fr"], street_nl=r["streetname_nl"], number=r["house_number"],
                       lon=r["lon"], lat=r["lat"], x=r["x_31370"], y=r["y_31370"], cd_sector=None,
                       mdrc=r["pip_mdrc"].strip() or None, box=box)
        if p:
            groups.setdefault("haren", []).append(p)
    if not groups:
        raise ValueError(f"no usable address point under {geo}")
    keys = sorted(groups)  # deterministic order
    points = _Weighted(
        [groups[k] for k in keys],
        [HAREN_POPULATION if k == "haren" else COMMUNE_POPULATION.get(k, 20_000) for k in keys],
    )

    reserved = []
    for number in legacy.get("pmRp") or []:
        digits = re.sub(r"\D", "", str(number))
        if len(digits) == 10:
            reserved.append(int(digits[:8]))

    return Reference(
        legacy=legacy, legacy_keys=legacy_keys, address_keys=address_keys, list_keys=list_keys,
        categories=categories, accreditations=accreditations, legal_statuses=legal_statuses,
        legal_status_by_id=legal_status_by_id, languages=languages, other_languages=other_languages,
        offer_types=offer_types, region_zone=region_zone, points=points,
        reserved_enterprise_numbers=tuple(reserved),
    )


def load_reference(reference_dir: Path | str) -> Reference:
    """The lookups and address points of ``reference_dir`` (loaded once per directory and process)."""
    return _load_reference_cached(str(Path(reference_dir).resolve()))


def legacy_record(reference_dir: Path | str) -> dict[str, Any]:
    """The real record 13219 with the extension keys appended (a fresh copy)."""
    legacy = load_reference(reference_dir).legacy
    record = orjson.loads(orjson.dumps(legacy))  # deep copy, same key order
    for key in EXTENSION_KEYS:
        if key not in record:
            value = LEGACY_EXTENSION_VALUES[key]
            record[key] = list(value) if isinstance(value, list) else value
    return record


# --------------------------------------------------------------------------------------------------------------------
# Record generator
# --------------------------------------------------------------------------------------------------------------------

class _Generator:
    def __init__(self, ref: Reference, seed: int):
        self.ref = ref
        self.rng = random.Random(seed)
        self.rnd = self.rng.random
        self._init_enterprise()
        self.types = _Weighted(ORG_TYPES, [t[3] for t in ORG_TYPES])
        self.access = _Weighted(ACCESS, [a[2] for a in ACCESS])
        self.publics = _Weighted(PUBLICS, [p[2] for p in PUBLICS])
        self.days = _Weighted(DAYS, [d[2] for d in DAYS])
        self.last_updates = _date_strings(date(2017, 1, 1), date(2024, 12, 31))
        self.start_dates = _date_strings(date(2000, 1, 1), date(2016, 12, 31))
        self.fr = ref.languages.get("francais")
        self.nl = ref.languages.get("neerlandais")
        self.n_accreditations = len(ref.accreditations)
        # Fast path when the reference record has exactly the keys the record literal is written with; probed with
        # a throw-away RNG so the seeded sequence is untouched.
        self.same_keys = True
        self.rnd = random.Random(0).random
        self.same_keys = tuple(self.record(FIRST_GENERATED_ID)) == ref.legacy_keys + EXTENSION_KEYS
        self.rnd = self.rng.random

    def _init_enterprise(self) -> None:
        rnd = self.rnd
        # Bijective id → enterprise number: first8 = 2,000,000 + (k·A + B) mod 8,000,000, so generated numbers
        # are unique within a file (A coprime with 8,000,000 = 2^9·5^6).
        self.ent_a = (int(rnd() * 3_999_999) * 2 + 1)
        while self.ent_a % 5 == 0:
            self.ent_a += 2
        self.ent_b = int(rnd() * 8_000_000)

    # -- small random helpers -------------------------------------------------------------------------------------
    def _pick(self, seq: Sequence[Any]) -> Any:
        return seq[int(self.rnd() * len(seq))]

    def _proper_name(self) -> str:
        p = self._pick
        name = p(_ONSETS) + p(_VOWELS) + p(_CODAS)
        if self.rnd() < 0.2:
            name += "-" + p(_ONSETS).replace("Vander", "Vand") + p(_VOWELS) + p(_CODAS)
        return name

    def _phone(self) -> str:
        rnd = self.rnd
        if rnd() < 0.15:  # mobile 04xx/xx.xx.xx (0470–0499)
            d = str(70_000_000 + int(rnd() * 30_000_000))
            return f"04{d[:2]}/{d[2:4]}.{d[4:6]}.{d[6:]}"
        d = str(2_000_000 + int(rnd() * 6_000_000))  # Brussels 02/2xx.xx.xx – 02/7xx.xx.xx
        return f"02/{d[:3]}.{d[3:5]}.{d[5:]}"

    @staticmethod
    def _acronym(name: str) -> str:
        words = [w for w in re.split(r"[\s'’-]+", name) if w and w.lower() not in _ACRONYM_STOPWORDS]
        acro = "".join(w[0] for w in words).upper()
        return acro if len(acro) >= 2 else name[:4].upper()

    def _enterprise_number(self, org_id: int) -> str | None:
        first8 = 2_000_000 + ((org_id - FIRST_GENERATED_ID) * self.ent_a + self.ent_b) % 8_000_000
        if first8 in self.ref.reserved_enterprise_numbers:
            return None
        return format_enterprise_number(first8)

    # -- the record -----------------------------------------------------------------------------------------------
    # The record is built by several short methods rather than one long one: besides readability, tracemalloc
    # resolves the line number of every allocation by scanning the code object's line table, which made one
    # 250-line method ~10x slower to trace than short ones.

    def record(self, org_id: int) -> dict[str, Any]:
        rnd = self.rnd
        # Language status: ~75 % FR-NL, ~17 % FR, ~8 % NL.
        r = rnd()
        lang = "FR-NL" if r < 0.75 else ("FR" if r < 0.92 else "NL")

        org_type = self.types.pick(rnd)
        proper = self._proper_name()
        names = self._names(org_type, proper)
        cats = self.ref.categories.pick_distinct(rnd, self._n_categories())
        point, address = self._address()
        texts = self._texts(cats, point, names[0], names[1])
        contacts = self._contacts(org_id, org_type[2], proper, lang == "FR-NL")
        last_updates = self.last_updates

        values: dict[str, Any] = {
            "id": org_id,
            "legalStatus": self._legal_status(org_type[4]),
            "isInterpreting": rnd() < 0.08,
            "address": address,
            "categories": None,
            "categoriesObject": [{"id": c[0], "titleFr": c[1], "titleNl": c[2]} for c in cats],
            "sectorsObjects": None,
            "nameOfficialFr": names[2],
            "nameOfficialNl": names[3],
            **texts,
            "pmRp": contacts[0],
            "langStatus": lang,
            "lastUpdate": last_updates[int(rnd() * len(last_updates))],
            "startDate": self._pick(self.start_dates) if rnd() < 0.15 else None,
            "type": None,
            "nameAlternativeFr": names[4],
            "nameAlternativeNl": names[5],
            "nameFormerFr": names[6],
            "nameFormerNl": names[7],
            "nameServiceFr": names[8],
            "nameServiceNl": names[9],
            **contacts[1],
            **self._lists(),
        }
        if lang != "FR-NL":  # monolingual: the other language's names and texts are empty
            for key, empty in (_NL_TEXT_KEYS if lang == "FR" else _FR_TEXT_KEYS):
                values[key] = [] if empty else None
            if lang == "FR" and address.get("remarkNl"):
                address["remarkNl"] = None
            elif lang == "NL" and address.get("remarkFr"):
                address["remarkFr"] = None
        if self.same_keys:  # the usual case: the literal above is already in legacy order
            record = values
        else:
            list_keys = self.ref.list_keys
            record = {k: values[k] if k in values else ([] if k in list_keys else None) for k in self.ref.legacy_keys}
        self._extensions(record, lang, point)
        return record

    def _n_categories(self) -> int:
        r = self.rnd()  # 1–4, mostly 1–2
        return 1 if r < 0.5 else 2 if r < 0.8 else 3 if r < 0.93 else 4

    def _names(self, org_type: tuple, proper: str) -> tuple:
        """(full_fr, full_nl, official_fr, official_nl, alt_fr, alt_nl, former_fr, former_nl, service_fr, service_nl);
        the official names of both languages (the monolingual blanking happens in ``record``)."""
        rnd = self.rnd
        full_fr, full_nl = f"{org_type[0]} {proper}", f"{org_type[1]} {proper}"
        if rnd() < 0.85:  # mostly upper case, like the legacy records
            official_fr, official_nl = full_fr.upper(), full_nl.upper()
        else:
            official_fr, official_nl = full_fr, full_nl
        alt_fr: list[str] = []
        alt_nl: list[str] = []
        if rnd() < 0.2:
            alt_fr = [self._acronym(full_fr)]
            alt_nl = list(alt_fr) if rnd() < 0.4 else [self._acronym(full_nl)]
        former_fr: list[str] = []
        former_nl: list[str] = []
        if rnd() < 0.05:
            old_type = self.types.pick(rnd)
            old = self._proper_name()
            former_fr, former_nl = [f"{old_type[0]} {old}".upper()], [f"{old_type[1]} {old}".upper()]
        service_fr: list[str] = []
        service_nl: list[str] = []
        if rnd() < 0.1:
            s_fr, s_nl = self._pick(SERVICE_NAMES)
            service_fr, service_nl = [s_fr], [s_nl]
        return full_fr, full_nl, official_fr, official_nl, alt_fr, alt_nl, former_fr, former_nl, service_fr, service_nl

    def _address(self) -> tuple[_Point, dict[str, Any]]:
        rnd = self.rnd
        group = self.ref.points.pick(rnd)
        point: _Point = group[int(rnd() * len(group))]
        address = dict(point.address)
        if point.box is not None:
            address["postalBox"] = point.box
        elif rnd() < 0.1:
            address["postalBox"] = str(1 + int(rnd() * 12))
        if rnd() < 0.03:
            address["numberBuilding"] = self._pick(("A", "B", "C", "Bloc 2"))
        if rnd() < 0.05:
            address["remarkFr"], address["remarkNl"] = self._pick(ADDRESS_REMARKS)
        return point, address

    def _texts(self, cats: list[tuple], point: _Point, full_fr: str, full_nl: str) -> dict[str, Any]:
        """description … remark (legacy order), both languages."""
        rnd, pick = self.rnd, self._pick
        act_fr, act_nl = self._activities(cats)
        desc_fr = desc_nl = None
        if rnd() >= 0.3:
            d_fr, d_nl = DESCRIPTION_TEMPLATES[int(rnd() * len(DESCRIPTION_TEMPLATES))]
            desc_fr = d_fr.format(name=full_fr, commune=point.commune_fr, cat=cats[0][1])
            desc_nl = d_nl.format(name=full_nl, commune=point.commune_nl, cat=cats[0][2])
        access: list[tuple] = []
        if rnd() < 0.9:
            access = self.access.pick_distinct(rnd, 1 if rnd() < 0.6 else 2)
        perm_fr = perm_nl = None
        if rnd() < 0.85:
            perm_fr, perm_nl = self._permanency()
        public_fr = public_nl = None
        if rnd() < 0.85:
            p_fr, p_nl, _ = self.publics.pick(rnd)
            public_fr, public_nl = p_fr.format(fr=point.commune_fr), p_nl.format(nl=point.commune_nl)
        pub_fr: list[str] = []
        pub_nl: list[str] = []
        if rnd() < 0.05:
            p_fr, p_nl = pick(PUBLICATIONS)
            pub_fr, pub_nl = [p_fr], [p_nl]
        remark_fr = remark_nl = None
        if rnd() < 0.1:
            remark_fr, remark_nl = pick(REMARKS)
        return {
            "descriptionFr": desc_fr,
            "descriptionNl": desc_nl,
            "activitiesFr": act_fr,
            "activitiesNl": act_nl,
            "accessFr": [a[0] for a in access],
            "accessNl": [a[1] for a in access],
            "permanencyFr": perm_fr,
            "permanencyNl": perm_nl,
            "publicFr": public_fr,
            "publicNl": public_nl,
            "publicationFr": pub_fr,
            "publicationNl": pub_nl,
            "remarkFr": remark_fr,
            "remarkNl": remark_nl,
        }

    def _activities(self, cats: list[tuple]) -> tuple[str, str]:
        rnd = self.rnd
        tpl_fr, tpl_nl = ACTIVITY_TEMPLATES[int(rnd() * len(ACTIVITY_TEMPLATES))]
        if len(cats) == 1:
            act_fr, act_nl = tpl_fr.format(cats=cats[0][1]), tpl_nl.format(cats=cats[0][2])
        else:
            act_fr = tpl_fr.format(cats=", ".join([c[1] for c in cats]))
            act_nl = tpl_nl.format(cats=", ".join([c[2] for c in cats]))
        if rnd() < 0.4:
            ex_fr, ex_nl = self._pick(ACTIVITY_EXTRAS)
            act_fr, act_nl = f"{act_fr} {ex_fr}", f"{act_nl} {ex_nl}"
        return act_fr, act_nl

    def _permanency(self) -> tuple[str, str]:
        rnd = self.rnd
        day_fr, day_nl, _ = self.days.pick(rnd)
        oh, om = OPENING_HOURS[int(rnd() * len(OPENING_HOURS))]
        ch, cm = CLOSING_HOURS[int(rnd() * len(CLOSING_HOURS))]
        o_fr, c_fr = f"{oh}h{om:02d}" if om else f"{oh}h", f"{ch}h{cm:02d}" if cm else f"{ch}h"
        o_nl, c_nl = f"{oh}.{om:02d}" if om else f"{oh}", f"{ch}.{cm:02d}" if cm else f"{ch}"
        return f"{day_fr} de {o_fr} à {c_fr}", f"{day_nl} van {o_nl} tot {c_nl} uur"

    def _contacts(self, org_id: int, type_code: str, proper: str, bilingual: bool) -> tuple[list[str], dict]:
        """(pmRp, {telFr … websiteInfoNl} in legacy order)."""
        rnd = self.rnd
        r = rnd()
        n_tel = 0 if r < 0.08 else 1 if r < 0.85 else 2 if r < 0.97 else 3
        tels = [self._phone() for _ in range(n_tel)]
        faxes = []
        if rnd() < 0.06:
            d = str(2_000_000 + int(rnd() * 6_000_000))
            faxes = [f"02/{d[:3]}.{d[3:5]}.{d[5:]}"]
        online = self._online(type_code, proper, bilingual)
        pm: list[str] = []
        if rnd() < 0.7:
            number = self._enterprise_number(org_id)
            if number:
                pm = [number]
        digits = [n.replace(".", "") for n in pm]
        return pm, {
            "telFr": tels,
            "telNl": list(tels),
            "emailFr": online[0],
            "emailNl": online[1],
            "faxFr": faxes,
            "faxNl": list(faxes),
            "websiteOfficialFr": online[2],
            "websiteOfficialNl": online[3],
            "websiteUnofficialFr": online[4],
            "websiteUnofficialNl": list(online[4]),
            "websiteBelgianOfficialJournalFr": [BOJ_URL.format(lang="fr", digits=d) for d in digits],
            "websiteBelgianOfficialJournalNl": [BOJ_URL.format(lang="nl", digits=d) for d in digits],
            "websiteInfoFr": online[5],
            "websiteInfoNl": list(online[5]),
        }

    def _online(self, type_code: str, proper: str, bilingual: bool) -> tuple[list[str], ...]:
        """(emailFr, emailNl, websiteOfficialFr, websiteOfficialNl, websiteUnofficial, websiteInfo)."""
        rnd = self.rnd
        slug = proper.lower()  # invented names are ASCII letters and hyphens
        domain = f"{slug}.be" if rnd() < 0.6 else f"{type_code}-{slug}.be"
        emails: list[str] = []
        if rnd() >= 0.1:
            emails = [f"{EMAIL_USERS[int(rnd() * len(EMAIL_USERS))]}@{domain}"]
            if rnd() < 0.08:
                emails.append(f"{self._pick(('direction', 'social', 'admin'))}@{domain}")
        emails_nl = emails
        web = [f"https://www.{domain}"] if rnd() < 0.7 else []
        web_nl = web
        if bilingual and rnd() < 0.05:  # a few language-specific addresses
            if web:
                web, web_nl = [f"{web[0]}/fr"], [f"{web[0]}/nl"]
            if emails:
                emails_nl = [f"nl.{emails[0]}"] + emails[1:]
        web_unofficial = [f"https://www.facebook.com/{slug.replace('-', '')}"] if rnd() < 0.06 else []
        web_info = [f"https://www.{domain}/infos"] if rnd() < 0.03 else []
        return emails, list(emails_nl), web, list(web_nl), web_unofficial, web_info

    def _lists(self) -> dict[str, list[str]]:
        rnd = self.rnd
        oth_fr: list[str] = []
        oth_nl: list[str] = []
        if rnd() < 0.03:
            o_fr, o_nl = self._pick(OTHER_AGREEMENTS)
            oth_fr, oth_nl = [o_fr], [o_nl]
        sub_fr: list[str] = []
        sub_nl: list[str] = []
        if rnd() < 0.12:
            s_fr, s_nl = self._pick(SUBVENTIONS)
            sub_fr, sub_nl = [s_fr], [s_nl]
        return {"otherAgreementFr": oth_fr, "otherAgreementNl": oth_nl, "subventionFr": sub_fr, "subventionNl": sub_nl}

    def _legal_status(self, forced: int | None) -> dict | None:
        rnd = self.rnd
        if rnd() < 0.05:  # unknown
            return None
        s = self.ref.legal_status_by_id.get(forced) if forced else None
        s = s or self.ref.legal_statuses.pick(rnd)
        return {"id": s[0], "labelFr": s[1], "labelNl": s[2]}

    def _extensions(self, record: dict[str, Any], lang: str, point: _Point) -> None:
        rnd = self.rnd
        record["agreements"] = self._agreements()
        record["languagesOffer"] = self._languages(lang)
        record["offerTypes"] = [
            {"id": t[0], "labelFr": t[1], "labelNl": t[2]}
            for t in self.ref.offer_types.pick_distinct(rnd, 1 if rnd() < 0.7 else 2)
        ]
        record["actionZones"] = self._zones(point)
        r = rnd()
        record["publicationState"] = "published" if r < 0.95 else ("unpublished" if r < 0.99 else "archived")

    def _agreements(self) -> list[dict]:
        ref, rnd = self.ref, self.rnd
        agreements = []
        if rnd() < 0.35:
            n = min(1 if rnd() < 0.75 else 2, self.n_accreditations)
            picked: list[int] = []
            while len(picked) < n:
                j = int(rnd() * self.n_accreditations)
                if j not in picked:
                    picked.append(j)
            for j in picked:
                a = ref.accreditations[j]
                agreements.append({"id": a[0], "labelFr": a[1], "labelNl": a[2], "agreementPowerId": a[3]})
        return agreements

    def _languages(self, lang: str) -> list[dict]:
        rnd = self.rnd
        langs = []
        if lang != "NL" and self.fr:
            langs.append(self.fr)
        if lang != "FR" and self.nl:
            langs.append(self.nl)
        if rnd() < 0.3:
            r = rnd()
            for extra in self.ref.other_languages.pick_distinct(rnd, 1 if r < 0.6 else 2 if r < 0.9 else 3):
                if extra not in langs:
                    langs.append(extra)
        return [{"id": x[0], "nameFr": x[1], "nameNl": x[2]} for x in langs]

    def _zones(self, point: _Point) -> list[dict]:
        ref, rnd = self.ref, self.rnd
        zones: list[dict] = []
        if rnd() < 0.12 or point.commune_zone is None:
            first = ref.region_zone
        elif point.sub_zone is not None and rnd() < 0.5:
            first = point.sub_zone
        else:
            first = point.commune_zone
        if first is not None:
            zones.append(dict(first))
        if rnd() < 0.3:
            for candidate in (point.quartier_zone, ref.region_zone, point.commune_zone):
                if candidate is not None and all(z["id"] != candidate["id"] for z in zones):
                    zones.append(dict(candidate))
                    break
        return zones


def iter_records(count: int, seed: int, reference_dir: Path | str) -> Iterator[dict[str, Any]]:
    """Yield ``count`` records: the real record 13219 first, then generated ones with ids 100000, 100001, …

    Records are fresh dicts (no shared nested objects), so a consumer may modify them.
    """
    if count <= 0:
        return
    ref = load_reference(reference_dir)
    yield legacy_record(reference_dir)
    gen = _Generator(ref, seed)
    for org_id in range(FIRST_GENERATED_ID, FIRST_GENERATED_ID + count - 1):
        yield gen.record(org_id)


def generate(out_path: Path | str, count: int, seed: int, reference_dir: Path | str) -> int:
    """Write ``count`` records as NDJSON (UTF-8, one object a line) to ``out_path``; return the number written."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    with out_path.open("wb", buffering=1 << 20) as fh:
        write = fh.write
        for record in iter_records(count, seed, reference_dir):
            write(dumps(record, option=option))
            written += 1
    return written
