"""Embeddable service lists (/embed): the HTML through the TestClient (landmarks, headings, language,
the entries of the one search core, marked language fallbacks, escaping, the SVG map, paging, the
snippet generator, 400s) and the pages as a real browser renders them (headless Chromium against a
live uvicorn server: rendered entries, the language switch, screenshots in build/test-artifacts/)."""

from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import lxml.html
import pytest
from sqlalchemy import Engine, text

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "build" / "test-artifacts"
STATIC = ROOT / "app" / "static" / "embed"
TEMPLATES = ROOT / "app" / "templates" / "embed"
PROBLEM = "application/problem+json"
RECORD = 13219  # the real 2019 record: Schaerbeek (21015), Boulevard Auguste Reyers 70
NAMES = {"nl": "COÖRDINATIE VAN DE SCHAARBEEKSE SOCIALE ACTIE", "fr": "COORDINATION DE L'ACTION SOCIALE DE SCHAERBEEK"}
STREETS = {"nl": "Auguste Reyerslaan 70", "fr": "Boulevard Auguste Reyers 70"}
INJECTION = '<script>alert("x")</script><img src=x onerror=alert(1)>'


# ---------------------------------------------------------------- helpers


def page(client, url: str, status: int = 200):
    response = client.get(url)
    assert response.status_code == status, response.text
    if status == 200:
        assert response.headers["content-type"] == "text/html; charset=utf-8"
    return response, lxml.html.document_fromstring(response.text)


def problem(response, parameter: str) -> dict:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == 400 and body["parameter"] == parameter, body
    return body


_COMPOUND = re.compile(r"(?P<tag>[a-z][a-z0-9]*)?(?P<rest>(?:[#.][\w-]+|\[[^\]]+\])*)$")
_PART = re.compile(r"#(?P<id>[\w-]+)|\.(?P<cls>[\w-]+)|\[(?P<attr>[\w-]+)(?:(?P<op>\^?=)'(?P<value>[^']*)')?\]")


def _xpath_step(compound: str) -> str:
    match = _COMPOUND.match(compound)
    assert match, compound
    tests = []
    for part in _PART.finditer(match["rest"]):
        if part["id"]:
            tests.append(f"@id='{part['id']}'")
        elif part["cls"]:
            tests.append(f"contains(concat(' ', normalize-space(@class), ' '), ' {part['cls']} ')")
        elif part["op"] == "=":
            tests.append(f"@{part['attr']}='{part['value']}'")
        elif part["op"] == "^=":
            tests.append(f"starts-with(@{part['attr']}, '{part['value']}')")
        else:
            tests.append(f"@{part['attr']}")
    return (match["tag"] or "*") + "".join(f"[{t}]" for t in tests)


def css(node, selector: str) -> list:
    """The few CSS selectors these tests use (tag, #id, .class, [attr], [attr='v'], [attr^='v'],
    descendant and child combinators), as XPath: no cssselect dependency."""
    path, axis = ".", "//"
    for token in re.findall(r"(?:[^\s\[>]|\[[^\]]*\])+|>", selector):
        if token == ">":
            axis = "/"
            continue
        path += axis + _xpath_step(token)
        axis = "//"
    return node.xpath(path)


def text_of(node) -> str:
    return " ".join(node.text_content().split())


def entries(doc) -> list[int]:
    return [int(li.get("id").removeprefix("org-")) for li in css(doc, "ol.orgs > li.org")]


def v1_ids(client, query: str) -> list[int]:
    body = client.get(f"/v1/organisations?{query}&fields=id").json()
    return [item["id"] for item in body["items"]]


def csp(response) -> dict[str, str]:
    directives = [d.strip() for d in response.headers["content-security-policy"].split(";") if d.strip()]
    return {d.split()[0]: " ".join(d.split()[1:]) for d in directives}


def path_points(d: str) -> list[tuple[float, float]]:
    """Absolute vertices of the ``M x y l dx dy …z`` paths the map draws."""
    points: list[tuple[float, float]] = []
    for ring in re.findall(r"M([^Mz]+)z", d):
        start, _, rest = ring.partition("l")
        x, y = map(float, start.split())
        points.append((x, y))
        numbers = [float(n) for n in rest.split()]
        for dx, dy in zip(numbers[::2], numbers[1::2]):
            x, y = x + dx, y + dy
            points.append((x, y))
    return points


