"""The native v1 JSON shape of an organisation: bilingual, every field of the record."""

from __future__ import annotations

from ..identifiers import belgian_official_journal_url


def _pair(row: dict, stem: str) -> dict:
    return {"nl": row.get(f"{stem}_nl"), "fr": row.get(f"{stem}_fr")}


def _labels(item: dict, stem: str) -> dict:
    return {"nl": item.get(f"{stem}_nl"), "fr": item.get(f"{stem}_fr")}


def organisation(row: dict, base_url: str) -> dict:
    numbers = row["enterprise_numbers"] or []
    x, y = row["x_31370"], row["y_31370"]
    return {
        "id": row["id"],
        "uuid": str(row["uuid"]),
        "url": f"{base_url}/v1/organisations/{row['id']}",
        "name": _pair(row, "name_official"),
        "alternative_names": _pair(row, "name_alternative"),
        "former_names": _pair(row, "name_former"),
        "service_names": _pair(row, "name_service"),
        "description": _pair(row, "description"),
        "activities": _pair(row, "activities"),
        "target_public": _pair(row, "public"),
        "opening_hours": _pair(row, "permanency"),
        "remark": _pair(row, "remark"),
        "access_modes": _pair(row, "access"),
        "publications": _pair(row, "publication"),
        "other_accreditations": _pair(row, "other_accreditation"),
        "subsidies": _pair(row, "subsidy"),
        "contact": {
            "phones": _pair(row, "phone"),
            "faxes": _pair(row, "fax"),
            "emails": _pair(row, "email"),
            "websites": {
                "official": _pair(row, "website_official"),
                "unofficial": _pair(row, "website_unofficial"),
                "info": _pair(row, "website_info"),
            },
        },
        "enterprise_numbers": [
            {
                "number": n,
                "belgian_official_journal": {
                    "nl": belgian_official_journal_url(n, "nl"),
                    "fr": belgian_official_journal_url(n, "fr"),
                },
            }
            for n in numbers
        ],
        "legal_status": (
            {"id": row["legal_status"]["id"], "label": _labels(row["legal_status"], "label")}
            if row.get("legal_status")
            else None
        ),
        "lang_status": row["lang_status"],
        "is_interpreting": row["is_interpreting"],
        "type": row["legacy_type"],
        "sectors": [{"id": s["id"], "title": _labels(s, "title"), "inferred": s["inferred"]} for s in row["sectors"]],
        "categories": [{"id": c["id"], "title": _labels(c, "title")} for c in row["categories"]],
        "accreditations": [
            {
                "id": a["id"],
                "label": _labels(a, "label"),
                "authority": (
                    {"id": a["authority"]["id"], "name": _labels(a["authority"], "name")} if a.get("authority") else None
                ),
            }
            for a in row["accreditations"]
        ],
        "offered_languages": [{"id": x["id"], "name": _labels(x, "name")} for x in row["languages"]],
        "offer_types": [{"id": x["id"], "label": _labels(x, "label")} for x in row["offer_types"]],
        "action_zones": [{"id": z["id"], "label": _labels(z, "label"), "kind": z["kind"]} for z in row["action_zones"]],
        "start_date": row["start_date"].isoformat() if row["start_date"] else None,
        "last_update": row["last_update"].isoformat() if row["last_update"] else None,
        "address": {
            "street": _pair(row, "street"),
            "number": row["number"],
            "building_number": row["number_building"],
            "box": row["postal_box"],
            "postcode": row["postcode"],
            "commune": {
                "nis_code": row["commune_nis"],
                "name": row["commune_ref"] or {"nl": None, "fr": None},
                "name_as_given": _pair(row, "commune"),
            },
            "quartier": {"code": row["quartier_code"], "name": _pair(row, "quartier")},
            "statistical_sector": {"code": row["statistical_sector_code"], "name": _pair(row, "statistical_sector")},
            "lambert72": {"x": x, "y": y} if x is not None else None,
            "wgs84": {"lon": row["lon"], "lat": row["lat"]} if row["lon"] is not None else None,
            "remark": _pair(row, "address_remark"),
        },
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


LANGS = ("nl", "fr")
ORGANISATION_FIELDS = (
    "id", "uuid", "url", "name", "alternative_names", "former_names", "service_names", "description", "activities",
    "target_public", "opening_hours", "remark", "access_modes", "publications", "other_accreditations", "subsidies",
    "contact", "enterprise_numbers", "legal_status", "lang_status", "is_interpreting", "type", "sectors", "categories",
    "accreditations", "offered_languages", "offer_types", "action_zones", "start_date", "last_update", "address",
    "created_at", "updated_at", "distance_m", "score", "lang", "lang_fallbacks",
)


def localise(doc, lang: str, path: str = "", fallbacks: dict | None = None):
    """Turn every bilingual ``{"nl", "fr"}`` pair into the value of ``lang``.

    Where that language has no value and the other has, the other's value is used and the field's
    path is recorded in ``fallbacks`` (served as ``lang_fallbacks``): never a silent fallback.
    """
    if isinstance(doc, dict):
        if doc.keys() == {"nl", "fr"}:
            value = doc[lang]
            other = "fr" if lang == "nl" else "nl"
            if value in (None, [], "") and doc[other] not in (None, [], ""):
                if fallbacks is not None:
                    fallbacks[path] = other
                return doc[other]
            return value
        return {k: localise(v, lang, f"{path}.{k}" if path else k, fallbacks) for k, v in doc.items()}
    if isinstance(doc, list):
        return [localise(v, lang, f"{path}[{i}]", fallbacks) for i, v in enumerate(doc)]
    return doc


def in_language(doc: dict, lang: str | None) -> dict:
    """The bilingual document, or its one-language form with ``lang`` and ``lang_fallbacks``."""
    if lang is None:
        return doc
    fallbacks: dict[str, str] = {}
    out = localise(doc, lang, "", fallbacks)
    out["lang"] = lang
    out["lang_fallbacks"] = fallbacks
    return out
