"""Infer the thematic tree (sector → rubric → category) when the source gives none.

The 2019 captures of the legacy API list sectors and categories but not the tree that links them.
Until a tree file is loaded, Bruso derives one, deterministically, from the texts themselves:

* each category goes under the sector whose NL+FR title and description are most similar (cosine
  of idf-weighted word stems) with the category's titles, keywords and description (words weighted by how
  few sectors use them); a second sector is kept when it scores at least 75 % of the best;
* categories with no shared word take the sector of the nearest category id that has one (legacy
  ids were handed out sector by sector);
* inside a sector, category A becomes the rubric above B when A's title words are a strict subset
  of B's (e.g. "Accompagnement au logement" above "Accompagnement au logement pour personnes
  précarisées").

Every placement made here is stored with ``inferred = true`` and said so by the API.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

from .text import fold

_WORD = re.compile(r"[a-z]{4,}")
_STOP = set(
    """
    avec dans pour sans leur leurs entre vers chez sont etre plus tous toute toutes autres autre comme
    aussi mais dont elle elles nous vous ceux celle cette ces des les une aux par sur qui que quoi
    voor door naar niet zijn wordt worden deze zoals ook maar alle andere hun waar over onder tussen
    bij met van het een die dat wat hulp aide aides service services dienst diensten centre centra
    centrum centres personnes mensen organisations organisaties secteur sector activites activiteiten
    """.split()
)


def words(text: str | None) -> set[str]:
    """Distinctive word stems (first 6 letters) of a text, accents and case folded."""
    return {w[:6] for w in _WORD.findall(fold(text)) if w not in _STOP}


def _profile(weighted: Iterable[tuple[str | None, float]]) -> Counter:
    profile: Counter = Counter()
    for text, weight in weighted:
        for w in words(text):
            profile[w] = max(profile[w], weight)
    return profile


def infer_tree(sectors: list[dict], categories: list[dict]) -> list[dict]:
    """Rows for ``category_tree``: sector_id, category_id, parent_category_id, position, inferred."""
    sector_profiles = {
        s["id"]: _profile(
            [(s.get("title_fr"), 3), (s.get("title_nl"), 3), (s.get("description_fr"), 1), (s.get("description_nl"), 1)]
        )
        for s in sectors
    }
    df = Counter(w for p in sector_profiles.values() for w in p)
    idf = {w: math.log((1 + len(sectors)) / n) for w, n in df.items()}
    # cosine-style normalisation: long sector descriptions must not attract every category
    norms = {sid: math.sqrt(sum((wt * idf[w]) ** 2 for w, wt in sp.items())) or 1.0 for sid, sp in sector_profiles.items()}

    placements: dict[int, list[int]] = {}
    for c in categories:
        cp = _profile(
            [
                (c.get("title_fr"), 3), (c.get("title_nl"), 3),
                (" ".join(c.get("keywords_fr") or []), 2), (" ".join(c.get("keywords_nl") or []), 2),
                (c.get("description_fr"), 1), (c.get("description_nl"), 1),
            ]
        )
        scores = {
            sid: sum(cp[w] * sp[w] * idf[w] ** 2 for w in cp.keys() & sp.keys()) / norms[sid]
            for sid, sp in sector_profiles.items()
        }
        best = max(scores.values(), default=0)
        if best > 0:
            ranked = sorted(scores, key=lambda sid: (-scores[sid], sid))
            placements[c["id"]] = [sid for sid in ranked[:2] if scores[sid] >= 0.75 * best]

    placed_ids = sorted(placements)
    for c in categories:
        if c["id"] not in placements and placed_ids:
            nearest = min(placed_ids, key=lambda i: (abs(i - c["id"]), i))
            placements[c["id"]] = placements[nearest][:1]

    titles = {c["id"]: words(c.get("title_fr")) | words(c.get("title_nl")) for c in categories}
    order = {c["id"]: (c.get("position") or 0, c["id"]) for c in categories}
    by_sector: dict[int, list[int]] = {}
    for cid, sids in placements.items():
        for sid in sids:
            by_sector.setdefault(sid, []).append(cid)

    rows = []
    for sid, cids in sorted(by_sector.items()):
        for position, cid in enumerate(sorted(cids, key=order.__getitem__)):
            parents = [p for p in cids if p != cid and titles[p] and titles[p] < titles[cid]]
            parent = max(parents, key=lambda p: (len(titles[p]), -p)) if parents else None
            rows.append(
                {"sector_id": sid, "category_id": cid, "parent_category_id": parent, "position": position, "inferred": True}
            )
    return rows
