"""A local twin of the URBIS Localize REST service, answering from the reference layers in PostGIS.

Same paths, parameters and answer shapes as the regional service (see the field notes)::

    GET {base}/Rest/Localize/getaddresses?language=fr&address=Rue+de+Namur+59+1000+Bruxelles&spatialReference=31370
    GET {base}/Rest/Localize/getaddressesfields?json={"language":"fr","address":{"street":{"name":"…","postcode":"1000"},"number":"59"},"spatialReference":"31370"}
    GET {base}/Rest/Localize/getaddressfromxy?json={"language":"fr","point":{"x":4.36,"y":50.84},"spatialReference":4326}

(also under ``/localization/Rest/Localize/…``, the path of the regional service, and as POST with a
form field). Forward answers are ``{"result": [candidates, best first], "error": false, "status":
"success", "version": "2.0.2"}``; the reverse answer's ``result`` is one object (as clients of the
regional service read it: geocoder-php's UrbIS provider, CIRB's own pages) or ``[]``. Bad input gives ``{"result": [], "error": true, "status": "error",
"message": …}`` with HTTP 200; a database failure gives HTTP 503 (a client should retry).

How an address is found
- Street names: an in-memory gazetteer of the ``street`` table (official BeST names per postcode,
  both languages), matched by trigram similarity on folded names — the pg_trgm measure,
  re-implemented in Python because the table has no trigram index (a sequential pg_trgm scan of
  the 5,195 streets costs 50 ms; this, with an inverted trigram index, well under 1 ms). The similarity blends the whole name and its distinctive words (without
  street types and articles), so "Rue de la Xyzzy" does not match "Rue de la Paix". Street-type
  abbreviations (av., bd, chée, str., stwg…) are expanded; names match in either language and come
  back in the requested one.
- House numbers: the ``address_point`` table (exact), else interpolated between the nearest lower
  and higher numbers of the same parity along the ``street_line`` (keeping their side of the
  street), else the nearest number, else the street itself (its representative point). Each step
  costs score and is said in ``qualificationText.policeNumber``: Found, Interpolated, Approximated,
  Not found, Not given.
- Reverse: the nearest address point with a street name within 100 m, else the nearest named street
  line within 250 m.

Speed (an import asks every address twice, once per language): the gazetteer also holds the
address points and named street lines, indexed by street name, so a forward answer reads no
database; each street's points and lines are gathered once, and where an address lies (the part
of an answer that does not depend on the language) is remembered, so the second language costs
only its rendering. The Localize paths are answered straight from the ASGI call (``UrbisTwinApp``),
and ``serve`` writes no access log. Everything is reloaded with the gazetteer (``gazetteer_ttl_s``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

import orjson
import shapely
from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..text import fold
from .crs import LAMBERT72, WGS84, in_brussels_bbox_l72, to_lambert72, to_wgs84

log = logging.getLogger(__name__)

VERSION = "2.0.2"
SPATIAL_REFERENCES = (LAMBERT72, WGS84)
LANGUAGES = ("fr", "nl")
MAX_RESULTS = 5
MIN_SIMILARITY = 0.35           # street candidates below this are not addresses
CANDIDATE_WINDOW = 0.1          # candidates within this of the best rank are answered too
REVERSE_ADDRESS_RADIUS_M = 100.0
REVERSE_STREET_RADIUS_M = 250.0
LINE_SNAP_M = 60.0              # address points farther than this from a line do not interpolate along it
STREET_LINE_RADIUS_M = 3000.0   # address points / lines of the same name farther than this from the street's
                                # representative point belong to another street

# qualificationText value → qualificationCode value (the local twin's codes)
QUALIFICATION_CODES = {"Found": 0, "Corrected": 1, "Interpolated": 2, "Approximated": 3, "Not found": 4, "Not given": 5}

# score penalties (out of 100)
PENALTY_NUMBER = {"Found": 0.0, "Interpolated": 10.0, "Approximated": 20.0, "Not found": 30.0, "Not given": 10.0}
PENALTY_SUFFIX = 5.0  # 59A asked, only 59 known (or the reverse)
PENALTY_POSTCODE = {"Found": 0.0, "Corrected": 8.0, "Not given": 2.0}
PENALTY_MUNICIPALITY = {"Found": 0.0, "Corrected": 4.0, "Not given": 0.0}
PENALTY_NAME = 50.0  # × (1 − similarity)


# --------------------------------------------------------------------------------------------
# text: pg_trgm similarity, street-name normalisation, house numbers, free-text addresses
# --------------------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")


def trigrams(folded: str) -> frozenset[str]:
    """pg_trgm's trigrams of an already folded string: each word padded with two blanks in front
    and one behind."""
    out: set[str] = set()
    for word in _WORD.findall(folded):
        padded = f"  {word} "
        out.update(padded[i:i + 3] for i in range(len(padded) - 2))
    return frozenset(out)


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """pg_trgm ``similarity()``: shared trigrams over all trigrams."""
    if not a or not b:
        return 0.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)


_ABBREVIATIONS = {
    "r": "rue", "av": "avenue", "ave": "avenue", "avn": "avenue", "bd": "boulevard", "bld": "boulevard",
    "blvd": "boulevard", "boul": "boulevard", "bvd": "boulevard", "ch": "chaussee", "chee": "chaussee",
    "chss": "chaussee", "chaus": "chaussee", "pl": "place", "sq": "square", "imp": "impasse", "ste": "sainte",
    "str": "straat", "stwg": "steenweg", "stw": "steenweg", "ln": "laan", "pln": "plein", "dr": "dreef",
}
_NL_SUFFIXES = ("steenweg", "straat", "laan", "plein", "dreef", "lei", "kaai", "gang", "weg", "square", "pad")
_STREET_WORDS = frozenset(
    "rue avenue boulevard chaussee place square impasse allee chemin clos dreve quai galerie passage parvis "
    "rond point cite sentier venelle ruelle route pont porte carrefour esplanade jardin jardins promenade "
    "straat laan steenweg plein dreef weg kaai gang lei pad hof park brug poort "
    "de la le les du des l d au aux sur et en van der den het t ter ten op".split()
)


def normalise_street(name: str) -> str:
    """Folded street name with abbreviations expanded: ``"Av. Ducpétiaux"`` → ``"avenue ducpetiaux"``."""
    words = _WORD.findall(fold(name))
    nl = any(w.endswith(_NL_SUFFIXES) and len(w) > 5 for w in words)
    out = []
    for w in words:
        if w == "st":
            w = "sint" if nl else "saint"
        elif w in _ABBREVIATIONS:
            w = _ABBREVIATIONS[w]
        elif len(w) > 5 and w.endswith("str"):
            w += "aat"
        elif len(w) > 6 and w.endswith("stwg"):
            w = w[:-4] + "steenweg"
        out.append(w)
    return " ".join(out)


def distinctive(normalised: str) -> str:
    """The words that tell a street from others: no street types, articles, NL type suffixes (all
    the words when nothing else is left, e.g. "Rue de la Cité")."""
    out = []
    for w in normalised.split():
        if w in _STREET_WORDS:
            continue
        for suffix in _NL_SUFFIXES:
            if w.endswith(suffix) and len(w) > len(suffix) + 2:
                w = w[: -len(suffix)]
                break
        out.append(w)
    return " ".join(out) or normalised


_NUMBER = re.compile(
    r"^\s*(?:n[°o]\.?\s*)?(\d{1,5})\s*(bis|ter|quater|[a-z]{0,2})(?![a-z])\s*(?:(?:[-/,]|bte|bt|boite|bus|b)\.?\s*(\S+))?",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class HouseNumber:
    value: int
    suffix: str = ""
    box: str | None = None

    @property
    def label(self) -> str:
        return f"{self.value}{self.suffix}"


@lru_cache(maxsize=4096)
def parse_number(raw: str | int | None) -> HouseNumber | None:
    """``"59"``, ``"59A"``, ``"59 a"``, ``"59/2"``, ``"59 bte 2"``, ``"59-61"`` → a house number (first of a range)."""
    if raw is None:
        return None
    m = _NUMBER.match(fold(str(raw)))
    if not m:
        return None
    box = m.group(3)
    return HouseNumber(int(m.group(1)), m.group(2).upper(), box)


_POSTCODE = re.compile(r"(?<![\d/])\b(1[0-2]\d\d)\b(?![\d/])")
_NUMBER_TOKEN = r"\d{1,5}\s?(?:bis|ter|[a-zA-Z]{0,2})(?:\s*(?:/|bte|bus|b)\.?\s*\w+)?"
_TRAILING_NUMBER = re.compile(rf"^(?P<street>.*?\D)[\s,]+(?:n[°o]\.?\s*)?(?P<number>{_NUMBER_TOKEN})\s*$", re.IGNORECASE)
_LEADING_NUMBER = re.compile(rf"^\s*(?P<number>{_NUMBER_TOKEN})[\s,]+(?P<street>\D.*)$", re.IGNORECASE)


@dataclass(slots=True)
class AddressInput:
    street: str
    number: str | None = None
    postcode: int | None = None
    municipality: str | None = None


def split_street_number(text_: str) -> tuple[str, str | None]:
    """``"Rue de Namur 59"`` / ``"59, rue de Namur"`` → ``("Rue de Namur", "59")``."""
    text_ = text_.strip(" ,;")
    for pattern in (_TRAILING_NUMBER, _LEADING_NUMBER):
        m = pattern.match(text_)
        if m:
            return m.group("street").strip(" ,;"), m.group("number").strip()
    return text_, None


def parse_free_text(address: str, known_municipality=None) -> AddressInput:
    """A one-line address → street, number, postcode, municipality. ``known_municipality(text)``
    says whether a trailing comma-separated part names a municipality (when there is no postcode)."""
    text_ = " ".join(address.replace("\n", " ").split())
    postcode = municipality = None
    matches = list(_POSTCODE.finditer(text_))
    if matches:
        m = matches[-1]
        postcode = int(m.group(1))
        municipality = text_[m.end():].strip(" ,;-") or None
        text_ = text_[: m.start()].strip(" ,;-")
    elif "," in text_:
        head, tail = text_.rsplit(",", 1)
        if known_municipality is not None and known_municipality(tail.strip()):
            text_, municipality = head.strip(), tail.strip()
    street, number = split_street_number(text_)
    if "," in street:  # "Résidence X, Rue de Namur 59": keep the part with the number / the last part
        street = street.rsplit(",", 1)[-1].strip()
    return AddressInput(street=street, number=number, postcode=postcode, municipality=municipality)


# --------------------------------------------------------------------------------------------
# the gazetteer: streets, communes, postcodes in memory
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class StreetRow:
    id: int
    urbis_id: str
    postcode: int
    commune_nis: str | None
    name_nl: str | None
    name_fr: str | None
    x: float | None
    y: float | None


@dataclass(slots=True)
class StreetGroup:
    """One street name in one postcode (BeST splits a few of them by commune)."""

    postcode: int
    name_nl: str | None
    name_fr: str | None
    rows: list[StreetRow] = field(default_factory=list)

    @property
    def communes(self) -> list[str]:
        return sorted({r.commune_nis for r in self.rows if r.commune_nis})

    def row_for(self, commune_nis: str | None) -> StreetRow:
        for r in self.rows:
            if commune_nis and r.commune_nis == commune_nis:
                return r
        return self.rows[0]

    def name(self, language: str) -> str | None:
        return (self.name_nl or self.name_fr) if language == "nl" else (self.name_fr or self.name_nl)


@dataclass(slots=True)
class _Entry:
    group: int
    full: frozenset[str]
    distinct: frozenset[str]
    normalised: str


@dataclass(slots=True)
class Candidate:
    group: StreetGroup
    similarity: float
    exact: bool
    postcode_match: bool | None  # None: no postcode asked
    municipality_match: bool | None

    @property
    def rank(self) -> float:
        return self.similarity + 0.12 * bool(self.postcode_match) + 0.06 * bool(self.municipality_match)


def _urbis_street_id(best_id: str | None, fallback: int) -> str:
    """``https://databrussels.be/id/streetname/4173/2`` → ``"4173"`` (the UrbIS street id)."""
    m = re.search(r"/streetname/(\d+)", best_id or "")
    return m.group(1) if m else str(fallback)