def inside(point: tuple[float, float], d: str) -> bool:
    """Even–odd point-in-polygon over every ring of a path."""
    px, py = point
    hit = False
    for ring in re.findall(r"M[^Mz]+z", d):
        pts = path_points(ring)
        for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]):
            if (y0 > py) != (y1 > py) and px < x0 + (py - y0) * (x1 - x0) / (y1 - y0):
                hit = not hit
    return hit


def luminance(hex_colour: str) -> float:
    h = hex_colour.lstrip("#")
    h = "".join(c * 2 for c in h) if len(h) == 3 else h
    channels = [int(h[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


# ---------------------------------------------------------------- the page through the TestClient


def test_page_landmarks_headings_language_and_entries(client):
    response, doc = page(client, "/embed/organisations?commune=21015&lang=nl&limit=100")
    html = doc.getroottree().getroot()
    assert html.get("lang") == "nl"
    assert response.headers["content-language"] == "nl"
    # landmarks, each once; navigation regions named
    for selector in ("header", "main", "footer"):
        assert len(css(doc, selector)) == 1, selector
    navs = css(doc, "nav")
    assert navs and all(n.get("aria-label") for n in navs)
    assert {n.get("aria-label") for n in navs} >= {"Taal", "Weergave"}
    # headings: one h1, then h2 per region, h3 per organisation
    assert [text_of(h) for h in css(doc, "h1")] == ["Sociale kaart van Brussel"]
    assert [text_of(h) for h in css(doc, "h2")] == ["Organisaties", "Kaart"]
    assert len(css(doc, "ol.orgs h3")) == len(entries(doc))
    # the skip links come first and point at existing, focusable targets
    focusable = doc.xpath("//body//a[@href] | //body//button | //body//input | //body//select")
    skip = css(doc, "a.skip-link")
    assert focusable[0] is skip[0] and [a.get("href") for a in skip] == ["#list", "#map"]
    for link in skip:
        target = doc.get_element_by_id(link.get("href")[1:])
        assert target.get("tabindex") == "-1"
    # one search core: the same organisations, in the same order, as v1
    ids = entries(doc)
    assert ids and ids == v1_ids(client, "commune=21015&lang=nl&limit=100")
    assert RECORD in ids
    assert text_of(css(doc, "p.count")[0]).startswith(f"{len(ids)} organisatie")
    item = doc.get_element_by_id(f"org-{RECORD}")
    assert text_of(css(item, "h3")[0]) == NAMES["nl"]
    address = text_of(css(item, "dd.adr")[0])
    assert STREETS["nl"] in address and "1030 Schaarbeek" in address
    phones = [a.get("href") for a in css(item, "dd a[href^='tel:']")]
    assert phones == ["tel:+3224355138", "tel:+3224355139"]
    assert [text_of(dt) for dt in css(item, "dt")] == ["Adres", "Telefoon"]  # 13219 has no category
    # every entry's categories: v1's titles in Dutch (French ones marked)
    body = client.get("/v1/organisations?commune=21015&lang=nl&limit=100&fields=categories").json()
    with_categories = 0
    for doc_item in body["items"]:
        titles = [c["title"] for c in doc_item["categories"]]
        shown = [text_of(li) for li in css(doc.get_element_by_id(f"org-{doc_item['id']}"), "ul.cats li")]
        assert [t.removesuffix(" (alleen in het Frans beschikbaar)") for t in shown] == titles
        with_categories += bool(titles)
    assert with_categories
    # ids are unique; every link has a name
    all_ids = doc.xpath("//@id")
    assert len(all_ids) == len(set(all_ids))
    for link in doc.xpath("//a[@href]"):
        assert text_of(link) or link.get("aria-label"), lxml.html.tostring(link)
    # the criteria in words
    assert "Gemeente: Schaarbeek" in text_of(css(doc, "p.criteria")[0])


def test_french_page_uses_french_labels_and_values(client):
    _, doc = page(client, "/embed/organisations?commune=21015&lang=fr&limit=100")
    assert doc.getroottree().getroot().get("lang") == "fr"
    assert [text_of(h) for h in css(doc, "h1")] == ["Carte sociale de Bruxelles"]
    assert [text_of(h) for h in css(doc, "h2")] == ["Organisations", "Carte"]
    item = doc.get_element_by_id(f"org-{RECORD}")
    assert text_of(css(item, "h3")[0]) == NAMES["fr"]
    assert STREETS["fr"] in text_of(css(item, "dd.adr")[0])
    assert [text_of(dt) for dt in css(item, "dt")] == ["Adresse", "Téléphone"]
    labels = {text_of(dt) for dt in css(doc, "ol.orgs dt")}
    assert labels == {"Adresse", "Téléphone", "Catégories"}
    assert entries(doc) == v1_ids(client, "commune=21015&lang=fr&limit=100")


def test_language_from_accept_language_and_switch_links(client):
    response, doc = page(client, "/embed/organisations?commune=21015&limit=3", )
    assert doc.getroottree().getroot().get("lang") == "fr"  # no lang, no header: French (as v1 sorts)
    response = client.get("/embed/organisations?commune=21015&limit=3", headers={"Accept-Language": "nl-BE,nl;q=0.9"})
    assert lxml.html.document_fromstring(response.text).getroottree().getroot().get("lang") == "nl"
    assert "Accept-Language" in response.headers["vary"]
    switch = {a.get("hreflang"): a for a in css(doc, "nav[aria-label='Langue'] a")}
    assert set(switch) == {"nl", "fr"}
    assert switch["fr"].get("aria-current") == "true" and switch["nl"].get("lang") == "nl"
    query = parse_qs(urlsplit(switch["nl"].get("href")).query)
    assert query == {"commune": ["21015"], "limit": ["3"], "lang": ["nl"]}
    _, nl = page(client, switch["nl"].get("href"))
    assert text_of(css(nl, "h1")[0]) == "Sociale kaart van Brussel"


def test_missing_labels_show_the_other_language_marked(client, loaded: Engine):
    with loaded.connect() as conn:
        row = conn.execute(text(
            "SELECT id, commune_nis, name_official_fr FROM organisation WHERE publication_state = 'published' "
            "AND name_official_nl IS NULL AND name_official_fr IS NOT NULL AND commune_nis IS NOT NULL ORDER BY id LIMIT 1"
        )).one()
    _, doc = page(client, f"/embed/organisations?commune={row.commune_nis}&lang=nl&limit=100")
    heading = doc.get_element_by_id(f"org-{row.id}-name")
    marked = css(heading, "span[lang='fr']")
    assert [text_of(s) for s in marked] == [row.name_official_fr]
    assert "(alleen in het Frans beschikbaar)" in text_of(heading)
    # the point's accessible name says it too
    point = doc.get_element_by_id(f"pt-{row.id}")
    assert "alleen in het Frans beschikbaar" in point.get("aria-label")
    # in French the same name is no fallback
    _, fr = page(client, f"/embed/organisations?commune={row.commune_nis}&lang=fr&limit=100")
    heading = fr.get_element_by_id(f"org-{row.id}-name")
    assert not css(heading, "[lang]") and not css(heading, ".fallback")
    assert text_of(heading) == row.name_official_fr


def test_map_is_an_svg_of_the_districts_with_focusable_linked_points(client):
    _, doc = page(client, "/embed/organisations?commune=21015&lang=nl&limit=100")
    svg = css(doc, "svg.map")[0]
    assert svg.get("aria-labelledby") == "map-h" and svg.get("aria-describedby") == "map-desc"
    communes = css(svg, "path.commune")
    assert len(communes) == 19
    assert [p.get("data-code") for p in css(svg, "path.commune.selected")] == ["21015"]
    assert css(svg, "path.quartiers")[0].get("d").count("M") >= 145
    assert css(svg, "g.districts")[0].get("aria-hidden") == "true"
    labels = [text_of(t) for t in css(svg, "g.labels text")]
    assert "Schaarbeek" in labels and "Elsene" in labels
    ids = entries(doc)
    points = css(svg, "a.pt")
    assert points and {int(a.get("data-org")) for a in points} <= set(ids)
    for a in points:
        org = a.get("data-org")
        assert a.get("href") == f"#org-{org}"  # map → list
        assert a.get("aria-label") and text_of(css(a, "title")[0]) == a.get("aria-label")
        assert css(doc, f"a.to-map[href='#pt-{org}']")  # list → map
    # record 13219 is drawn inside Schaerbeek's outline
    schaerbeek = css(svg, "path.commune[data-code='21015']")[0].get("d")
    point = doc.get_element_by_id(f"pt-{RECORD}")
    circle = css(point, "circle")[0]
    xy = (float(circle.get("cx")), float(circle.get("cy")))
    assert inside(xy, schaerbeek)
    assert not inside(xy, css(svg, "path.commune[data-code='21004']")[0].get("d"))
    assert point.get("aria-label").startswith(NAMES["nl"]) and STREETS["nl"] in point.get("aria-label")
    _, _, width, height = map(float, svg.get("viewbox").split())  # the HTML parser lowercases names
    assert all(0 <= x <= width and 0 <= y <= height for x, y in path_points(schaerbeek))


def test_views_list_and_map(client):
    _, listing = page(client, "/embed/organisations?commune=21015&lang=nl&view=list")
    assert not css(listing, "svg") and not css(listing, "#map") and css(listing, "#list")
    assert not css(listing, "a.to-map")
    assert [a.get("href") for a in css(listing, "a.skip-link")] == ["#list"]
    _, mapped = page(client, "/embed/organisations?commune=21015&lang=nl&view=map")
    assert css(mapped, "svg.map") and not css(mapped, "#list")
    assert [text_of(h) for h in css(mapped, "h2")] == ["Kaart"]
    for a in css(mapped, "a.pt"):  # no list here: points open the list-and-map view at the entry
        href = a.get("href")
        assert "view=both" in href and href.endswith(f"#org-{a.get('data-org')}")
    current = css(mapped, "nav[aria-label='Weergave'] a[aria-current='page']")
    assert [text_of(a) for a in current] == ["Kaart"]


def test_paging_by_cursor(client):
    _, first = page(client, "/embed/organisations?commune=21015&lang=nl&limit=2")
    ids = v1_ids(client, "commune=21015&lang=nl&limit=4")
    assert entries(first) == ids[:2]
    assert "2 op deze pagina" in text_of(css(first, "p.count")[0])
    nav = css(first, "nav[aria-label='Paginering']")[0]
    next_link = css(nav, "a[rel='next']")[0]
    assert text_of(next_link) == "Volgende pagina"
    _, second = page(client, next_link.get("href"))
    assert entries(second) == ids[2:4]
    # from page two: a link back to the first page; language links drop the cursor (it is per language)
    assert [text_of(a) for a in css(second, "nav[aria-label='Paginering'] a")] == ["Eerste pagina", "Volgende pagina"]
    for a in css(second, "nav[aria-label='Taal'] a"):
        assert "cursor" not in a.get("href")
    for a in css(second, "nav[aria-label='Weergave'] a"):
        assert "cursor=" in a.get("href")


def test_limit_is_clamped(client):
    _, doc = page(client, "/embed/organisations?limit=5000&lang=nl")
    assert len(entries(doc)) == 100


def test_unknown_and_bad_parameters_are_400_problems(client):
    problem(client.get("/embed/organisations?commune=21015&nope=1"), "nope")
    problem(client.get("/embed/organisations?view=bad"), "view")
    problem(client.get("/embed/organisations?view=list&view=map"), "view")
    problem(client.get("/embed/organisations?lang=de"), "lang")
    problem(client.get("/embed/organisations?commune=99999"), "commune")
    problem(client.get("/embed/organisations?limit=abc"), "limit")
    problem(client.get("/embed/organisations?sort=best"), "sort")
    problem(client.get("/embed/organisations?radius=10"), "radius")
    problem(client.get("/embed/organisations?cursor=forged.cursor"), "cursor")
    problem(client.get("/embed/organisations?f=json"), "f")  # output formats are v1's, not the embed's
    unknown = client.get("/embed/organisations?category=999999999")
    assert unknown.status_code == 400 and unknown.json()["unknown"] == {"category": [999999999]}
    problem(client.get("/embed?nope=1"), "nope")
    problem(client.get("/embed?view=bad"), "view")
    assert client.get("/embed/static/other.js").status_code == 404


def test_any_v1_criteria_are_accepted(client):
    query = "q=ocmw&near=50.8466,4.3528&radius=5000&lang=fr&limit=10"
    _, doc = page(client, f"/embed/organisations?{query}")
    assert entries(doc) == v1_ids(client, query)
    for extra in ("within=quartier:87", "postcode=1030", "bbox=4.35,50.84,4.42,50.87", "lang_status=FR-NL", "sector=53"):
        _, doc = page(client, f"/embed/organisations?{extra}&lang=nl&limit=50")
        assert entries(doc) == v1_ids(client, f"{extra}&lang=nl&limit=50"), extra


def test_user_and_data_text_is_escaped(client, loaded: Engine):
    response, doc = page(client, "/embed/organisations?lang=nl&q=" + INJECTION.replace("&", "%26"))
    assert INJECTION not in response.text and "<img src=x" not in response.text
    assert "&lt;script&gt;alert(" in response.text
    assert [s.get("src") for s in doc.xpath("//script")] == ["/embed/static/embed.js"]
    assert not doc.xpath("//img") and not doc.xpath("//@onerror")
    assert INJECTION in text_of(css(doc, "p.criteria")[0])  # shown as text
    with loaded.connect() as conn:
        victim = conn.execute(text(
            "SELECT id, name_official_nl FROM organisation WHERE commune_nis = '21015' AND name_official_nl IS NOT NULL "
            "AND id <> :record ORDER BY id LIMIT 1"), {"record": RECORD}).one()
    try:
        with loaded.begin() as conn:
            conn.execute(text("UPDATE organisation SET name_official_nl = :n, updated_at = now() WHERE id = :id"),
                         {"n": INJECTION, "id": victim.id})
        response, doc = page(client, "/embed/organisations?commune=21015&lang=nl&limit=100")
        assert INJECTION not in response.text
        assert text_of(doc.get_element_by_id(f"org-{victim.id}-name")) == INJECTION
        assert doc.get_element_by_id(f"pt-{victim.id}").get("aria-label").startswith(INJECTION)
        assert [s.get("src") for s in doc.xpath("//script")] == ["/embed/static/embed.js"]
        assert not doc.xpath("//img") and not doc.xpath("//@onerror")
        snippet = client.get("/embed?commune=21015&lang=nl&q=" + INJECTION.replace("&", "%26"))
        assert snippet.status_code == 200 and INJECTION not in snippet.text
        assert not lxml.html.document_fromstring(snippet.text).xpath("//img")
    finally:
        with loaded.begin() as conn:
            conn.execute(text("UPDATE organisation SET name_official_nl = :n, updated_at = now() WHERE id = :id"),
                         {"n": victim.name_official_nl, "id": victim.id})


def test_security_headers_allow_framing_of_the_embed_only(client):
    response, _ = page(client, "/embed/organisations?commune=21015&lang=nl")
    policy = csp(response)
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "*"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "x-frame-options" not in response.headers
    assert response.headers["etag"] and response.headers["cache-control"] == "public, max-age=60"
    snippet = client.get("/embed?lang=nl")
    policy = csp(snippet)
    assert policy["frame-ancestors"] == "'self'" and policy["frame-src"] == "'self'" and policy["form-action"] == "'self'"


def test_self_contained_no_cdn_no_inline_code(client):
    for name, media in (("embed.css", "text/css"), ("embed.js", "text/javascript")):
        response = client.get(f"/embed/static/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(media)
        assert response.headers["x-content-type-options"] == "nosniff"
        assert not re.search(r"https?://|//cdn|@import|url\(", response.text), name
        assert len(response.text.splitlines()) > 20  # written by hand, not a minified bundle
    for template in TEMPLATES.glob("*.html"):
        source = template.read_text()
        assert "http://" not in source and "https://" not in source, template
        assert " style=" not in source and "<style" not in source, template  # CSP: no inline styles
        assert not re.search(r"<script(?![^>]*\bsrc=)", source), template  # CSP: no inline scripts
    _, doc = page(client, "/embed/organisations?commune=21015&lang=nl")
    for url in doc.xpath("//link/@href | //script/@src | //img/@src | //iframe/@src"):
        assert url.startswith("/") or url == "data:,", url  # same origin only (the empty icon spares a /favicon.ico)


def test_colours_meet_wcag_aa_contrast():
    css = (STATIC / "embed.css").read_text()
    text_pairs = [  # (text, ground) as used in embed.css
        ("#1b1f24", "#fff"), ("#0a4f8f", "#fff"), ("#4a5561", "#fff"), ("#fff", "#0a4f8f"), ("#fff", "#1b1f24"),
        ("#1b1f24", "#ffd500"), ("#1b1f24", "#eef1f4"), ("#0a4f8f", "#fdf6f5"), ("#4a5561", "#f8f9fa"),
        ("#1b1f24", "#d7e7f7"), ("#fff", "#06325c"),
    ]
    for fg, bg in text_pairs:
        assert fg in css and bg in css, (fg, bg)
        assert contrast(fg, bg) >= 4.5, (fg, bg, contrast(fg, bg))
    for fg, bg in (("#b3261e", "#eef1f4"), ("#b3261e", "#d7e7f7"), ("#4a5561", "#eef1f4"), ("#1b1f24", "#ffd500")):
        assert contrast(fg, bg) >= 3, (fg, bg)  # points, borders and focus rings: non-text contrast


# ---------------------------------------------------------------- the snippet generator


def test_snippet_generator_works_without_javascript(client):
    _, doc = page(client, "/embed?commune=21015&lang=nl&view=list&sector=&category=&q=&postcode=1030")
    assert doc.getroottree().getroot().get("lang") == "nl"
    assert len(css(doc, "main")) == 1 and len(css(doc, "h1")) == 1
    form = css(doc, "form#form")[0]
    assert form.get("method") == "get" and form.get("action") == "/embed"
    for control in form.xpath(".//select | .//input[not(@type='hidden')]"):
        labels = css(doc, f"label[for='{control.get('id')}']")
        assert labels and text_of(labels[0]), control.get("name")
    selects = {s.get("name"): s for s in css(form, "select")}
    assert set(selects) == {"sector", "category", "commune", "lang", "view", "limit"}
    communes = css(selects["commune"], "option")
    assert len(communes) == 20  # "no filter" + the 19 communes
    assert [o.get("value") for o in communes if o.get("selected") is not None] == ["21015"]
    assert "Schaarbeek" in [text_of(o) for o in communes]
    assert len(css(selects["sector"], "option")) == 22
    assert len(css(selects["category"], "option")) > 100
    assert [o.get("value") for o in css(selects["view"], "option[selected]")] == ["list"]
    hidden = {i.get("name"): i.get("value") for i in css(form, "input[type='hidden']")}
    assert hidden == {"postcode": "1030"}  # other criteria are kept
    code = css(doc, "textarea#snippet-code")[0]
    assert code.get("readonly") is not None and code.get("aria-labelledby") == "code-h"
    snippet = lxml.html.fragment_fromstring(code.text_content())
    assert snippet.tag == "iframe"
    src = snippet.get("src")
    assert src == "http://testserver/embed/organisations?commune=21015&postcode=1030&lang=nl&view=list"
    assert snippet.get("title") == "Sociale kaart van Brussel: Gemeente: Schaarbeek; Postcode: 1030"
    assert css(doc, "button.copy")[0].get("hidden") is not None  # shown by embed.js only
    preview = css(doc, "iframe.preview")[0]
    assert preview.get("src") == src.removeprefix("http://testserver") and preview.get("title")
    embedded, _ = page(client, src.removeprefix("http://testserver"))
    assert embedded.status_code == 200


def test_snippet_generator_filters_categories_by_sector_and_speaks_french(client):
    _, doc = page(client, "/embed?sector=53&lang=fr")
    assert text_of(css(doc, "h1")[0]) == "Intégrer une liste de la carte sociale"
    all_categories = client.get("/v1/categories?sector=53&limit=1000").json()["count"]
    assert len(css(doc, "select[name='category'] option")) == all_categories + 1
    assert [o.get("value") for o in css(doc, "select[name='sector'] option[selected]")] == ["53"]
    _, doc = page(client, "/embed?commune=21015,21004&lang=fr")
    chosen = css(doc, "select[name='commune'] option[selected]")
    assert [o.get("value") for o in chosen] == ["21015,21004"]


# ---------------------------------------------------------------- a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live_server(settings, loaded: Engine) -> Iterator[str]:
    """The application under a real uvicorn server (in a thread) on a free port, on the test database."""
    import uvicorn

    from app.main import create_app

    port = _free_port()
    app = create_app(settings.model_copy(update={"public_base_url": None}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="embed-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def chromium(tmp_path: Path, *args: str, timeout: float = 90) -> str:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    profile = tmp_path / f"chromium-profile-{time.monotonic_ns()}"
    run = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def rendered(tmp_path: Path, url: str):
    dom = chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", url)
    assert "<html" in dom, dom[:500]
    return lxml.html.document_fromstring(dom)


def png_facts(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the decompressed pixel rows) of a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, width, height, idat = 8, 0, 0, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


def test_browser_renders_entries_map_and_runs_the_script(live_server: str, client, tmp_path: Path):
    doc = rendered(tmp_path, f"{live_server}/embed/organisations?commune=21015&lang=nl&limit=100")
    root = doc.getroottree().getroot()
    assert root.get("lang") == "nl"
    assert "js" in (root.get("class") or "").split()  # embed.js loaded and ran under the page's CSP
    ids = entries(doc)
    assert ids == v1_ids(client, "commune=21015&lang=nl&limit=100") and RECORD in ids
    item = doc.get_element_by_id(f"org-{RECORD}")
    assert text_of(css(item, "h3")[0]) == NAMES["nl"] and STREETS["nl"] in text_of(item)
    svg = css(doc, "svg.map")[0]
    assert len(css(svg, "path.commune")) == 19
    assert len(css(svg, "a.pt circle")) == len([i for i in ids if css(doc, f"a.to-map[href='#pt-{i}']")])
    assert doc.get_element_by_id(f"pt-{RECORD}").get("href") == f"#org-{RECORD}"


def test_browser_language_switch(live_server: str, tmp_path: Path):
    nl = rendered(tmp_path, f"{live_server}/embed/organisations?commune=21015&lang=nl&limit=100")
    link = css(nl, "nav[aria-label='Taal'] a[hreflang='fr']")[0]
    fr = rendered(tmp_path, urljoin(f"{live_server}/embed/organisations", link.get("href")))
    assert fr.getroottree().getroot().get("lang") == "fr"
    assert text_of(css(nl, "h1")[0]) == "Sociale kaart van Brussel"
    assert text_of(css(fr, "h1")[0]) == "Carte sociale de Bruxelles"
    assert [text_of(h) for h in css(fr, "h2")] == ["Organisations", "Carte"]
    assert text_of(css(fr, "a.skip-link")[0]) == "Aller à la liste"
    assert sorted(entries(fr)) == sorted(entries(nl))  # same organisations, sorted by the French names
    item = fr.get_element_by_id(f"org-{RECORD}")
    assert text_of(css(item, "h3")[0]) == NAMES["fr"]
    assert [text_of(dt) for dt in css(item, "dt")] == ["Adresse", "Téléphone"]
    assert {text_of(dt) for dt in css(fr, "ol.orgs dt")} == {"Adresse", "Téléphone", "Catégories"}
    assert {text_of(dt) for dt in css(nl, "ol.orgs dt")} == {"Adres", "Telefoon", "Categorieën"}
    back = css(fr, "nav[aria-label='Langue'] a[hreflang='nl']")[0]
    assert parse_qs(urlsplit(back.get("href")).query)["lang"] == ["nl"]


@pytest.mark.parametrize(
    "name, query",
    [
        ("embed-both-nl", "/embed/organisations?commune=21015&lang=nl"),
        ("embed-list-fr", "/embed/organisations?commune=21015&lang=fr&view=list"),
        ("embed-map-fr", "/embed/organisations?sector=53&lang=fr&view=map&limit=100"),
        ("embed-snippet-nl", "/embed?commune=21015&lang=nl"),
    ],
)
def test_browser_screenshots(live_server: str, tmp_path: Path, name: str, query: str):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    shot.unlink(missing_ok=True)
    chromium(tmp_path, "--virtual-time-budget=5000", f"--screenshot={shot}", "--window-size=1024,768", f"{live_server}{query}")
    assert shot.exists() and shot.stat().st_size > 20_000
    width, height, distinct = png_facts(shot)
    assert (width, height) == (1024, 768)
    assert distinct > 64  # text, lines and colours: not a blank page
