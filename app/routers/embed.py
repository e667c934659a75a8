"""Embeddable service lists: self-contained, accessible HTML pages meant for an ``<iframe>``.

``GET /embed/organisations?<any v1 criteria>&lang=nl|fr&view=list|map|both`` answers through the one
search core (``criteria_from`` → ``app.search.query.search`` → ``app.search.fetch_records``) and
renders the page with Jinja2 (autoescaped). The map is an SVG drawn here, on the server, from the
districts' own polygons (``app.search.reference.districts``): no tile server, no CDN, no JavaScript
needed. ``embed.js`` only links list and map more tightly (hover/focus highlight) and copies the
snippet.

``GET /embed`` is the snippet generator: a small GET form (sector, category, commune, words,
language, view) that shows the ``<iframe>`` code for the current criteria and a live preview.

Pages carry their own Content-Security-Policy (same origin only); the list page may be framed by
anyone (``frame-ancestors *``), the generator only by this site.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Request
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import escape
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import FileResponse, HTMLResponse, Response

from .. import search
from ..deps import read_connection, settings
from ..errors import NotFound
from ..http import base_url, data_version
from ..search import reference as ref
from ..search.criteria import CRITERIA_PARAMETERS, SORTS, Criteria, bad
from ..search.query import search as run_search
from ..serialize import v1 as shape
from ..settings import Settings
from .v1 import choose_lang, criteria_from, parse_limit

router = APIRouter(prefix="/embed", include_in_schema=False)

APP_DIR = Path(__file__).resolve().parent.parent
TEMPLATES = Environment(
    loader=FileSystemLoader(APP_DIR / "templates" / "embed"),
    autoescape=True,  # every page and every value: data and query text are escaped
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
STATIC_DIR = APP_DIR / "static" / "embed"
STATIC_FILES = {"embed.css": "text/css; charset=utf-8", "embed.js": "text/javascript; charset=utf-8"}

VIEWS = ("both", "list", "map")
DEFAULT_LANG = "fr"  # like v1's name sort when neither lang nor Accept-Language says
DEFAULT_LIMIT = 25
MAX_LIMIT = 100
PAGE_PARAMETERS = {"lang", "view", "limit", "cursor", "sort"}
SNIPPET_PARAMETERS = {"lang", "view", "limit", "sort"}

_BASE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'"
)
CSP_EMBED = f"{_BASE_CSP}; frame-ancestors *"  # meant to be framed by any site
CSP_SNIPPET = f"{_BASE_CSP}; frame-src 'self'; frame-ancestors 'self'"  # shows a live preview of the embed

Connection = Annotated[AsyncConnection, Depends(read_connection)]
Config = Annotated[Settings, Depends(settings)]

# ---------------------------------------------------------------- interface texts

UI = {
    "nl": {
        "language_name": "Nederlands",
        "colon": ":",
        "title": "Sociale kaart van Brussel",
        "skip_list": "Naar de lijst",
        "skip_map": "Naar de kaart",
        "skip_form": "Naar het formulier",
        "language": "Taal",
        "view": "Weergave",
        "views": {"both": "Lijst en kaart", "list": "Lijst", "map": "Kaart"},
        "list": "Organisaties",
        "map": "Kaart",
        "found": ("{n} organisatie gevonden", "{n} organisaties gevonden"),
        "showing": "{k} op deze pagina",
        "none": "Geen organisaties gevonden voor deze criteria.",
        "address": "Adres",
        "phone": "Telefoon",
        "categories": "Categorieën",
        "show_on_map": "Toon op de kaart",
        "show_in_list": "Toon in de lijst",
        "no_location": "Geen locatie bekend: niet op de kaart",
        "no_name": "Naam onbekend",
        "box": "bus",
        "paging": "Paginering",
        "next": "Volgende pagina",
        "first": "Eerste pagina",
        "only_in": {"fr": "alleen in het Frans beschikbaar", "nl": "alleen in het Nederlands beschikbaar"},
        "map_desc": "Kaart van de 19 gemeenten (dikke lijnen) en de wijken (dunne lijnen) van het Brussels "
        "Hoofdstedelijk Gewest met de organisaties van deze pagina. Elk punt is een link naar de organisatie.",
        "on_map": "{k} van de {n} organisaties van deze pagina staan op de kaart.",
        "no_map": "De kaart is niet beschikbaar.",
        "criteria": "Zoekcriteria",
        "all": "Alle organisaties",
        "q": "Zoekwoorden",
        "sector": "Sector",
        "category": "Categorie",
        "commune": "Gemeente",
        "quartier": "Wijk",
        "postcode": "Postcode",
        "more_criteria": "en andere criteria",
        "source": "Bron: sociale kaart van Brussel (open data, Bruso).",
        "data": "Deze lijst als open data (JSON, opent in een nieuw venster)",
        # snippet generator
        "snippet_title": "Een lijst van de sociale kaart insluiten",
        "snippet_intro": "Kies de criteria, de taal en de weergave; kopieer dan de HTML-code en plak ze in uw "
        "webpagina. De lijst wordt altijd bijgewerkt met de gegevens van de sociale kaart.",
        "form": "Criteria",
        "any": "— geen filter —",
        "multiple": "meerdere: {v}",
        "q_hint": "Bijvoorbeeld: ocmw, crèche, schuldbemiddeling",
        "limit": "Aantal per pagina",
        "make": "Code maken",
        "code": "HTML-code om te kopiëren",
        "code_hint": "Selecteer de code in het tekstvak en kopieer ze (Ctrl+C of ⌘+C).",
        "copy_label": "Code kopiëren",
        "copied": "De code is gekopieerd.",
        "copy_failed": "Kopiëren lukte niet; selecteer de code en kopieer ze zelf.",
        "preview": "Voorbeeld",
        "open": "De lijst openen",
        "iframe_title": "Sociale kaart van Brussel: {what}",
        "kept": "Ook behouden uit de adresbalk",
    },
    "fr": {
        "language_name": "Français",
        "colon": "\u202f:",  # French typography: a narrow no-break space before the colon
        "title": "Carte sociale de Bruxelles",
        "skip_list": "Aller à la liste",
        "skip_map": "Aller à la carte",
        "skip_form": "Aller au formulaire",
        "language": "Langue",
        "view": "Affichage",
        "views": {"both": "Liste et carte", "list": "Liste", "map": "Carte"},
        "list": "Organisations",
        "map": "Carte",
        "found": ("{n} organisation trouvée", "{n} organisations trouvées"),
        "showing": "{k} sur cette page",
        "none": "Aucune organisation ne correspond à ces critères.",
        "address": "Adresse",
        "phone": "Téléphone",
        "categories": "Catégories",
        "show_on_map": "Voir sur la carte",
        "show_in_list": "Voir dans la liste",
        "no_location": "Emplacement inconnu : absent de la carte",
        "no_name": "Nom inconnu",
        "box": "bte",
        "paging": "Pagination",
        "next": "Page suivante",
        "first": "Première page",
        "only_in": {"nl": "disponible uniquement en néerlandais", "fr": "disponible uniquement en français"},
        "map_desc": "Carte des 19 communes (traits épais) et des quartiers (traits fins) de la Région de "
        "Bruxelles-Capitale avec les organisations de cette page. Chaque point est un lien vers l’organisation.",
        "on_map": "{k} des {n} organisations de cette page figurent sur la carte.",
        "no_map": "La carte n’est pas disponible.",
        "criteria": "Critères de recherche",
        "all": "Toutes les organisations",
        "q": "Mots recherchés",
        "sector": "Secteur",
        "category": "Catégorie",
        "commune": "Commune",
        "quartier": "Quartier",
        "postcode": "Code postal",
        "more_criteria": "et d’autres critères",
        "source": "Source : carte sociale de Bruxelles (données ouvertes, Bruso).",
        "data": "Cette liste en données ouvertes (JSON, s’ouvre dans une nouvelle fenêtre)",
        "snippet_title": "Intégrer une liste de la carte sociale",
        "snippet_intro": "Choisissez les critères, la langue et l’affichage ; copiez ensuite le code HTML et "
        "collez-le dans votre page web. La liste reste à jour avec les données de la carte sociale.",
        "form": "Critères",
        "any": "— sans filtre —",
        "multiple": "plusieurs : {v}",
        "q_hint": "Par exemple : cpas, crèche, médiation de dettes",
        "limit": "Nombre par page",
        "make": "Créer le code",
        "code": "Code HTML à copier",
        "code_hint": "Sélectionnez le code dans la zone de texte et copiez-le (Ctrl+C ou ⌘+C).",
        "copy_label": "Copier le code",
        "copied": "Le code a été copié.",
        "copy_failed": "La copie a échoué ; sélectionnez le code et copiez-le vous-même.",
        "preview": "Aperçu",
        "open": "Ouvrir la liste",
        "iframe_title": "Carte sociale de Bruxelles : {what}",
        "kept": "Repris aussi de la barre d’adresse",
    },
}

# ---------------------------------------------------------------- bilingual values, never a silent fallback


@dataclass(frozen=True)
class Text:
    """A value shown in ``lang``; ``fallback`` when the page's language had none (the template marks
    it with ``lang="…"`` and a visible note)."""

    value: object
    lang: str
    fallback: bool = False

    def __str__(self) -> str:
        return str(self.value)


def _empty(value) -> bool:
    return value is None or value == "" or value == []


def pick(pair: dict | None, lang: str) -> Text | None:
    if not pair:
        return None
    other = "fr" if lang == "nl" else "nl"
    if not _empty(pair.get(lang)):
        return Text(pair[lang], lang)
    if not _empty(pair.get(other)):
        return Text(pair[other], other, True)
    return None


def plain(text: Text | None, ui: dict) -> str:
    """The text for attributes (aria-label, title): the note in words instead of markup."""
    if text is None:
        return ""
    return f"{text.value} ({ui['only_in'][text.lang]})" if text.fallback else str(text.value)


def tel_href(number: str) -> str | None:
    digits = re.sub(r"[^\d+]", "", number)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    elif digits.startswith("0"):
        digits = "+32" + digits[1:]
    return f"tel:{digits}" if len(digits) >= 6 else None


# ---------------------------------------------------------------- the map (SVG, drawn here)

MAP_WIDTH = 640.0
MAP_PAD = 8.0
SIMPLIFY = 0.5  # map units (1 unit ≈ 32 m): Douglas–Peucker tolerance of the district outlines
BASEMAP_TTL_S = 600.0


@dataclass
class District:
    code: str
    names: dict
    d: str
    label_xy: tuple[float, float] | None = None


@dataclass
class BaseMap:
    """Communes and quartiers projected onto an SVG plane (equirectangular with cos(lat) scaling:
    planar within a metre or so over the 20 km of the region)."""

    width: float
    height: float
    lon0: float
    lat1: float
    kx: float
    ky: float
    communes: list[District] = field(default_factory=list)
    quartiers: list[District] = field(default_factory=list)
    quartier_path: str = ""

    def project(self, lon: float | None, lat: float | None) -> tuple[float, float] | None:
        if lon is None or lat is None:
            return None
        x = MAP_PAD + (lon - self.lon0) * self.kx
        y = MAP_PAD + (self.lat1 - lat) * self.ky
        if not (0 <= x <= self.width and 0 <= y <= self.height):
            return None  # outside the region's frame
        return round(x, 1), round(y, 1)

    def names(self, kind: str) -> dict[str, dict]:
        return {d.code: d.names for d in (self.communes if kind == "commune" else self.quartiers)}


def _polygons(geometry: dict) -> list:
    if geometry["type"] == "Polygon":
        return [geometry["coordinates"]]
    if geometry["type"] == "MultiPolygon":
        return geometry["coordinates"]
    return []


def _simplify(points: list[tuple[float, float]], tolerance: float) -> list[tuple[float, float]]:
    """Douglas–Peucker (iterative): the vertices farther than ``tolerance`` from the simplified line."""
    if len(points) < 3:
        return points
    keep = [False] * len(points)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        first, last = stack.pop()
        (x0, y0), (x1, y1) = points[first], points[last]
        dx, dy = x1 - x0, y1 - y0
        norm = math.hypot(dx, dy)
        worst, index = 0.0, -1
        for i in range(first + 1, last):
            px, py = points[i]
            dist = abs(dy * (px - x0) - dx * (py - y0)) / norm if norm else math.hypot(px - x0, py - y0)
            if dist > worst:
                worst, index = dist, i
        if worst > tolerance:
            keep[index] = True
            stack.append((first, index))
            stack.append((index, last))
    return [p for p, k in zip(points, keep) if k]


def _ring_path(points: list[tuple[float, float]]) -> str:
    """SVG path data of a closed ring: simplified, absolute start, then relative steps of 0.1 unit."""
    kept = _simplify(points, SIMPLIFY)
    if len(kept) < 4:  # closed: first == last
        return ""
    steps, (px, py) = [], (round(kept[0][0], 1), round(kept[0][1], 1))
    out = f"M{px:g} {py:g}"
    for x, y in kept[1:-1]:
        x, y = round(x, 1), round(y, 1)
        dx, dy = round(x - px, 1), round(y - py, 1)
        if dx or dy:
            steps.append(f"{dx:g} {dy:g}")
        px, py = x, y
    if len(steps) < 2:
        return ""
    return out + "l" + " ".join(steps) + "z"


def _centroid(points: list[tuple[float, float]]) -> tuple[float, float, float]:
    """(area, cx, cy) of a ring by the shoelace formula."""
    a = cx = cy = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]):
        cross = x0 * y1 - x1 * y0
        a += cross
        cx += (x0 + x1) * cross
        cy += (y0 + y1) * cross
    if abs(a) < 1e-9:
        return 0.0, points[0][0], points[0][1]
    return abs(a) / 2, cx / (3 * a), cy / (3 * a)


def build_basemap(communes: list[dict], quartiers: list[dict]) -> BaseMap | None:
    shapes = {
        kind: [(row, _polygons(orjson.loads(row["geometry"]))) for row in rows if row.get("geometry")]
        for kind, rows in (("commune", communes), ("quartier", quartiers))
    }
    lons = [p[0] for _, polys in shapes["commune"] for poly in polys for ring in poly for p in ring]
    lats = [p[1] for _, polys in shapes["commune"] for poly in polys for ring in poly for p in ring]
    if not lons:
        return None
    lon0, lon1, lat0, lat1 = min(lons), max(lons), min(lats), max(lats)
    kx = (MAP_WIDTH - 2 * MAP_PAD) / (lon1 - lon0)
    ky = kx / math.cos(math.radians((lat0 + lat1) / 2))
    base = BaseMap(width=MAP_WIDTH, height=round((lat1 - lat0) * ky + 2 * MAP_PAD, 1), lon0=lon0, lat1=lat1, kx=kx, ky=ky)

    def draw(row: dict, polys: list) -> District:
        parts, best = [], (0.0, 0.0, 0.0)
        for poly in polys:
            for i, ring in enumerate(poly):
                points = [(MAP_PAD + (lon - lon0) * kx, MAP_PAD + (lat1 - lat) * ky) for lon, lat, *_ in ring]
                if len(points) < 4:
                    continue
                parts.append(_ring_path(points))
                if i == 0:
                    centre = _centroid(points[:-1])
                    best = max(best, centre)
        return District(
            code=row["code"], names={"nl": row["name_nl"], "fr": row["name_fr"]}, d="".join(parts),
            label_xy=(round(best[1], 1), round(best[2], 1)) if best[0] else None,
        )

    base.communes = [draw(row, polys) for row, polys in shapes["commune"]]
    base.quartiers = [draw(row, polys) for row, polys in shapes["quartier"]]
    base.quartier_path = "".join(q.d for q in base.quartiers)
    return base


_BASEMAPS: dict[str, tuple[float, BaseMap | None]] = {}


async def basemap(conn: AsyncConnection, cfg: Settings) -> BaseMap | None:
    """The projected districts, rebuilt every few minutes (reference layers change only on a load)."""
    cached = _BASEMAPS.get(cfg.database_url)
    if cached and time.monotonic() - cached[0] < BASEMAP_TTL_S:
        return cached[1]
    communes = await ref.districts(conn, "commune", geometry=True)
    quartiers = await ref.districts(conn, "quartier", geometry=True)
    built = build_basemap(communes, quartiers)
    _BASEMAPS[cfg.database_url] = (time.monotonic(), built)
    return built


# ---------------------------------------------------------------- request helpers


def _one(params: dict, name: str, allowed: tuple[str, ...], default: str) -> str:
    values = params.get(name) or []
    if not values:
        return default
    if len(values) > 1 or values[0] not in allowed:
        raise bad(name, f"must be one of {', '.join(allowed)}")
    return values[0]


def _limit(params: dict, cfg: Settings) -> int:
    if not params.get("limit"):
        return DEFAULT_LIMIT
    return min(parse_limit(params, cfg), MAX_LIMIT)


def _sort(params: dict) -> str | None:
    values = params.get("sort") or []
    if values and (len(values) > 1 or values[0] not in SORTS):
        raise bad("sort", f"must be one of {', '.join(SORTS)}")
    return values[0] if values else None


def _query(params: dict, **override) -> str:
    merged = {k: v for k, v in params.items() if k not in override}
    for key, value in override.items():
        if value is not None:
            merged[key] = [value]
    return urlencode(merged, doseq=True)


def _html(body: str, csp: str, lang: str) -> HTMLResponse:
    return HTMLResponse(
        body,
        headers={
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "strict-origin-when-cross-origin",
            "Content-Language": lang,
            "Cache-Control": "public, max-age=60",
            "Vary": "Accept-Language",
        },
    )


async def describe(conn: AsyncConnection, criteria: Criteria, base: BaseMap | None, lang: str) -> list[dict]:
    """What the criteria select, in words: [{label, values: [Text]}]; the rest as "and other criteria"."""
    ui = UI[lang]
    out: list[dict] = []
    if criteria.q:
        out.append({"label": ui["q"], "values": [Text(criteria.q, lang)]})
    if criteria.sector:
        values = []
        for sector_id in criteria.sector:
            rows = await ref.sectors(conn, sector_id)
            values.append(pick({"nl": rows[0]["title_nl"], "fr": rows[0]["title_fr"]}, lang) if rows else None)
        out.append({"label": ui["sector"], "values": [v or Text(str(i), lang) for v, i in zip(values, criteria.sector)]})
    if criteria.category:
        values = []
        for category_id in criteria.category:
            rows = await ref.categories(conn, category_id=category_id, limit=1)
            values.append(pick({"nl": rows[0]["title_nl"], "fr": rows[0]["title_fr"]}, lang) if rows else None)
        out.append({"label": ui["category"], "values": [v or Text(str(i), lang) for v, i in zip(values, criteria.category)]})
    for kind in ("commune", "quartier"):
        codes = getattr(criteria, kind)
        if codes:
            names = base.names(kind) if base else {}
            out.append({"label": ui[kind], "values": [pick(names.get(c), lang) or Text(c, lang) for c in codes]})
    if criteria.postcode:
        out.append({"label": ui["postcode"], "values": [Text(str(p), lang) for p in criteria.postcode]})
    described = {"q", "sector", "category", "commune", "quartier", "postcode", "bbox_crs"}
    others = [k for k, v in criteria.model_dump().items() if k not in described and v not in (None, (), [])]
    if others:
        out.append({"label": ui["more_criteria"], "values": []})
    return out


def summary_text(items: list[dict], lang: str) -> str:
    ui = UI[lang]
    if not items:
        return ui["all"]
    parts = []
    for item in items:
        values = ", ".join(plain(v, ui) for v in item["values"])
        parts.append(f"{item['label']}{ui['colon']} {values}" if values else item["label"])
    return "; ".join(parts)


def entry(doc: dict, lang: str, ui: dict, base: BaseMap | None) -> dict:
    address = doc["address"]
    commune = address["commune"]
    number = " ".join(p for p in (address["number"], f"{ui['box']} {address['box']}" if address["box"] else None) if p)
    wgs84 = address["wgs84"] or {}
    point = base.project(wgs84.get("lon"), wgs84.get("lat")) if base else None
    phones = pick(doc["contact"]["phones"], lang)
    categories = [t for t in (pick(c["title"], lang) for c in doc["categories"]) if t]
    name = pick(doc["name"], lang)
    street = pick(address["street"], lang)
    commune_name = pick(commune["name"], lang) or pick(commune["name_as_given"], lang)
    place = " ".join(str(p) for p in (address["postcode"], plain(commune_name, ui)) if p)
    label = ", ".join(p for p in (plain(name, ui) or ui["no_name"], " ".join(p for p in (plain(street, ui), number) if p), place) if p)
    return {
        "id": doc["id"],
        "name": name,
        "street": street,
        "number": number,
        "postcode": address["postcode"],
        "commune": commune_name,
        "phones": Text([(p, tel_href(p)) for p in phones.value], phones.lang, phones.fallback) if phones else None,
        "categories": categories,
        "point": point,
        "label": label,
    }


# ---------------------------------------------------------------- pages


@router.get("/organisations")
async def organisations(request: Request, conn: Connection, cfg: Config) -> Response:
    """The embeddable list (and map) of the organisations matching any v1 criteria."""
    criteria, params = await criteria_from(request, conn, cfg, PAGE_PARAMETERS)
    view = _one(params, "view", VIEWS, "both")
    lang = choose_lang(request, params) or DEFAULT_LANG
    sort = _sort(params)
    size = _limit(params, cfg)
    cursor = (params.get("cursor") or [None])[0]
    page = await run_search(conn, criteria, sort=sort, limit=size, cursor=cursor, lang=lang, secret=cfg.cursor_secret,
                            version=await data_version(request))
    rows = {r["id"]: r for r in await search.fetch_records(conn, page.ids)}
    base = await basemap(conn, cfg)
    ui = UI[lang]
    root = base_url(request)
    entries = [entry(shape.organisation(rows[i], root), lang, ui, base) for i in page.ids if i in rows]
    criteria_items = await describe(conn, criteria, base, lang)
    path = request.url.path
    criteria_only = {k: v for k, v in params.items() if k in CRITERIA_PARAMETERS}
    data_query = urlencode({**criteria_only, "lang": [lang]}, doseq=True)
    first_page = {k: v for k, v in params.items() if k != "cursor"}
    context = {
        "lang": lang,
        "ui": ui,
        "view": view,
        "entries": entries,
        "number_matched": page.number_matched,
        "criteria_items": criteria_items,
        "summary": summary_text(criteria_items, lang),
        "base": base,
        "selected_communes": set(criteria.commune) | {code for kind, code in criteria.within if kind == "commune"},
        "selected_quartiers": set(criteria.quartier) | {code for kind, code in criteria.within if kind == "quartier"},
        "languages": [
            # a cursor belongs to one language's order: switching language starts again at page one
            {"code": code, "name": UI[code]["language_name"], "href": f"{path}?{_query(first_page, lang=code)}"}
            for code in shape.LANGS
        ],
        "views": [{"code": code, "name": ui["views"][code], "href": f"{path}?{_query(params, view=code)}"} for code in VIEWS],
        "next_href": f"{path}?{_query(params, cursor=page.next_cursor)}" if page.next_cursor else None,
        "first_href": f"{path}?{_query(first_page)}" if cursor else None,
        "both_href": f"{path}?{_query(params, view='both')}",
        "data_href": f"/v1/organisations?{data_query}",
        "on_map": sum(1 for e in entries if e["point"]),
    }
    return _html(TEMPLATES.get_template("organisations.html").render(context), CSP_EMBED, lang)


@router.get("")
async def snippet(request: Request, conn: Connection, cfg: Config) -> Response:
    """The snippet generator: pick criteria, get the ``<iframe>`` code (works without JavaScript)."""
    criteria, params = await criteria_from(request, conn, cfg, SNIPPET_PARAMETERS)
    view = _one(params, "view", VIEWS, "both")
    lang = choose_lang(request, params) or DEFAULT_LANG
    _sort(params)
    limit = _limit(params, cfg) if params.get("limit") else None
    ui = UI[lang]
    base = await basemap(conn, cfg)
    sectors = await ref.sectors(conn)
    categories = await ref.categories(conn, sectors=criteria.sector, limit=1000)
    criteria_items = await describe(conn, criteria, base, lang)

    def options(rows, key: str, stem: str, chosen: list[str]) -> list[dict]:
        out = [{"value": str(r[key]), "text": pick({"nl": r[f"{stem}_nl"], "fr": r[f"{stem}_fr"]}, lang) or Text(str(r[key]), lang)} for r in rows]
        out.sort(key=lambda o: str(o["text"].value).casefold())
        joined = ",".join(chosen)
        for o in out:
            o["selected"] = o["value"] == joined
        if joined and not any(o["selected"] for o in out):  # several values, or one outside this list
            label = ui["multiple"].format(v=joined) if len(chosen) > 1 else joined
            out.insert(0, {"value": joined, "text": Text(label, lang), "selected": True})
        return out

    def chosen(name: str) -> list[str]:
        return [p for v in params.get(name) or [] for p in (s.strip() for s in v.split(",")) if p]

    communes = [{"code": d.code, "name_nl": d.names["nl"], "name_fr": d.names["fr"]} for d in (base.communes if base else [])]
    form_keys = {"q", "sector", "category", "commune", "lang", "view", "limit"}
    kept = [(k, v) for k, values in params.items() if k not in form_keys for v in values if v.strip()]
    # The embed's own query: non-empty parameters only, lang and view always explicit.
    embed_params = {k: [v for v in values if v.strip()] for k, values in params.items() if k not in ("lang", "view")}
    embed_params = {k: v for k, v in embed_params.items() if v}
    embed_params["lang"], embed_params["view"] = [lang], [view]
    embed_path = f"/embed/organisations?{urlencode(embed_params, doseq=True)}"
    embed_url = f"{base_url(request)}{embed_path}"
    iframe_title = ui["iframe_title"].format(what=summary_text(criteria_items, lang))
    code = (
        f'<iframe src="{escape(embed_url)}" title="{escape(iframe_title)}" width="100%" height="{700 if view == "both" else 600}" '
        f'loading="lazy" style="border:0"></iframe>'
    )
    context = {
        "lang": lang,
        "ui": ui,
        "view": view,
        "q": (params.get("q") or [""])[0],
        "sectors": options(sectors, "id", "title", chosen("sector")),
        "categories": options(categories, "id", "title", chosen("category")),
        "communes": options(communes, "code", "name", chosen("commune")),
        "views": [{"code": c, "name": ui["views"][c]} for c in VIEWS],
        "languages": [{"code": c, "name": UI[c]["language_name"]} for c in shape.LANGS],
        "language_links": [
            {"code": c, "name": UI[c]["language_name"], "href": f"{request.url.path}?{_query(params, lang=c)}"} for c in shape.LANGS
        ],
        "limit": limit,
        "limits": [10, 25, 50, 100],
        "kept": kept,
        "code": code,
        "embed_path": embed_path,
        "iframe_title": iframe_title,
        "summary": summary_text(criteria_items, lang),
    }
    return _html(TEMPLATES.get_template("snippet.html").render(context), CSP_SNIPPET, lang)


@router.get("/static/{name}")
async def static(name: str) -> Response:
    """The embed's own stylesheet and script (written for Bruso; nothing third-party)."""
    if name not in STATIC_FILES:
        raise NotFound(f"no resource at /embed/static/{name}")
    return FileResponse(
        STATIC_DIR / name,
        media_type=STATIC_FILES[name],
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