class Gazetteer:
    """Streets, communes and postcodes (to match names), and the address points and named street
    lines (to place house numbers), all in memory: a forward answer reads no database."""

    def __init__(self, streets: list[StreetRow], communes: dict[str, tuple[str, str]], postcodes: list[dict],
                 points: list[tuple] = (), lines: list[tuple] = ()):
        self.communes = communes  # nis → (name_nl, name_fr)
        self.layers = _Layers(points, lines)
        # per street group: its points and lines (computed once); per query: its located candidates
        self._street_data: dict[int, tuple[list[_Point], Any]] = {}
        self._located: dict[tuple, list[tuple[Candidate, Located]]] = {}
        self.postcode_communes = {p["postcode"]: list(p["commune_nis_codes"] or ([p["commune_nis"]] if p["commune_nis"] else [])) for p in postcodes}
        groups: dict[tuple, StreetGroup] = {}
        for s in streets:
            key = (s.postcode, s.name_fr, s.name_nl)
            groups.setdefault(key, StreetGroup(s.postcode, s.name_nl, s.name_fr)).rows.append(s)
        self.groups = list(groups.values())
        self.by_name: dict[tuple[str, str], list[StreetGroup]] = {}
        self.entries: list[_Entry] = []
        self.postings: dict[str, list[int]] = {}
        self.exact: dict[str, list[int]] = {}
        for gi, g in enumerate(self.groups):
            for name in {g.name_fr, g.name_nl} - {None}:
                norm = normalise_street(name)
                entry = _Entry(gi, trigrams(norm), trigrams(distinctive(norm)), norm)
                for t in entry.full:
                    self.postings.setdefault(t, []).append(len(self.entries))
                self.entries.append(entry)
                if gi not in self.exact.setdefault(norm, []):
                    self.exact[norm].append(gi)
                for nis in g.communes:
                    self.by_name.setdefault((name, nis), []).append(g)
        self._places_seen: dict[str, tuple[frozenset[int], frozenset[str]] | None] = {}
        # trigrams in more entries than this ("rue", " de", "str"…) do not select candidates
        self.common_df = max(50, len(self.entries) // 40)
        # municipality names: communes and postal names ("Bruxelles (Laeken)" → also "laeken")
        self.places: list[tuple[frozenset[str], str, frozenset[int], frozenset[str]]] = []
        for nis, names in communes.items():
            pcs = frozenset(pc for pc, codes in self.postcode_communes.items() if nis in codes)
            for n in names:
                self.places.append((trigrams(normalise_street(n)), fold(n), pcs, frozenset([nis])))
        for p in postcodes:
            codes = frozenset(self.postcode_communes[p["postcode"]])
            for n in {p["name_nl"], p["name_fr"]}:
                parts = [n, *re.findall(r"\(([^)]*)\)", n)]
                for part in parts:
                    self.places.append((trigrams(normalise_street(part)), fold(part), frozenset([p["postcode"]]), codes))

    # ---- municipalities
    def municipality(self, name: str | None) -> tuple[frozenset[int], frozenset[str]] | None:
        """The postcodes and communes a municipality name denotes (fuzzy), or None."""
        if not name or not name.strip():
            return None
        if name not in self._places_seen:
            if len(self._places_seen) > 10_000:
                self._places_seen.clear()
            self._places_seen[name] = self._municipality(name)
        return self._places_seen[name]

    def _municipality(self, name: str) -> tuple[frozenset[int], frozenset[str]] | None:
        q = trigrams(normalise_street(name))
        best, found = 0.0, None
        for tri, _folded, pcs, nis in self.places:
            s = similarity(q, tri)
            if s > best:
                best, found = s, (pcs, nis)
        return found if best >= 0.5 else None

    def is_municipality(self, name: str) -> bool:
        return self.municipality(name) is not None

    def commune_name(self, nis: str | None, language: str) -> str | None:
        names = self.communes.get(nis or "")
        if not names:
            return None
        return names[0] if language == "nl" else names[1]

    # ---- streets
    def match(self, street: str, postcode: int | None, municipality: str | None) -> list[Candidate]:
        """Street candidates, best first: exact (folded, abbreviations expanded) names if any, else
        similar ones. Candidates come from the query's rarer trigrams (as a GIN index would), then
        get their exact similarity."""
        norm = normalise_street(street)
        q_full = trigrams(norm)
        if not q_full:
            return []
        best: dict[int, tuple[float, bool]] = {}
        for gi in self.exact.get(norm, ()):
            best[gi] = (1.0, True)
        if not best:
            q_distinct = trigrams(distinctive(norm))
            rare = [t for t in q_full if len(self.postings.get(t, ())) <= self.common_df]
            entries: set[int] = set()
            for t in rare or q_full:
                entries.update(self.postings.get(t, ()))
            for ei in entries:
                e = self.entries[ei]
                full = similarity(q_full, e.full)
                if full < 0.2:
                    continue
                sim = 0.5 * full + 0.5 * similarity(q_distinct, e.distinct)
                if sim > best.get(e.group, (-1.0, False))[0]:
                    best[e.group] = (sim, False)
        place = self.municipality(municipality)
        out = []
        for gi, (sim, exact) in best.items():
            if sim < MIN_SIMILARITY:
                continue
            g = self.groups[gi]
            pc_match = None if postcode is None else g.postcode == postcode
            muni_match = None
            if place is not None:
                pcs, nis = place
                muni_match = g.postcode in pcs or bool(nis.intersection(g.communes))
            out.append(Candidate(g, sim, exact, pc_match, muni_match))
        out.sort(key=lambda c: (-c.rank, c.group.postcode, c.group.name_fr or ""))
        return out

    def street_data(self, group: StreetGroup) -> tuple[list[_Point], Any]:
        """The address points of a street (same names, its postcode, or no postcode in its
        communes) and a function giving its lines — near its representative point(s) when known,
        else in its communes; computed once per street."""
        found = self._street_data.get(id(group))
        if found is None:
            found = self._street_data[id(group)] = self._compute_street_data(group)
        return found

    def _compute_street_data(self, group: StreetGroup) -> tuple[list[_Point], Any]:
        layers = self.layers
        communes = set(group.communes) | set(self.postcode_communes.get(group.postcode, ()))
        reps = [(r.x, r.y) for r in group.rows if r.x is not None]
        box = None
        if reps:
            xs, ys = [p[0] for p in reps], [p[1] for p in reps]
            box = (min(xs) - STREET_LINE_RADIUS_M, min(ys) - STREET_LINE_RADIUS_M,
                   max(xs) + STREET_LINE_RADIUS_M, max(ys) + STREET_LINE_RADIUS_M)
        points = []
        for i in _union(layers.points_by_fr.get(group.name_fr), layers.points_by_nl.get(group.name_nl)):
            p, pc = layers.points[i], layers.point_postcodes[i]
            if not (pc == group.postcode or (pc is None and p.commune_nis in communes)):
                continue
            if box is not None and not (box[0] <= p.x <= box[2] and box[1] <= p.y <= box[3]):
                continue
            points.append(p)
        line_ids = []
        for j in _union(layers.lines_by_fr.get(group.name_fr), layers.lines_by_nl.get(group.name_nl)):
            if box is not None:
                b = layers.line_bounds[j]
                if b[0] <= box[2] and b[2] >= box[0] and b[1] <= box[3] and b[3] >= box[1]:
                    line_ids.append(j)
            elif layers.line_communes[j] in communes:
                line_ids.append(j)
        memo: list = []

        def street_lines() -> list:
            """The lines of this street, not those of a namesake farther away."""
            if memo:
                return memo[0]
            lines = [part for j in line_ids for part in layers.line_parts[j]]
            if lines and (points or reps):
                xs = [p.x for p in points] + [p[0] for p in reps]
                ys = [p.y for p in points] + [p[1] for p in reps]
                margin = LINE_SNAP_M * 5
                x0, y0, x1, y1 = min(xs) - margin, min(ys) - margin, max(xs) + margin, max(ys) + margin
                lines = [ln for ln in lines if (b := ln.bounds)[0] <= x1 and b[2] >= x0 and b[1] <= y1 and b[3] >= y0]
            memo.append(lines)
            return lines

        return points, street_lines

    def locate_candidates(self, street: str, number: HouseNumber | None, postcode: int | None,
                          municipality: str | None) -> list[tuple[Candidate, Located]]:
        """The chosen street candidates and where the number is on each, best first — the part of a
        forward answer that does not depend on the language asked (remembered: URBIS clients ask
        every address once per language)."""
        key = (normalise_street(street), number, postcode, municipality)
        found = self._located.get(key)
        if found is None:
            if len(self._located) >= 50_000:
                self._located.clear()
            found = self._located[key] = self._locate_candidates(street, number, postcode, municipality)
        return found

    def _locate_candidates(self, street, number, postcode, municipality) -> list[tuple[Candidate, Located]]:
        candidates = self.match(street, postcode, municipality)
        if not candidates:
            return []
        top = candidates[0].rank
        out = []
        for c in [c for c in candidates if c.rank >= top - CANDIDATE_WINDOW][:MAX_RESULTS]:
            points, street_lines = self.street_data(c.group)
            where = locate(c.group, number, points, street_lines)
            if where is not None:
                out.append((c, where))
        return out

    def street_at(self, name_fr: str | None, name_nl: str | None, commune_nis: str | None, postcode: int | None,
                  x: float, y: float) -> StreetGroup | None:
        """The gazetteer street of an address point / street line (names, commune, nearest)."""
        groups: list[StreetGroup] = []
        for name in (name_fr, name_nl):
            if name:
                groups += self.by_name.get((name, commune_nis or ""), [])
        if postcode is not None:
            groups = [g for g in groups if g.postcode == postcode] or groups
        if not groups:
            return None

        def distance(g: StreetGroup) -> float:
            pts = [(r.x, r.y) for r in g.rows if r.x is not None]
            return min((math.hypot(px - x, py - y) for px, py in pts), default=1e9)

        return min(groups, key=distance)


async def load_gazetteer(engine: AsyncEngine) -> Gazetteer:
    async with engine.connect() as conn:
        streets = [
            StreetRow(r.id, _urbis_street_id(r.best_id, r.id), r.postcode, r.commune_nis, r.name_nl, r.name_fr, r.x, r.y)
            for r in await conn.execute(text(
                "SELECT id, best_id, postcode, commune_nis, name_nl, name_fr, ST_X(geom) AS x, ST_Y(geom) AS y "
                "FROM street WHERE coalesce(name_fr, name_nl) IS NOT NULL ORDER BY id"
            ))
        ]
        communes = {r.nis_code: (r.name_nl, r.name_fr) for r in await conn.execute(text("SELECT nis_code, name_nl, name_fr FROM commune"))}
        postcodes = [dict(r._mapping) for r in await conn.execute(text(
            "SELECT postcode, name_nl, name_fr, commune_nis, commune_nis_codes FROM postcode"
        ))]
        points = (await conn.execute(_POINTS_SQL)).all()
        lines = (await conn.execute(_LINES_SQL)).all()
    return Gazetteer(streets, communes, postcodes, points, lines)


# --------------------------------------------------------------------------------------------
# house numbers: exact, interpolated along the street line, nearest, street
# --------------------------------------------------------------------------------------------

# the layers a forward answer reads, loaded whole with the gazetteer (a few MB for the region)
_POINTS_SQL = text("""
SELECT street_fr, street_nl, number, postcode, commune_nis, ST_X(geom) AS x, ST_Y(geom) AS y
  FROM address_point
 WHERE coalesce(street_fr, street_nl) IS NOT NULL AND number IS NOT NULL
 ORDER BY id
""")
_LINES_SQL = text("""
SELECT name_fr, name_nl, commune_nis, ST_AsBinary(geom) AS wkb
  FROM street_line
 WHERE coalesce(name_fr, name_nl) IS NOT NULL
 ORDER BY id
""")


@dataclass(slots=True)
class _Point:
    number: HouseNumber
    raw: str
    x: float
    y: float
    commune_nis: str | None


class _Layers:
    """The address points (with a house number and a street name) and the named street lines,
    indexed by their French and their Dutch street name (the ones a street's rows are asked by)."""

    def __init__(self, points: Iterable[tuple], lines: Iterable[tuple]):
        self.points: list[_Point] = []
        self.point_postcodes: list[int | None] = []
        self.points_by_fr: dict[str, list[int]] = {}
        self.points_by_nl: dict[str, list[int]] = {}
        for street_fr, street_nl, raw, postcode, nis, x, y in points:
            n = parse_number(raw)
            if n is None:
                continue
            i = len(self.points)
            self.points.append(_Point(n, raw, x, y, nis))
            self.point_postcodes.append(postcode)
            if street_fr is not None:
                self.points_by_fr.setdefault(street_fr, []).append(i)
            if street_nl is not None:
                self.points_by_nl.setdefault(street_nl, []).append(i)
        lines = list(lines)
        geoms = shapely.from_wkb([bytes(row[3]) for row in lines]) if lines else []
        self.line_bounds: list[tuple[float, float, float, float]] = [tuple(b) for b in shapely.bounds(geoms).tolist()] if lines else []
        self.line_parts: list[list] = [list(getattr(g, "geoms", [g])) for g in geoms]
        self.line_communes: list[str | None] = [row[2] for row in lines]
        self.lines_by_fr: dict[str, list[int]] = {}
        self.lines_by_nl: dict[str, list[int]] = {}
        for j, (name_fr, name_nl, *_rest) in enumerate(lines):
            if name_fr is not None:
                self.lines_by_fr.setdefault(name_fr, []).append(j)
            if name_nl is not None:
                self.lines_by_nl.setdefault(name_nl, []).append(j)


def _union(a: list[int] | None, b: list[int] | None) -> list[int]:
    """Two sorted index lists as one, sorted, without repeats."""
    if not a or not b:
        return a or b or []
    return sorted(set(a).union(b))


@dataclass(slots=True)
class Located:
    x: float
    y: float
    number: str | None
    police: str                      # qualification of the house number
    commune_nis: str | None
    penalty: float                   # score penalty for the house number
    extent: tuple[float, float, float, float]


def _interpolate(lo: _Point, hi: _Point, t: float, lines: list) -> tuple[float, float]:
    """The point at fraction ``t`` from ``lo`` to ``hi``: along the street line both lie on (keeping
    their side of the street), else on the straight segment."""
    a, b = shapely.Point(lo.x, lo.y), shapely.Point(hi.x, hi.y)
    best = None
    for line in lines:
        d = line.distance(a) + line.distance(b)
        if line.distance(a) <= LINE_SNAP_M and line.distance(b) <= LINE_SNAP_M and (best is None or d < best[0]):
            best = (d, line)
    if best is not None:
        line = best[1]
        fa, fb = line.project(a), line.project(b)
        pa, pb = line.interpolate(fa), line.interpolate(fb)
        base = line.interpolate(fa + t * (fb - fa))
        dx = (1 - t) * (a.x - pa.x) + t * (b.x - pb.x)
        dy = (1 - t) * (a.y - pa.y) + t * (b.y - pb.y)
        return base.x + dx, base.y + dy
    return lo.x + t * (hi.x - lo.x), lo.y + t * (hi.y - lo.y)


def locate(group: StreetGroup, number: HouseNumber | None, points: list[_Point], street_lines) -> Located | None:
    """Where ``number`` is on the street, and how sure we are. ``street_lines()``: the street's
    lines (parsed only when needed: interpolation, or an answer at street level)."""

    def point_extent(x, y):
        return (x, y, x, y)

    if number is not None and number.value >= 0 and points:
        exact = [p for p in points if p.number.value == number.value and p.number.suffix == number.suffix]
        if exact:  # "101" before "101-103" or "101/2"; else the first point loaded (by id)
            p = min(exact, key=lambda p: p.raw.strip().upper() != number.label)
            return Located(p.x, p.y, p.raw, "Found", p.commune_nis, PENALTY_NUMBER["Found"], point_extent(p.x, p.y))
        same = [p for p in points if p.number.value == number.value]
        if same:  # 59A asked, 59 (or 59B) known
            p = min(same, key=lambda p: (p.number.suffix != "", p.number.suffix))
            return Located(p.x, p.y, number.label, "Approximated", p.commune_nis, PENALTY_SUFFIX, point_extent(p.x, p.y))
        parity = [p for p in points if p.number.value % 2 == number.value % 2]
        lower = max((p for p in parity if p.number.value < number.value), key=lambda p: p.number.value, default=None)
        upper = min((p for p in parity if p.number.value > number.value), key=lambda p: p.number.value, default=None)
        if lower is not None and upper is not None:
            t = (number.value - lower.number.value) / (upper.number.value - lower.number.value)
            x, y = _interpolate(lower, upper, t, street_lines())
            gap = upper.number.value - lower.number.value
            return Located(x, y, number.label, "Interpolated", (lower if t < 0.5 else upper).commune_nis,
                           PENALTY_NUMBER["Interpolated"] + min(5.0, gap / 20), point_extent(x, y))
        near = lower or upper
        if near is None:  # no number of the same parity: the nearest of the other side
            near = min(points, key=lambda p: abs(p.number.value - number.value))
            extra = 5.0
        else:
            extra = 0.0
        diff = abs(near.number.value - number.value)
        return Located(near.x, near.y, number.label, "Approximated", near.commune_nis,
                       PENALTY_NUMBER["Approximated"] + extra + min(10.0, diff / 4), point_extent(near.x, near.y))
    # the street itself: its representative point, else the middle of its longest line, else its numbers' middle
    lines = street_lines()
    if lines:
        b = shapely.bounds(lines)
        bounds = (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))
    elif points:
        xs, ys = [p.x for p in points], [p.y for p in points]
        bounds = (min(xs), min(ys), max(xs), max(ys))
    else:
        bounds = None
    row = next((r for r in group.rows if r.x is not None), None)
    if row is not None:
        x, y, nis = row.x, row.y, row.commune_nis
    elif lines:
        longest = max(lines, key=lambda g: g.length)
        mid = longest.interpolate(0.5, normalized=True)
        x, y, nis = mid.x, mid.y, None
    elif points:
        x, y, nis = sum(p.x for p in points) / len(points), sum(p.y for p in points) / len(points), points[0].commune_nis
    else:
        return None
    police = "Not given" if number is None else "Not found"
    return Located(x, y, None, police, nis, PENALTY_NUMBER[police], bounds or point_extent(x, y))


