"""JSON shapes of the reference endpoints (sectors, categories, lookup lists, districts, suggestions,
statistics), bilingual by default, and their one-language form.

A label is a ``{"nl": ..., "fr": ...}`` pair. ``in_language`` turns every pair into the value of the
asked language; where that value is missing (NULL, empty string or empty list) and the other
language has one, the other value is used and the object holding the label says so with
``"fallback_lang": "<other>"`` and ``"fallback_fields": [<keys>]`` — never silently.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

LANGS = ("nl", "fr")
_MISSING = (None, "", [])


def _value(v):
    return None if v == "" else v


def pair(row: dict, stem: str) -> dict:
    """``{"nl": row[stem_nl], "fr": row[stem_fr]}`` (empty strings become null)."""
    return {"nl": _value(row.get(f"{stem}_nl")), "fr": _value(row.get(f"{stem}_fr"))}


def _is_pair(value) -> bool:
    return isinstance(value, dict) and value.keys() == {"nl", "fr"}


def localise(doc, lang: str):
    """The document with every bilingual pair replaced by its ``lang`` value (see module doc)."""
    other = "fr" if lang == "nl" else "nl"
    if isinstance(doc, list):
        return [localise(v, lang) for v in doc]
    if not isinstance(doc, dict) or isinstance(doc, orjson.Fragment):
        return doc
    out = {}
    fell_back: list[str] = []
    for key, value in doc.items():
        if _is_pair(value):
            chosen = value[lang]
            if chosen in _MISSING and value[other] not in _MISSING:
                chosen = value[other]
                fell_back.append(key)
            out[key] = chosen
        else:
            out[key] = localise(value, lang)
    if fell_back:
        out["fallback_lang"] = other
        out["fallback_fields"] = fell_back
    return out


def in_language(body: dict, lang: str | None) -> dict:
    if lang is None:
        return body
    return {**localise(body, lang), "lang": lang}


# ---------------------------------------------------------------- taxonomy


def sector(row: dict, base_url: str) -> dict:
    return {
        "id": row["id"],
        "title": pair(row, "title"),
        "description": pair(row, "description"),
        "position": row["position"],
        "organisation_count": row["organisation_count"],
        "tree_inferred": bool(row["tree_inferred"]),
        "url": f"{base_url}/v1/sectors/{row['id']}",
    }


def category_tree(rows: Iterable[dict]) -> list[dict]:
    """Nested nodes from flat placements (rows ordered by position): top level where the parent is
    NULL, or not placed in this sector, or unreachable (a cycle) — nothing is dropped."""
    rows = list(rows)
    nodes = {
        r["id"]: {
            "id": r["id"],
            "title": pair(r, "title"),
            "organisation_count": r["organisation_count"],
            "inferred": bool(r["inferred"]),
            "parent_id": r["parent_category_id"],
            "children": [],
        }
        for r in rows
    }
    roots: list[dict] = []
    placed: set[int] = set()

    def attach(node_id: int, into: list[dict]) -> None:
        placed.add(node_id)
        into.append(nodes[node_id])
        for child in children.get(node_id, []):
            if child not in placed:
                attach(child, nodes[node_id]["children"])

    children: dict[int, list[int]] = {}
    for r in rows:
        if r["parent_category_id"] is not None and r["parent_category_id"] in nodes:
            children.setdefault(r["parent_category_id"], []).append(r["id"])
    for r in rows:
        if r["parent_category_id"] is None or r["parent_category_id"] not in nodes:
            attach(r["id"], roots)
    for r in rows:  # members of a cycle: shown at the top rather than lost
        if r["id"] not in placed:
            nodes[r["id"]]["parent_id"] = None
            attach(r["id"], roots)
    return roots


def category(row: dict, base_url: str) -> dict:
    doc = {
        "id": row["id"],
        "title": pair(row, "title"),
        "description": pair(row, "description"),
        "keywords": {"nl": list(row["keywords_nl"] or []), "fr": list(row["keywords_fr"] or [])},
        "sectors": list(row["sectors"] or []),
        "organisation_count": row["organisation_count"],
        "url": f"{base_url}/v1/categories/{row['id']}",
    }
    if row.get("score"):
        doc["score"] = row["score"]
    return doc


def category_detail(row: dict, paths: list[dict], base_url: str) -> dict:
    doc = category(row, base_url)
    doc.pop("score", None)
    doc["urls"] = {"nl": list(row["urls_nl"] or []), "fr": list(row["urls_fr"] or [])}
    doc["sector_paths"] = [
        {
            "sector_id": p["sector_id"],
            "sector_title": pair(p, "title"),
            "path": list(p["path"]),
            "inferred": bool(p["inferred"]),
        }
        for p in paths
    ]
    return doc


# ---------------------------------------------------------------- lookup lists


def accreditation(row: dict) -> dict:
    return {
        "id": row["id"],
        "label": pair(row, "label"),
        "authority": (
            {"id": row["authority_id"], "name": pair(row, "authority")} if row["authority_id"] is not None else None
        ),
        "legislation_url": row["legislation_url"],
    }


def authority(row: dict) -> dict:
    return {"id": row["id"], "name": pair(row, "name"), "accreditation_count": row["accreditation_count"]}


def action_zone(row: dict) -> dict:
    return {
        "id": row["id"],
        "label": pair(row, "label"),
        "kind": row["kind"],
        "commune_nis": row["commune_nis"],
        "quartier_code": row["quartier_code"],
        "parent_id": row["parent_id"],
    }


def labelled(row: dict, stem: str) -> dict:
    return {"id": row["id"], stem: pair(row, stem)}


# ---------------------------------------------------------------- districts

DISTRICT_KEYS = {"commune": "nis_code", "quartier": "code", "statistical_sector": "code"}


def district(row: dict, kind: str) -> dict:
    doc = {DISTRICT_KEYS[kind]: row["code"], "name": pair(row, "name")}
    if kind == "statistical_sector":
        doc["commune_nis"] = row["commune_nis"]
        doc["quartier_code"] = row["quartier_code"]
    else:
        doc["area_km2"] = row["area_km2"]
    doc["organisation_count"] = row["organisation_count"]
    return doc


def geometry(text: str | None):
    """PostGIS' GeoJSON text embedded verbatim (already valid JSON), or null."""
    return orjson.Fragment(text) if text is not None else None


def feature(feature_id, geometry_text: str | None, properties: dict) -> dict:
    return {"type": "Feature", "id": feature_id, "geometry": geometry(geometry_text), "properties": properties}


def feature_collection(features: list[dict], **members) -> dict:
    return {"type": "FeatureCollection", **members, "features": features}


# ---------------------------------------------------------------- suggestions and statistics


def suggestion(row: dict) -> dict:
    key = row["id"] if row["type"] in ("commune", "quartier") else int(row["id"])
    return {"type": row["type"], "id": key, "label": pair(row, "label"), "score": row["score"]}


def stat(row: dict) -> dict:
    return {"key": row["key"], "label": pair(row, "label"), "count": row["count"]}
