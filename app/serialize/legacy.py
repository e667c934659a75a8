"""The legacy social.brussels ``/rest/organisation/{id}`` shape, key for key and in the same order
as the captured record (``lastUpdate`` as dd/mm/yy, integer ``zipCode``, arrays never null)."""

from __future__ import annotations

from ..identifiers import belgian_official_journal_url


def _number(value: float | None):
    """Lambert 72 metres were integers in the legacy API; keep integral values integral."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def _date(value) -> str | None:
    return value.strftime("%d/%m/%y") if value else None


def organisation(row: dict) -> dict:
    numbers = row["enterprise_numbers"] or []
    legal = row.get("legal_status")
    municipality_fr, municipality_nl, zip_code = row["commune_fr"], row["commune_nl"], row["postcode"]
    categories = row.get("categories") or []
    sectors = row.get("sectors") or []
    return {
        "id": row["id"],
        "legalStatus": {"id": legal["id"], "labelFr": legal["label_fr"], "labelNl": legal["label_nl"]} if legal else None,
        "isInterpreting": row["is_interpreting"],
        "address": {
            "id": row["address_id"],
            "x": _number(row["x_31370"]),
            "y": _number(row["y_31370"]),
            "lon": row["lon"],
            "lat": row["lat"],
            "municipalityFr": municipality_fr,
            "municipalityNl": municipality_nl,
            "streetFr": row["street_fr"],
            "streetNl": row["street_nl"],
            "number": row["number"],
            "numberBuilding": row["number_building"],
            "zipCode": zip_code,
            "postalBox": row["postal_box"],
            "postalCodeFr": f"{zip_code} {municipality_fr}" if zip_code and municipality_fr else None,
            "postalCodeNl": f"{zip_code} {municipality_nl}" if zip_code and municipality_nl else None,
            "districtFr": row["quartier_fr"],
            "districtNl": row["quartier_nl"],
            "districtCode": row["quartier_code"],
            "statisticsCode": row["statistical_sector_code"],
            "remarkFr": row["address_remark_fr"],
            "remarkNl": row["address_remark_nl"],
            "statisticsNameFr": row["statistical_sector_fr"],
            "statisticsNameNl": row["statistical_sector_nl"],
        },
        "categories": None,
        "categoriesObject": [{"id": c["id"], "titleFr": c["title_fr"], "titleNl": c["title_nl"]} for c in categories],
        "sectorsObjects": [{"id": s["id"], "titleFr": s["title_fr"], "titleNl": s["title_nl"]} for s in sectors] or None,
        "nameOfficialFr": row["name_official_fr"],
        "nameOfficialNl": row["name_official_nl"],
        "descriptionFr": row["description_fr"],
        "descriptionNl": row["description_nl"],
        "activitiesFr": row["activities_fr"],
        "activitiesNl": row["activities_nl"],
        "accessFr": row["access_fr"],
        "accessNl": row["access_nl"],
        "permanencyFr": row["permanency_fr"],
        "permanencyNl": row["permanency_nl"],
        "publicFr": row["public_fr"],
        "publicNl": row["public_nl"],
        "publicationFr": row["publication_fr"],
        "publicationNl": row["publication_nl"],
        "remarkFr": row["remark_fr"],
        "remarkNl": row["remark_nl"],
        "pmRp": numbers,
        "langStatus": row["lang_status"],
        "lastUpdate": _date(row["last_update"]),
        "startDate": _date(row["start_date"]),
        "type": row["legacy_type"],
        "nameAlternativeFr": row["name_alternative_fr"],
        "nameAlternativeNl": row["name_alternative_nl"],
        "nameFormerFr": row["name_former_fr"],
        "nameFormerNl": row["name_former_nl"],
        "nameServiceFr": row["name_service_fr"],
        "nameServiceNl": row["name_service_nl"],
        "telFr": row["phone_fr"],
        "telNl": row["phone_nl"],
        "emailFr": row["email_fr"],
        "emailNl": row["email_nl"],
        "faxFr": row["fax_fr"],
        "faxNl": row["fax_nl"],
        "websiteOfficialFr": row["website_official_fr"],
        "websiteOfficialNl": row["website_official_nl"],
        "websiteUnofficialFr": row["website_unofficial_fr"],
        "websiteUnofficialNl": row["website_unofficial_nl"],
        "websiteBelgianOfficialJournalFr": [belgian_official_journal_url(n, "fr") for n in numbers],
        "websiteBelgianOfficialJournalNl": [belgian_official_journal_url(n, "nl") for n in numbers],
        "websiteInfoFr": row["website_info_fr"],
        "websiteInfoNl": row["website_info_nl"],
        "otherAgreementFr": row["other_accreditation_fr"],
        "otherAgreementNl": row["other_accreditation_nl"],
        "subventionFr": row["subsidy_fr"],
        "subventionNl": row["subsidy_nl"],
    }


# ---------------------------------------------------------------- lookup lists (the 2019 list shapes)
#
# Each function shapes one row of ``app.search.legacy`` into the object of the matching 2019 capture,
# key for key and in the same order. Lists are never null.


def sector(row: dict) -> dict:
    """One object of ``/rest/sectors`` (sectors.json)."""
    return {
        "id": row["id"],
        "titleFr": row["title_fr"],
        "titleNl": row["title_nl"],
        "descriptionFr": row["description_fr"],
        "descriptionNl": row["description_nl"],
        "order": row["position"],
    }


def category(row: dict) -> dict:
    """One object of ``/rest/search/category`` (categories.json); ``organisationsCount`` is the current
    number of published organisations a ``categories=<id>`` search finds."""
    return {
        "id": row["id"],
        "titleFr": row["title_fr"],
        "titleNl": row["title_nl"],
        "descriptionFr": row["description_fr"],
        "descriptionNl": row["description_nl"],
        "urlsFr": list(row["urls_fr"] or []),
        "urlsNl": list(row["urls_nl"] or []),
        "keywordsFr": list(row["keywords_fr"] or []),
        "keywordsNl": list(row["keywords_nl"] or []),
        "order": row["position"],
        "organisationsCount": row["organisation_count"],
    }


def sector_detail(row: dict, categories: list[dict]) -> dict:
    """``/rest/sector/{id}``: the sectors.json object followed by ``categories`` (categories.json shape)."""
    return {**sector(row), "categories": [category(c) for c in categories]}


def path_step(row: dict) -> dict:
    """One step of a ``/rest/sector/{id}/paths`` path (the sector first, then categories)."""
    return {"id": row["id"], "titleFr": row["title_fr"], "titleNl": row["title_nl"]}


def authority(row: dict) -> dict:
    """One object of ``/rest/agreementpowers`` (accreditors.json)."""
    return {"id": row["id"], "nameFr": row["name_fr"], "nameNl": row["name_nl"]}


def accreditation(row: dict) -> dict:
    """One object of ``/rest/agreements`` (accreditations.json)."""
    power = None
    if row["authority_id"] is not None:
        power = {"id": row["authority_id"], "nameFr": row["authority_fr"], "nameNl": row["authority_nl"]}
    return {
        "id": row["id"],
        "labelFr": row["label_fr"],
        "labelNl": row["label_nl"],
        "agreementPower": power,
        "agreementPowerId": row["authority_id"],
    }


def labelled(row: dict) -> dict:
    """One object of ``/rest/legalstatus`` (legal-status.json) or ``/rest/offertypes`` (service-types.json)."""
    return {"id": row["id"], "labelFr": row["label_fr"], "labelNl": row["label_nl"]}


def language(row: dict) -> dict:
    """One object of ``/rest/languageoffer`` (languages.json)."""
    return {"id": row["id"], "nameFr": row["name_fr"], "nameNl": row["name_nl"]}


def action_zone(row: dict) -> dict:
    """One object of ``/rest/actionzones`` (zones.json). ``parents`` was null on every 2019 zone and stays
    null: the parent communes Bruso derives from the reference layers are not legacy data."""
    return {"id": row["id"], "parents": None, "labelFr": row["label_fr"], "labelNl": row["label_nl"]}