# --------------------------------------------------------------------------------------------
# answers
# --------------------------------------------------------------------------------------------


class BadRequest(Exception):
    pass


def _envelope(result: Any, error: bool = False, message: str | None = None) -> dict:
    body = {"result": result, "error": error, "status": "error" if error else "success", "version": VERSION}
    if message:
        body["message"] = message
    return body


def _out(x: float, y: float, srs: int) -> dict:
    if srs == WGS84:
        lon, lat = to_wgs84(x, y)
        return {"x": round(lon, 7), "y": round(lat, 7)}
    return {"x": round(x, 2), "y": round(y, 2)}


def _extent(bounds: tuple[float, float, float, float], srs: int) -> dict:
    x0, y0, x1, y1 = bounds
    a, b = _out(x0, y0, srs), _out(x1, y1, srs)
    return {"xmin": a["x"], "ymin": a["y"], "xmax": b["x"], "ymax": b["y"]}


def _adnc(postcode: int, urbis_id: str, number: str | None) -> str:
    return f"{postcode}{urbis_id:>4}{(number or ''):>4}"


def _qualification(**text_: str) -> tuple[dict, dict]:
    return dict(text_), {k: QUALIFICATION_CODES[v] for k, v in text_.items()}


def _language(value: Any) -> str:
    if value in (None, ""):
        return "fr"
    lang = str(value).strip().lower()
    if lang not in LANGUAGES:
        raise BadRequest(f"language must be fr or nl, not {value!r}")
    return lang


def _srs(value: Any) -> int:
    if value in (None, ""):
        return LAMBERT72
    try:
        srs = int(str(value).strip().upper().removeprefix("EPSG:"))
    except ValueError:
        raise BadRequest(f"spatialReference must be 31370 or 4326, not {value!r}") from None
    if srs not in SPATIAL_REFERENCES:
        raise BadRequest(f"spatialReference must be 31370 or 4326, not {value!r}")
    return srs


def _json_param(raw: str | None) -> dict:
    if not raw:
        raise BadRequest("the json parameter is missing")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the json parameter is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest("the json parameter must be an object")
    return value


def _postcode(value: Any) -> int | None:
    if value in (None, ""):
        return None
    digits = re.sub(r"\D", "", str(value))
    if len(digits) != 4:
        raise BadRequest(f"postcode {value!r} is not a Belgian postcode")
    return int(digits)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _coordinate(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadRequest(f"point.{name} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise BadRequest(f"point.{name} must be a finite number")
    return number


class Localizer:
    """Answers the three endpoints from the gazetteer and PostGIS."""

    def __init__(self, engine: AsyncEngine, gazetteer_ttl_s: float = 300.0):
        self.engine = engine
        self.gazetteer: Gazetteer | None = None
        self.loaded_at = 0.0
        self.ttl = gazetteer_ttl_s
        self._lock = asyncio.Lock()

    async def ready(self) -> Gazetteer:
        """The gazetteer, reloaded every ``ttl`` seconds (the reference layers may be reloaded)."""
        if self.gazetteer is None or time.monotonic() - self.loaded_at > self.ttl:
            async with self._lock:
                if self.gazetteer is None or time.monotonic() - self.loaded_at > self.ttl:
                    try:
                        self.gazetteer = await load_gazetteer(self.engine)
                        self.loaded_at = time.monotonic()
                    except (SQLAlchemyError, OSError):
                        if self.gazetteer is None:
                            raise
                        log.warning("URBIS twin: gazetteer reload failed; the previous one serves for 30 s more")
                        self.loaded_at = time.monotonic() - self.ttl + 30
        return self.gazetteer

    async def forward(self, query: AddressInput, language: str, srs: int) -> list[dict]:
        gaz = await self.ready()
        if not query.street or not _WORD.search(query.street):
            raise BadRequest("the street name is missing")
        if query.number is None:  # "Rue de Namur 59" in the street field
            query.street, query.number = split_street_number(query.street)
        number = parse_number(query.number) if query.number else None
        if query.number and number is None:  # "rez", "sn": asked, but not a number we can look for
            number = HouseNumber(-1)
        located = gaz.locate_candidates(query.street, number, query.postcode, query.municipality)
        results = [self._answer(gaz, c, where, language, srs, query) for c, where in located]
        results.sort(key=lambda r: -r["score"])
        return results

    def _answer(self, gaz: Gazetteer, c: Candidate, where: Located, language: str, srs: int, query: AddressInput) -> dict:
        row = c.group.row_for(where.commune_nis)
        commune = where.commune_nis or row.commune_nis
        postcode_q = "Not given" if c.postcode_match is None else ("Found" if c.postcode_match else "Corrected")
        muni_q = "Not given" if c.municipality_match is None else ("Found" if c.municipality_match else "Corrected")
        street_q = "Found" if c.exact else "Corrected"
        penalty = (
            PENALTY_NAME * (1 - c.similarity)
            + where.penalty
            + PENALTY_POSTCODE[postcode_q] + PENALTY_MUNICIPALITY[muni_q]
        )
        q_text, q_code = _qualification(policeNumber=where.police, postCode=postcode_q, municipality=muni_q, streetName=street_q)
        return {
            "language": language,
            "address": {
                "street": {
                    "name": c.group.name(language),
                    "postCode": str(c.group.postcode),
                    "municipality": gaz.commune_name(commune, language),
                    "id": row.urbis_id,
                },
                "number": where.number or "",
            },
            "adNc": _adnc(c.group.postcode, row.urbis_id, where.number),
            "score": round(max(0.0, 100.0 - penalty), 2),
            "point": _out(where.x, where.y, srs),
            "extent": _extent(where.extent, srs),
            "qualificationText": q_text,
            "qualificationCode": q_code,
        }

    async def reverse(self, x: float, y: float, language: str, srs: int) -> dict | None:
        gaz = await self.ready()
        async with self.engine.connect() as conn:
            rows = (await conn.execute(text("""
                WITH pt AS (SELECT ST_SetSRID(ST_MakePoint(:x, :y), 31370) AS g)
                SELECT * FROM (
                  SELECT 'p' AS kind, ap.street_fr, ap.street_nl, ap.number, ap.postcode, ap.commune_nis,
                         ST_X(ap.geom) AS x, ST_Y(ap.geom) AS y, ST_Distance(ap.geom, pt.g) AS d
                    FROM address_point ap, pt
                   WHERE coalesce(ap.street_fr, ap.street_nl) IS NOT NULL AND ap.number IS NOT NULL
                     AND ST_DWithin(ap.geom, pt.g, :r_address)
                   ORDER BY ap.geom <-> pt.g LIMIT 1) a
                UNION ALL
                SELECT * FROM (
                  SELECT 'l', sl.name_fr, sl.name_nl, NULL::text, NULL::int, sl.commune_nis,
                         ST_X(ST_ClosestPoint(sl.geom, pt.g)), ST_Y(ST_ClosestPoint(sl.geom, pt.g)),
                         ST_Distance(sl.geom, pt.g)
                    FROM street_line sl, pt
                   WHERE coalesce(sl.name_fr, sl.name_nl) IS NOT NULL AND ST_DWithin(sl.geom, pt.g, :r_street)
                   ORDER BY sl.geom <-> pt.g LIMIT 1) l
            """), {"x": x, "y": y, "r_address": REVERSE_ADDRESS_RADIUS_M, "r_street": REVERSE_STREET_RADIUS_M})).all()
        for r in sorted(rows, key=lambda r: r.kind != "p"):  # an address first, else the street
            group = gaz.street_at(r.street_fr, r.street_nl, r.commune_nis, r.postcode, r.x, r.y)
            if group is None:
                continue
            row = group.row_for(r.commune_nis)
            number = r.number if r.kind == "p" else None
            police = "Found" if number else "Not found"
            q_text, q_code = _qualification(policeNumber=police, postCode="Found", municipality="Found", streetName="Found")
            return {
                "language": language,
                "address": {
                    "street": {
                        "name": group.name(language),
                        "postCode": str(group.postcode),
                        "municipality": gaz.commune_name(r.commune_nis or row.commune_nis, language),
                        "id": row.urbis_id,
                    },
                    "number": number or "",
                },
                "adNc": _adnc(group.postcode, row.urbis_id, number),
                "score": round(max(0.0, 100.0 - (0 if number else PENALTY_NUMBER["Not found"]) - min(20.0, r.d / 10)), 2),
                "distance": round(r.d, 2),
                "point": _out(r.x, r.y, srs),
                "qualificationText": q_text,
                "qualificationCode": q_code,
            }
        return None


# --------------------------------------------------------------------------------------------
# the app
# --------------------------------------------------------------------------------------------


ENDPOINTS = ("getaddresses", "getaddressesfields", "getaddressfromxy")
# path → endpoint: the twin's paths and the regional service's (under /localization)
_LOCALIZE_PATHS = {f"{prefix}/Rest/Localize/{e}": e for prefix in ("", "/localization") for e in ENDPOINTS}
_JSON_HEADERS = [(b"content-type", b"application/json")]


def _params(query_string: str, body: bytes | None) -> dict[str, str]:
    """The request's parameters: the query string, and for a POST its urlencoded form (parsed
    here: python-multipart is not a dependency). The regional service's parameter names are
    case-insensitive in practice."""
    params = dict(parse_qsl(query_string, keep_blank_values=True))
    if body is not None:
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return {k.strip(): v for k, v in params.items()} | {k.strip().lower(): v for k, v in params.items()}


async def localize(localizer: Localizer, endpoint: str, query_string: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One Localize request → (HTTP status, JSON body)."""
    try:
        params = _params(query_string, body)
        if endpoint == "getaddresses":
            language, srs = _language(params.get("language")), _srs(params.get("spatialreference"))
            address = (params.get("address") or "").strip()
            if not address:
                raise BadRequest("the address parameter is missing")
            gaz = await localizer.ready()
            query = parse_free_text(address, gaz.is_municipality)
            return 200, orjson.dumps(_envelope(await localizer.forward(query, language, srs)))
        request = _json_param(params.get("json"))
        language = _language(request.get("language"))
        srs = _srs(request.get("spatialReference", request.get("spatialreference", request.get("SRS_In"))))
        if endpoint == "getaddressesfields":
            address = request.get("address")
            if not isinstance(address, dict):
                raise BadRequest("json.address must be an object")
            street = address.get("street") or {}
            if isinstance(street, str):
                street = {"name": street}
            if not isinstance(street, dict):
                raise BadRequest("json.address.street must be an object")
            name = str(street.get("name") or "").strip()
            if not name:
                raise BadRequest("json.address.street.name is missing")
            number = address.get("number")
            query = AddressInput(
                street=name,
                number=(str(number).strip() or None) if number is not None else None,
                postcode=_postcode(street.get("postcode", street.get("postCode", address.get("postcode")))),
                municipality=_text(street.get("municipality") or address.get("municipality")),
            )
            return 200, orjson.dumps(_envelope(await localizer.forward(query, language, srs)))
        # getaddressfromxy
        point = request.get("point")
        if not isinstance(point, dict):
            raise BadRequest("json.point must be an object with x and y")
        x, y = _coordinate(point.get("x"), "x"), _coordinate(point.get("y"), "y")
        if srs == WGS84:
            if 49 < x < 52 and 2 < y < 7:  # lat/lon sent as x/y (some clients do)
                x, y = y, x
            x, y = to_lambert72(x, y)
        if not in_brussels_bbox_l72(x, y):
            return 200, orjson.dumps(_envelope([]))
        found = await localizer.reverse(x, y, language, srs)
        return 200, orjson.dumps(_envelope(found if found is not None else []))
    except BadRequest as exc:
        return 200, orjson.dumps(_envelope([], error=True, message=str(exc)))
    except (SQLAlchemyError, OSError) as exc:
        log.warning("URBIS twin: database unavailable: %s", exc)
        return 503, orjson.dumps(_envelope([], error=True, message="service temporarily unavailable"))


class UrbisTwinApp(FastAPI):
    """FastAPI, except that the Localize endpoints are answered straight from the ASGI call, without
    the middleware, routing and telemetry layers (together they cost more than the answer itself).
    Once middleware is added (``app.middleware("http")``, ``add_middleware``) every request goes
    through it and the routes instead: same answers."""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and not self.user_middleware and not self.root_path:
            endpoint = _LOCALIZE_PATHS.get(scope["path"])
            if endpoint is not None and scope["method"] in ("GET", "POST"):
                await self._localize(scope, receive, send, endpoint)
                return
        await super().__call__(scope, receive, send)

    async def _localize(self, scope, receive, send, endpoint: str) -> None:
        self.state.requests[endpoint] += 1
        self.state.requests["total"] += 1
        body = None
        if scope["method"] == "POST":
            chunks = []
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
        headers = _JSON_HEADERS
        try:
            status, content = await localize(self.state.localizer, endpoint, scope["query_string"].decode("latin-1"), body)
        except Exception:
            log.exception("URBIS twin: %s failed", endpoint)
            status, content, headers = 500, b"Internal Server Error", [(b"content-type", b"text/plain; charset=utf-8")]
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(content)).encode())]})
        await send({"type": "http.response.body", "body": content})


def create_urbis_app(database_url: str, *, pool_size: int = 10, gazetteer_ttl_s: float = 300.0) -> FastAPI:
    """The URBIS Localize twin as an ASGI app (engine opened by the lifespan).

    ``app.state.requests`` (also ``GET /stats``) counts the Localize requests answered, per endpoint."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = create_async_engine(
            database_url, pool_size=pool_size, max_overflow=0, pool_timeout=10, pool_pre_ping=False,
            isolation_level="AUTOCOMMIT",  # read-only: no BEGIN/ROLLBACK round trips
            connect_args={"options": "-c statement_timeout=10000 -c application_name=bruso-urbis", "connect_timeout": 3},
        )
        app.state.localizer = Localizer(engine, gazetteer_ttl_s)
        try:
            await app.state.localizer.ready()
        except SQLAlchemyError as exc:  # start anyway: requests answer 503 until the database is back
            log.warning("URBIS twin: gazetteer not loaded at start-up: %s", exc)
        to_wgs84(150000.0, 170000.0)  # warm PROJ
        yield
        await engine.dispose()

    app = UrbisTwinApp(title="URBIS Localize (Bruso twin)", version=VERSION, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.requests = Counter()

    def route_for(endpoint: str):
        async def route(request: Request) -> Response:
            app.state.requests[endpoint] += 1
            app.state.requests["total"] += 1
            body = await request.body() if request.method == "POST" else None
            status, content = await localize(request.app.state.localizer, endpoint, request.scope["query_string"].decode("latin-1"), body)
            return Response(content, status_code=status, media_type="application/json")

        return route

    for path, endpoint in _LOCALIZE_PATHS.items():
        # plain Starlette routes: no dependency injection to solve per request
        app.add_route(path, route_for(endpoint), methods=["GET", "POST"],
                      name=endpoint + ("_localization" if path.startswith("/localization") else ""), include_in_schema=False)

    @app.get("/stats", include_in_schema=False)
    async def stats() -> dict:
        """Requests answered since start, per endpoint."""
        return {"requests": dict(app.state.requests)}

    @app.get("/", include_in_schema=False)
    async def index() -> dict:
        return {"service": "URBIS Localize twin (Bruso)", "version": VERSION,
                "endpoints": [f"/Rest/Localize/{e}" for e in ENDPOINTS]}

    return app


def _app_from_environment() -> FastAPI:
    """The app factory uvicorn's worker processes call (``serve(..., workers=n)``)."""
    import os

    return create_urbis_app(os.environ["BRUSO_URBIS_TWIN_DATABASE_URL"])


def serve(database_url: str, host: str = "127.0.0.1", port: int = 8765, *, workers: int = 1, log_level: str = "info",
          access_log: bool = False) -> None:
    """Run the twin with uvicorn (blocking) — ``bruso urbis serve``. ``workers`` > 1: that many
    processes (each with its gazetteer and a pool of ``pool_size`` connections). No access log by
    default: a line per request costs more than many answers (an import asks thousands)."""
    import os

    import uvicorn

    options = {"host": host, "port": port, "log_level": log_level, "access_log": access_log, "proxy_headers": False}
    if workers > 1:
        os.environ["BRUSO_URBIS_TWIN_DATABASE_URL"] = database_url
        uvicorn.run("app.geo.urbis_server:_app_from_environment", factory=True, workers=workers, **options)
    else:
        uvicorn.run(create_urbis_app(database_url), **options)
