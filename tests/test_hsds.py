"""Open Referral HSDS 3.0 (/hsds/nl, /hsds/fr) and the Bruso HSDS profile (/hsds/profile).

Every body is validated against the HSDS 3.0 schemas of the reference standards directory (the
compiled ones for organizations, services and services at locations, the taxonomy ones through a
``referencing`` registry of the local files) with format checks (uuid, email, uri, date-time).
Filters are compared with the /v1/organisations search of the same meaning, counts with SQL.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from functools import cache
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy import text

from app.hsds import PROFILE_DIR, ids
from app.hsds.openapi import ENDPOINTS, PROFILE_FILTERS
from app.hsds.vocabulary import TAXONOMIES
from app.search import RECORD_SQL
from app.serialize.hsds import Shaper, clean_email, clean_url
from tests.conftest import REFERENCE_DIR

STANDARDS = REFERENCE_DIR.parent / "standards" / "hsds-3.0"
SCHEMA_DIR = STANDARDS / "schema"
PROBLEM = "application/problem+json"
NDJSON = "application/x-ndjson"
LANGS = ("nl", "fr")
PAGE_KEYS = ["total_items", "total_pages", "page_number", "size", "first_page", "last_page", "empty", "contents"]
FALLBACK_CATEGORY = 990_101
FALLBACK_TITLE = "Catégorie HSDS uniquement française"

# ---------------------------------------------------------------- schemas and validators

# Formats as HSDS means them, and e-mail stricter than jsonschema's "contains an @".
STRICT_EMAIL = re.compile(r"[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
CHECKER = FormatChecker(formats=("uuid", "email", "uri", "date-time"))
CHECKER.checks("email")(lambda value: not isinstance(value, str) or bool(STRICT_EMAIL.fullmatch(value)))


def read_schema(name: str, directory: Path = SCHEMA_DIR) -> dict:
    return json.loads((directory / name).read_text(encoding="utf-8"))


def registry(patched: dict[str, dict] | None = None) -> Registry:
    """The HSDS schema files by file name (their ``$ref``s are relative file names)."""
    contents = {p.name: read_schema(p.name) for p in SCHEMA_DIR.glob("*.json") if not p.name.startswith("openapi")}
    contents.update(patched or {})
    return Registry().with_resources(
        (name, Resource.from_contents(schema, default_specification=DRAFT202012)) for name, schema in contents.items()
    )


@cache
def validator(name: str) -> Draft202012Validator:
    """compiled/<x>.json, or one of the plain schema files (taxonomy.json, taxonomy_term.json)."""
    directory = SCHEMA_DIR / "compiled" if (SCHEMA_DIR / "compiled" / name).exists() else SCHEMA_DIR
    return Draft202012Validator(read_schema(name, directory), registry=registry(), format_checker=CHECKER)


@cache
def openapi_reference() -> dict:
    return read_schema("openapi.json")


@cache
def page_validator(item: str) -> Draft202012Validator:
    page = openapi_reference()["components"]["schemas"]["Page"]
    schema = {"allOf": [page], "required": PAGE_KEYS,
              "properties": {"contents": {"type": "array", "items": validator(item).schema}}}
    return Draft202012Validator(schema, registry=registry(), format_checker=CHECKER)


@cache
def root_validator() -> Draft202012Validator:
    schema = openapi_reference()["paths"]["/"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    return Draft202012Validator({**schema, "required": ["version", "profile", "openapi_url"]}, format_checker=CHECKER)


def assert_valid(v: Draft202012Validator, body, what: str = "") -> None:
    errors = sorted(v.iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, f"{what}: " + "; ".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])


# list path → (item schema, full item schema, detail schema)
RECORD_LISTS = {
    "services": ("service_list.json", "service.json"),
    "organizations": ("organization_list.json", "organization.json"),
    "service_at_locations": ("service_at_location_list.json", "service_at_location.json"),
}

# ---------------------------------------------------------------- helpers


def ok(response, media_type: str = "application/json"):
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == media_type
    return response.json() if media_type == "application/json" else response.text


def problem(response, status: int, parameter: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if parameter is not None:
        assert body.get("parameter") == parameter, body
        assert parameter in body["detail"]
    return body


def sql(engine, query: str, **params) -> list:
    with engine.connect() as conn:
        return conn.execute(text(query), params).all()


def scalar(engine, query: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(query), params).scalar()


def v1_search(client, params: dict) -> tuple[list[str], int]:
    """UUIDs (in order) and numberMatched of the /v1/organisations search with ``params``."""
    body = ok(client.get("/v1/organisations", params={**params, "limit": 1000, "fields": "uuid"}))
    assert body["next_cursor"] is None, "more than one page: raise the limit"
    return [item["uuid"] for item in body["items"]], body["numberMatched"]


def hsds_page(client, lang: str, path: str, params: dict | None = None) -> dict:
    return ok(client.get(f"/hsds/{lang}/{path}", params={"per_page": 1000, **(params or {})}))


def organization_ids(client, lang: str, path: str, params: dict) -> tuple[list[str], int]:
    """Organisation UUIDs (in order) behind an HSDS list, and its total_items."""
    body = hsds_page(client, lang, path, params)
    assert body["total_pages"] <= 1
    if path == "organizations":
        found = [o["id"] for o in body["contents"]]
    elif path == "services":
        found = [s["organization_id"] for s in body["contents"]]
    else:
        found = [s["location"]["organization_id"] for s in body["contents"]]
    return found, body["total_items"]


def published_count(engine) -> int:
    return scalar(engine, "SELECT count(*) FROM organisation WHERE publication_state = 'published'")


def uuid_of(engine, legacy_id: int) -> str:
    return str(scalar(engine, "SELECT uuid FROM organisation WHERE id = :id", id=legacy_id))


# ---------------------------------------------------------------- crawl: every body validates


@pytest.mark.parametrize("lang", LANGS)
def test_crawl_validates_against_the_compiled_schemas(client, lang):
    root = ok(client.get(f"/hsds/{lang}/"))
    assert_valid(root_validator(), root, "root")
    assert root["version"] == "3.0"
    assert root["openapi_url"].endswith(f"/hsds/{lang}/openapi.json") and root["profile"].endswith("/hsds/profile")
    assert ok(client.get(f"/hsds/{lang}")) == root
    assert ok(client.get(root["openapi_url"].replace("http://testserver", "")))["openapi"].startswith("3.1")

    for path, (item, detail) in RECORD_LISTS.items():
        body = ok(client.get(f"/hsds/{lang}/{path}"))
        assert_valid(page_validator(item), body, path)
        assert body["contents"] and body["size"] == len(body["contents"]) == 50 and body["page_number"] == 1
        for first in body["contents"][:3]:
            assert_valid(validator(detail), ok(client.get(f"/hsds/{lang}/{path}/{first['id']}")), f"{path}/{{id}}")
        full = ok(client.get(f"/hsds/{lang}/{path}", params={"full": "true", "per_page": 20}))
        assert_valid(page_validator(detail), full, f"{path}?full=true")

    organization = ok(client.get(f"/hsds/{lang}/organizations"))["contents"][0]["id"]
    nested = ok(client.get(f"/hsds/{lang}/organizations/{organization}", params={"full_service": "true"}))
    assert_valid(validator("organization.json"), nested, "full_service")
    assert_valid(validator("service.json"), nested["services"][0], "full_service service")
    assert nested["services"][0]["phones"] is not None and nested["services"][0]["attributes"] is not None
    listed = ok(client.get(f"/hsds/{lang}/organizations", params={"full_service": "true", "per_page": 5}))
    assert_valid(page_validator("organization.json"), listed, "organizations?full_service=true")
    assert all(o["services"][0]["service_at_locations"] for o in listed["contents"])
    minimal = ok(client.get(f"/hsds/{lang}/services", params={"minimal": "true"}))
    assert_valid(page_validator("service_list.json"), minimal, "minimal")
    assert all(set(s) == {"id", "name", "status", "last_modified", "lang_fallbacks"} for s in minimal["contents"])
    assert minimal["size"] > 50  # minimal: every service in one page by default

    taxonomies = ok(client.get(f"/hsds/{lang}/taxonomies"))
    assert_valid(page_validator("taxonomy.json"), taxonomies, "taxonomies")
    assert taxonomies["total_items"] == len(TAXONOMIES) == len(taxonomies["contents"])
    for taxonomy in taxonomies["contents"]:
        assert_valid(validator("taxonomy.json"), ok(client.get(f"/hsds/{lang}/taxonomies/{taxonomy['id']}")), "taxonomy")
    terms = ok(client.get(f"/hsds/{lang}/taxonomy_terms"))
    assert_valid(page_validator("taxonomy_term.json"), terms, "taxonomy_terms")
    for term in terms["contents"][:5]:
        assert_valid(validator("taxonomy_term.json"), ok(client.get(f"/hsds/{lang}/taxonomy_terms/{term['id']}")), "term")


@pytest.mark.parametrize("lang", LANGS)
def test_every_record_validates_through_the_ndjson_streams(client, loaded, lang):
    """The whole directory as NDJSON, in every shape, each line against its compiled schema."""
    count = published_count(loaded)
    for path, (item, detail) in RECORD_LISTS.items():
        for params, schema in (({}, item), ({"full": "true"}, detail)):
            body = ok(client.get(f"/hsds/{lang}/{path}", params={"format": "ndjson", **params}), NDJSON)
            lines = body.splitlines()
            assert len(lines) == count, (path, params)
            docs = [orjson.loads(line) for line in lines]
            assert len({d["id"] for d in docs}) == count
            for doc in docs:
                assert_valid(validator(schema), doc, f"{path} {params} {doc['id']}")


def test_taxonomy_terms_all_validate(client):
    for lang in LANGS:
        text_ = ok(client.get(f"/hsds/{lang}/taxonomy_terms", params={"format": "ndjson"}), NDJSON)
        terms = [orjson.loads(line) for line in text_.splitlines()]
        for term in terms:
            assert_valid(validator("taxonomy_term.json"), term, term["code"])
        by_id = {t["id"]: t for t in terms}
        assert all(t["parent_id"] in by_id for t in terms if "parent_id" in t)


# ---------------------------------------------------------------- languages and identity


def test_same_uuids_in_both_languages_and_labels_differ(client, loaded):
    for path in ("organizations", "services", "service_at_locations"):
        nl = ok(client.get(f"/hsds/nl/{path}", params={"format": "ndjson"}), NDJSON)
        fr = ok(client.get(f"/hsds/fr/{path}", params={"format": "ndjson"}), NDJSON)
        nl_ids = {orjson.loads(line)["id"] for line in nl.splitlines()}
        assert nl_ids == {orjson.loads(line)["id"] for line in fr.splitlines()}
        assert len(nl_ids) == published_count(loaded)
        if path == "organizations":  # organization id = organisation.uuid
            assert nl_ids == {str(u) for (u,) in sql(loaded, "SELECT uuid FROM organisation WHERE publication_state = 'published'")}

    nl_terms = hsds_page(client, "nl", "taxonomy_terms", {"per_page": 1000, "taxonomy_id": ids.taxonomy_id("sector")})["contents"]
    fr_terms = hsds_page(client, "fr", "taxonomy_terms", {"per_page": 1000, "taxonomy_id": ids.taxonomy_id("sector")})["contents"]
    assert [t["id"] for t in nl_terms] == [t["id"] for t in fr_terms]
    titles = {str(i): (n, f) for i, n, f in sql(loaded, "SELECT id, title_nl, title_fr FROM sector")}
    assert len(nl_terms) == len(titles)
    for nl_term, fr_term in zip(nl_terms, fr_terms):
        assert (nl_term["name"], fr_term["name"]) == titles[nl_term["code"]]
        assert nl_term["language"] == "nl" and fr_term["language"] == "fr"
    assert any(n["name"] != f["name"] for n, f in zip(nl_terms, fr_terms))
    nl_tax = ok(client.get(f"/hsds/nl/taxonomies/{ids.taxonomy_id('commune')}"))
    fr_tax = ok(client.get(f"/hsds/fr/taxonomies/{ids.taxonomy_id('commune')}"))
    assert nl_tax["id"] == fr_tax["id"] and nl_tax["name"] != fr_tax["name"]


def test_record_13219(client, loaded):
    oid = uuid_of(loaded, 13219)
    docs = {lang: ok(client.get(f"/hsds/{lang}/organizations/{oid}", params={"full_service": "true"})) for lang in LANGS}
    for lang, doc in docs.items():
        assert_valid(validator("organization.json"), doc, lang)
        assert doc["id"] == oid
        assert doc["email"] == "cass@cpas-schaerbeek.be" and doc["website"] == "http://www.cass-cssa.be"
        assert doc["uri"] == "http://testserver/v1/organisations/13219"
        assert doc["organization_identifiers"] == [{
            "id": ids.child_id(oid, "identifier:0212.347.945"), "organization_id": oid, "identifier_scheme": "BE-BCE_KBO",
            "identifier_type": {"nl": "Ondernemingsnummer (KBO)", "fr": "Numéro d'entreprise (BCE)"}[lang],
            "identifier": "0212.347.945",
        }]
        assert [p["number"] for p in doc["phones"]] == ["02/435.51.38", "02/435.51.39"]
        assert [c["email"] for c in doc["contacts"]] == ["cass@cpas-schaerbeek.be"]
        assert doc["metadata"] == [] and doc["lang_fallbacks"] == {}
        (location,) = doc["locations"]
        assert abs(location["latitude"] - 50.85176) < 1e-4 and abs(location["longitude"] - 4.40144) < 1e-4
        (address,) = location["addresses"]
        assert address["postal_code"] == "1030" and address["country"] == "BE" and address["address_type"] == "physical"
        codes = {a["link_type"]: (a["value"], a["taxonomy_term"]["code"]) for a in location["attributes"]}
        assert codes == {"commune": ("21015", "21015"), "quartier": ("87", "87"), "statistical_sector": ("21015A77-", "21015A77-")}
        (service,) = doc["services"]
        assert service["id"] == str(ids.record_id(oid, "service")) and service["organization_id"] == oid
        assert service["service_at_locations"][0]["location_id"] == location["id"] == str(ids.record_id(oid, "location"))
        assert service["assured_date"] == "2020-08-28" and service["status"] == "active"
    nl, fr = docs["nl"], docs["fr"]
    assert nl["name"] == "COÖRDINATIE VAN DE SCHAARBEEKSE SOCIALE ACTIE" and fr["name"] == "COORDINATION DE L'ACTION SOCIALE DE SCHAERBEEK"
    assert nl["alternate_name"] == "CSSA" and fr["alternate_name"] == "CASS"
    assert nl["legal_status"] == "Openbare dienst - OCMW" and fr["legal_status"] == "Service public - CPAS"
    assert nl["locations"][0]["addresses"][0]["address_1"] == "Auguste Reyerslaan 70"
    assert fr["locations"][0]["addresses"][0]["address_1"] == "Boulevard Auguste Reyers 70"
    assert (nl["locations"][0]["addresses"][0]["city"], fr["locations"][0]["addresses"][0]["city"]) == ("Schaarbeek", "Schaerbeek")
    quartier = {lang: next(a for a in d["locations"][0]["attributes"] if a["link_type"] == "quartier") for lang, d in docs.items()}
    assert quartier["nl"]["taxonomy_term_id"] == quartier["fr"]["taxonomy_term_id"] == ids.term_id("quartier", "87")
    assert nl["services"][0]["schedules"][0]["description"] == "Van maandag tot vrijdag van 8.30 uur tot 16 uur"
    assert fr["services"][0]["schedules"][0]["description"] == "Du lundi au vendredi de 8h30 à 16h"
    assert nl["services"][0]["application_process"] == "Per e-mail; Telefonisch"
    assert fr["services"][0]["application_process"] == "Par e-mail; Par téléphone"
    assert fr["services"][0]["eligibility_description"].startswith("Toute organisation schaerbeekoise")
    # the same record through the other resources
    service = ok(client.get(f"/hsds/fr/services/{ids.record_id(oid, 'service')}"))
    assert service["organization"]["id"] == oid and service["name"] == fr["name"]
    sal = ok(client.get(f"/hsds/nl/service_at_locations/{ids.record_id(oid, 'service_at_location')}"))
    assert_valid(validator("service_at_location.json"), sal, "sal")
    assert sal["description"].startswith("- Samenwerking tussen het OCMW van Schaarbeek")
    assert sal["service"]["id"] == service["id"] and sal["location"]["id"] == str(ids.record_id(oid, "location"))


def test_a_missing_label_is_taken_from_the_other_language_and_flagged(client, loaded):
    legacy_id, name_fr = sql(loaded, """SELECT id, name_official_fr FROM organisation WHERE publication_state = 'published'
                                        AND name_official_nl IS NULL AND name_official_fr IS NOT NULL ORDER BY id LIMIT 1""")[0]
    oid = uuid_of(loaded, legacy_id)
    nl = ok(client.get(f"/hsds/nl/organizations/{oid}"))
    assert nl["name"] == name_fr and nl["lang_fallbacks"]["name"] == "fr"
    assert nl["services"][0]["lang_fallbacks"]["name"] == "fr"
    fr = ok(client.get(f"/hsds/fr/organizations/{oid}"))
    assert fr["name"] == name_fr and "name" not in fr["lang_fallbacks"]
    listed = hsds_page(client, "nl", "organizations", {"organization_id": oid})["contents"]
    assert listed[0]["lang_fallbacks"]["name"] == "fr"


@pytest.fixture
def french_only_category(loaded):
    with loaded.begin() as conn:
        conn.execute(text("INSERT INTO category (id, title_nl, title_fr, position) VALUES (:id, '', :fr, 9999)"),
                     {"id": FALLBACK_CATEGORY, "fr": FALLBACK_TITLE})
    try:
        yield ids.term_id("category", str(FALLBACK_CATEGORY))
    finally:
        with loaded.begin() as conn:
            conn.execute(text("DELETE FROM category WHERE id = :id"), {"id": FALLBACK_CATEGORY})


def test_a_term_without_a_label_in_the_language_says_so(client, french_only_category):
    nl = ok(client.get(f"/hsds/nl/taxonomy_terms/{french_only_category}"))
    assert_valid(validator("taxonomy_term.json"), nl, "term")
    assert nl["name"] == FALLBACK_TITLE and nl["language"] == "fr" and nl["lang_fallbacks"] == {"name": "fr"}
    fr = ok(client.get(f"/hsds/fr/taxonomy_terms/{french_only_category}"))
    assert fr["name"] == FALLBACK_TITLE and fr["language"] == "fr" and fr["lang_fallbacks"] == {}
    found = ok(client.get("/hsds/nl/taxonomy_terms", params={"search": "hsds uniquement francaise"}))["contents"]
    assert [t["id"] for t in found] == [french_only_category]


# ---------------------------------------------------------------- filters = the v1 search


def pick(engine, query: str):
    return scalar(engine, query)


def term(kind: str, code) -> str:
    return ids.term_id(kind, str(code))


@pytest.fixture(scope="module")
def picks(loaded) -> dict:
    """Real, well-used values of each criterion in the test directory."""
    most = "SELECT {col} FROM {table} GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
    return {
        "sector": pick(loaded, """SELECT t.sector_id FROM organisation_category oc JOIN category_tree t ON t.category_id = oc.category_id
                                  GROUP BY 1 ORDER BY count(DISTINCT oc.organisation_id) DESC, 1 LIMIT 1"""),
        "sector2": pick(loaded, """SELECT t.sector_id FROM organisation_category oc JOIN category_tree t ON t.category_id = oc.category_id
                                   GROUP BY 1 ORDER BY count(DISTINCT oc.organisation_id) DESC, 1 OFFSET 3 LIMIT 1"""),
        "category": pick(loaded, """SELECT t.parent_category_id FROM category_tree t JOIN organisation_category oc ON oc.category_id = t.category_id
                                    WHERE t.parent_category_id IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"""),
        "accreditation": pick(loaded, most.format(col="accreditation_id", table="organisation_accreditation")),
        "authority": pick(loaded, """SELECT a.authority_id FROM organisation_accreditation oa JOIN accreditation a ON a.id = oa.accreditation_id
                                     WHERE a.authority_id IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"""),
        "offer_type": pick(loaded, most.format(col="offer_type_id", table="organisation_offer_type")),
        "commune": pick(loaded, "SELECT commune_nis FROM organisation WHERE publication_state = 'published' GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"),
        "quartier": pick(loaded, "SELECT quartier_code FROM organisation WHERE publication_state = 'published' AND quartier_code IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"),
        "statistical_sector": pick(loaded, "SELECT statistical_sector_code FROM organisation WHERE publication_state = 'published' AND statistical_sector_code IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"),
        "offer_types": [r[0] for r in sql(loaded, "SELECT id FROM offer_type ORDER BY id")],
    }


def equivalences(p: dict) -> list[tuple[dict, dict]]:
    """(HSDS parameters, the /v1/organisations parameters that mean the same)."""
    return [
        ({"taxonomy_term_id": term("sector", p["sector"])}, {"sector": p["sector"]}),
        ({"taxonomy_term_id": f"{term('sector', p['sector'])},{term('sector', p['sector2'])}"}, {"sector": f"{p['sector']},{p['sector2']}"}),
        ({"taxonomy_term_id": term("category", p["category"])}, {"category": p["category"]}),
        ({"taxonomy_term_id": term("accreditation", p["accreditation"])}, {"accreditation": p["accreditation"]}),
        ({"taxonomy_term_id": term("authority", p["authority"])}, {"authority": p["authority"]}),
        ({"taxonomy_term_id": term("offer_type", p["offer_type"])}, {"offer_type": p["offer_type"]}),
        ({"taxonomy_term_id": term("commune", p["commune"])}, {"commune": p["commune"]}),
        ({"taxonomy_term_id": term("quartier", p["quartier"])}, {"quartier": p["quartier"]}),
        ({"taxonomy_term_id": term("statistical_sector", p["statistical_sector"])}, {"statistical_sector": p["statistical_sector"]}),
        ({"taxonomy_term_id": [term("sector", p["sector"]), term("commune", p["commune"])]}, {"sector": p["sector"], "commune": p["commune"]}),
        ({"taxonomy_id": ids.taxonomy_id("offer_type")}, {"offer_type": ",".join(map(str, p["offer_types"]))}),
        ({"sector": p["sector"]}, {"sector": p["sector"]}),
        ({"category": p["category"]}, {"category": p["category"]}),
        ({"accreditation": p["accreditation"]}, {"accreditation": p["accreditation"]}),
        ({"commune": p["commune"], "search": "ocmw"}, {"commune": p["commune"], "q": "ocmw"}),
        ({"quartier": p["quartier"]}, {"quartier": p["quartier"]}),
        ({"statistical_sector": p["statistical_sector"]}, {"statistical_sector": p["statistical_sector"]}),
        ({"postcode": "1030"}, {"postcode": "1030"}),
        ({"postcode": "1000,1030"}, {"postcode": "1000,1030"}),
        ({"search": "ocmw"}, {"q": "ocmw"}),
        ({"search": "creche"}, {"q": "creche"}),
        ({"proximity": "50.8466,4.3528,1000"}, {"near": "50.8466,4.3528", "radius": "1000"}),
        ({"proximity": "50.8466,4.3528", "radius": "1500"}, {"near": "50.8466,4.3528", "radius": "1500"}),
        ({"modified_after": "2000-01-01"}, {"updated_since": "2000-01-01"}),
        ({"modified_after": "2999-01-01T00:00:00Z"}, {"updated_since": "2999-01-01T00:00:00Z"}),
    ]


def test_filters_find_what_the_v1_search_finds(client, picks):
    sizes = set()
    for n, (hsds_params, v1_params) in enumerate(equivalences(picks)):
        expected, matched = v1_search(client, v1_params)
        sizes.add(matched)
        # every list in one language, organizations in the other too (the languages alternate per case)
        lang, other = LANGS[n % 2], LANGS[1 - n % 2]
        for lang_, path in [*((lang, p) for p in RECORD_LISTS), (other, "organizations")]:
            found, total = organization_ids(client, lang_, path, hsds_params)
            assert set(found) == set(expected), (lang_, path, hsds_params, v1_params)
            assert len(found) == len(set(found)) == total == matched, (path, hsds_params)
            if "q" in v1_params or "near" in v1_params:  # the same ranking: relevance or distance
                assert found == expected, (lang_, path, hsds_params)
    assert len(sizes) > 5 and 0 in sizes  # the cases discriminate


def test_modified_after_at_a_real_change_time(client, loaded):
    moment = scalar(loaded, "SELECT max(updated_at) FROM organisation WHERE publication_state = 'published'")
    for value in (moment.isoformat(), (moment + dt.timedelta(microseconds=1)).isoformat()):
        expected, matched = v1_search(client, {"updated_since": value})
        found, total = organization_ids(client, "nl", "services", {"modified_after": value})
        assert set(found) == set(expected) and total == matched
    assert organization_ids(client, "nl", "services", {"modified_after": moment.isoformat()})[1] >= 1
    empty = hsds_page(client, "nl", "services", {"modified_after": "2999-01-01"})
    assert empty == {"total_items": 0, "total_pages": 0, "page_number": 1, "size": 0, "first_page": True,
                     "last_page": True, "empty": True, "contents": []}


def test_organization_id(client, loaded):
    chosen = [uuid_of(loaded, i) for (i,) in sql(loaded, "SELECT id FROM organisation WHERE publication_state = 'published' ORDER BY id DESC LIMIT 2")]
    for path in RECORD_LISTS:
        found, total = organization_ids(client, "fr", path, {"organization_id": ",".join(chosen)})
        assert sorted(found) == sorted(chosen) and total == 2
    single = hsds_page(client, "nl", "services", {"organization_id": chosen[0]})["contents"]
    assert [s["id"] for s in single] == [str(ids.record_id(chosen[0], "service"))]
    v1 = ok(client.get(f"/v1/organisations/{scalar(loaded, 'SELECT id FROM organisation WHERE uuid = :u', u=chosen[0])}"))
    assert v1["uuid"] == chosen[0]


def test_proximity_from_a_postcode_centroid(client, loaded):
    lat, lon = sql(loaded, """
        SELECT ST_Y(p), ST_X(p) FROM (SELECT ST_Transform(ST_Centroid(ST_Collect(geom)), 4326) AS p
                                        FROM address_point WHERE postcode = 1030) t""")[0]
    expected, matched = v1_search(client, {"near": f"{lat},{lon}", "radius": "800"})
    found, total = organization_ids(client, "nl", "organizations", {"postcode": "1030", "proximity": "800"})
    assert found == expected and total == matched > 0
    by_postcode, _ = v1_search(client, {"postcode": "1030"})
    assert set(found) != set(by_postcode)  # a distance from the centroid, not the postcode itself


def test_proximity_alone_sorts_by_distance(client, loaded):
    expected, matched = v1_search(client, {"near": "50.85,4.40"})
    found, total = organization_ids(client, "nl", "service_at_locations", {"proximity": "50.85,4.40"})
    assert found == expected and total == matched == published_count(loaded)


# ---------------------------------------------------------------- paging and streaming


def test_pages_cover_the_list_once(client, loaded):
    everything = hsds_page(client, "nl", "services")
    expected = [s["id"] for s in everything["contents"]]
    total = published_count(loaded)
    assert everything["total_items"] == total == v1_search(client, {})[1] == len(expected)
    per_page, seen, number = 7, [], 1
    while True:
        body = ok(client.get("/hsds/nl/services", params={"page": number, "per_page": per_page}))
        assert body["page_number"] == number and body["total_items"] == total
        assert body["total_pages"] == math.ceil(total / per_page)
        assert body["first_page"] == (number == 1) and body["last_page"] == (number == body["total_pages"])
        assert body["size"] == len(body["contents"]) and not body["empty"]
        seen += [s["id"] for s in body["contents"]]
        if body["last_page"]:
            break
        assert body["size"] == per_page
        number += 1
    assert len(seen) == len(set(seen)) and seen == expected
    beyond = ok(client.get("/hsds/nl/services", params={"page": number + 1, "per_page": per_page}))
    assert beyond["empty"] and beyond["contents"] == [] and beyond["last_page"] and beyond["total_items"] == total
    clamped = ok(client.get("/hsds/nl/services", params={"per_page": 100000}))
    assert clamped["size"] == min(total, 1000)
    terms = [t["id"] for n in (1, 2, 3) for t in ok(client.get("/hsds/fr/taxonomy_terms", params={"page": n, "per_page": 30}))["contents"]]
    assert terms == [t["id"] for t in ok(client.get("/hsds/fr/taxonomy_terms", params={"per_page": 90}))["contents"]]


def test_ndjson_streams_the_whole_directory(client, loaded, picks):
    count = published_count(loaded)
    with client.stream("GET", "/hsds/fr/organizations", params={"format": "ndjson"}, headers={"Accept-Encoding": "identity"}) as r:
        assert r.status_code == 200 and r.headers["content-type"] == NDJSON
        assert "etag" not in r.headers  # streamed, not buffered by the ETag middleware
        chunks = list(r.iter_raw())
    assert len(chunks) >= math.ceil(count / 200)  # one chunk per keyset batch at least
    lines = b"".join(chunks).splitlines()
    assert len(lines) == count
    for line in lines:
        assert_valid(validator("organization_list.json"), orjson.loads(line))
    filtered = ok(client.get("/hsds/nl/services", params={"format": "ndjson", "commune": picks["commune"]}), NDJSON)
    expected, _ = v1_search(client, {"commune": picks["commune"]})
    assert sorted(orjson.loads(line)["organization_id"] for line in filtered.splitlines()) == sorted(expected)


# ---------------------------------------------------------------- 400 and 404


@pytest.mark.parametrize(("path", "params", "parameter"), [
    ("services", {"foo": "1"}, "foo"),
    ("services", {"lang": "fr"}, "lang"),
    ("services", {"q": "ocmw"}, "q"),
    ("organizations", {"minimal": "true"}, "minimal"),
    ("services", {"page": "0"}, "page"),
    ("services", {"page": "abc"}, "page"),
    ("services", {"page": "-1"}, "page"),
    ("services", {"per_page": "0"}, "per_page"),
    ("services", {"page": "2", "format": "ndjson"}, "page"),
    ("services", {"format": "xml"}, "format"),
    ("services", {"full": "maybe"}, "full"),
    ("services", {"minimal": "true", "full": "true"}, "minimal"),
    ("services", {"proximity": "abc"}, "proximity"),
    ("services", {"proximity": "91,4.35"}, "proximity"),
    ("services", {"proximity": "50.8,4.35,0"}, "proximity"),
    ("services", {"proximity": "50.8,4.35,999999"}, "proximity"),
    ("services", {"proximity": "50.8,4.35,1,2"}, "proximity"),
    ("services", {"proximity": "500"}, "proximity"),
    ("services", {"proximity": "50.8,4.35,100", "radius": "100"}, "radius"),
    ("services", {"radius": "100"}, "radius"),
    ("services", {"postcode": "1030", "proximity": "abc"}, "proximity"),
    ("services", {"postcode": "9999"}, "postcode"),
    ("services", {"modified_after": "yesterday"}, "modified_after"),
    ("services", {"search": "x" * 201}, "search"),
    ("services", {"taxonomy_term_id": "nope"}, "taxonomy_term_id"),
    ("services", {"taxonomy_term_id": "00000000-0000-5000-8000-000000000000"}, "taxonomy_term_id"),
    ("services", {"taxonomy_id": "00000000-0000-5000-8000-000000000000"}, "taxonomy_id"),
    ("services", {"organization_id": "00000000-0000-5000-8000-000000000000"}, "organization_id"),
    ("service_at_locations", {"organization_id": "12"}, "organization_id"),
    ("organizations", {"sector": "abc"}, "sector"),
    ("organizations", {"commune": "99999"}, "commune"),
    ("organizations", {"category": "999999"}, "category"),
    ("organizations", {"sector": "5", "taxonomy_term_id": ids.term_id("sector", "5")}, "sector"),
    ("taxonomy_terms", {"taxonomy_id": "x"}, "taxonomy_id"),
    ("taxonomy_terms", {"parent_id": "00000000-0000-5000-8000-000000000000"}, "parent_id"),
    ("taxonomy_terms", {"top_only": "yes"}, "top_only"),
    ("taxonomies", {"taxonomy_id": ids.taxonomy_id("sector")}, "taxonomy_id"),
])
def test_bad_parameters_are_400_problems(client, path, params, parameter):
    problem(client.get(f"/hsds/nl/{path}", params=params), 400, parameter)


def test_unknown_resources_are_404_problems(client, loaded):
    unknown = "00000000-0000-5000-8000-000000000000"
    for path in ("services", "organizations", "service_at_locations", "taxonomies", "taxonomy_terms"):
        for bad_id in (unknown, "not-a-uuid", "13219"):
            problem(client.get(f"/hsds/fr/{path}/{bad_id}"), 404)
    oid = uuid_of(loaded, 13219)
    problem(client.get(f"/hsds/nl/services/{oid}"), 404)  # an organization id is not a service id
    problem(client.get(f"/hsds/nl/organizations/{ids.record_id(oid, 'service')}"), 404)
    problem(client.get(f"/hsds/nl/taxonomy_terms/{ids.taxonomy_id('sector')}"), 404)
    hidden = sql(loaded, "SELECT uuid FROM organisation WHERE publication_state <> 'published' LIMIT 1")
    if hidden:
        problem(client.get(f"/hsds/nl/organizations/{hidden[0][0]}"), 404)
        problem(client.get(f"/hsds/nl/services/{ids.record_id(hidden[0][0], 'service')}"), 404)
    problem(client.get("/hsds/de/services"), 404)
    problem(client.get("/hsds/en/"), 404)
    problem(client.get("/hsds/nl/nope"), 404)
    problem(client.get("/hsds/profile/schema/nope.json"), 404)
    problem(client.get(f"/hsds/nl/organizations/{oid}", params={"full": "true"}), 400, "full")


# ---------------------------------------------------------------- legacy values that would fail the formats


@pytest.fixture(scope="module")
def row_13219(loaded) -> dict:
    with loaded.connect() as conn:
        return dict(conn.execute(text(RECORD_SQL.format(public="")), {"ids": [13219]}).one()._mapping)


def test_malformed_emails_and_websites_are_cleaned_or_withheld_and_recorded(row_13219):
    row = dict(row_13219,
               email_nl=["mailto:Info@Example.be ", "foo@@bar", "a@b.be; c@d.be", "sans arobase"],
               website_official_nl=["www.example.be", "not a url", "https://www.crèche.be/é b", "javascript:alert(1)"],
               website_info_nl=["example.org/info"])
    shaper = Shaper("nl", "http://testserver")  # no vocabulary: attributes are not the point here
    organization = shaper.organization(row, full=True, services="full")
    assert_valid(validator("organization.json"), organization, "organization")
    assert_valid(validator("service.json"), organization["services"][0], "service")
    assert organization["email"] == "Info@Example.be" and organization["website"] == "https://www.example.be"
    assert [c["email"] for c in organization["contacts"]] == ["Info@Example.be", "a@b.be", "c@d.be"]
    changes = {(m["field_name"], m["previous_value"]): (m["last_action_type"], m["replacement_value"]) for m in organization["metadata"]}
    assert changes == {
        ("email", "mailto:Info@Example.be "): ("corrected", "Info@Example.be"),
        ("email", "foo@@bar"): ("withheld", ""),
        ("email", "a@b.be; c@d.be"): ("corrected", "a@b.be; c@d.be"),
        ("email", "sans arobase"): ("withheld", ""),
        ("website", "www.example.be"): ("corrected", "https://www.example.be"),
        ("website", "not a url"): ("withheld", ""),
        ("website", "https://www.crèche.be/é b"): ("corrected", "https://www.xn--crche-5ra.be/%C3%A9%20b"),
        ("website", "javascript:alert(1)"): ("withheld", ""),
    }
    service = organization["services"][0]
    assert service["url"] == "https://www.example.be" and service["email"] == "Info@Example.be"
    assert ("url", "example.org/info", "https://example.org/info") in {
        (m["field_name"], m["previous_value"], m["replacement_value"]) for m in service["metadata"]}


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.text(max_size=60) | st.from_regex(r"(https?:/{0,3}|www\.)?[a-zé.-]{1,12}\.[a-z]{2,3}(/[^\s]{0,10})?", fullmatch=True))
def test_cleaned_urls_always_pass_the_format_check(raw):
    url = clean_url(raw)
    assert url is None or (CHECKER.conforms(url, "uri") and url.startswith(("http://", "https://")))


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.text(max_size=60) | st.emails().map(lambda e: f" mailto:{e}; "))
def test_cleaned_emails_always_pass_the_format_check(raw):
    found, _ = clean_email(raw)
    assert all(CHECKER.conforms(e, "email") for e in found)


# ---------------------------------------------------------------- the profile and its OpenAPI


def merge_patch(target, patch):
    """RFC 7396."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def test_profile_openapi_is_valid_and_documents_errors(client):
    for url in ("/hsds/nl/openapi.json", "/hsds/fr/openapi.json", "/hsds/profile/openapi.json"):
        doc = ok(client.get(url))
        validate_openapi(doc)
        assert "raw.githubusercontent.com" not in json.dumps(doc["paths"])  # single file: no external $ref
        assert doc["servers"][0]["url"] == "http://testserver/hsds/{lang}"
        for path, item in doc["paths"].items():
            responses = item["get"]["responses"]
            assert responses["400"] == {"$ref": "#/components/responses/BadRequest"}
            if "{id}" in path:
                assert responses["404"] == {"$ref": "#/components/responses/NotFound"}
            names = {p["$ref"].rsplit("/", 1)[1] for p in item["get"]["parameters"] if "$ref" in p}
            assert names == set(ENDPOINTS[path]["params"])
        for name in ("BadRequest", "NotFound"):
            media = doc["components"]["responses"][name]["content"]
            assert media == {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for parameter in doc["components"]["parameters"].values():
            assert parameter["description"]
        services = {p["$ref"].rsplit("/", 1)[1] for p in doc["paths"]["/services"]["get"]["parameters"]}
        assert set(PROFILE_FILTERS) | {"taxonomy_term_id", "taxonomy_id", "organization_id", "modified_after", "postcode",
                                       "proximity", "search", "page", "per_page", "format", "minimal", "full"} <= services
    assert ok(client.get("/hsds/fr/openapi.json"))["servers"][0]["variables"]["lang"]["default"] == "fr"
    main = ok(client.get("/openapi.json"))
    assert not [p for p in main["paths"] if p.startswith("/hsds")]  # documented by the profile's own document


def test_every_documented_parameter_is_accepted(client, picks):
    values = {
        "search": "ocmw", "page": "1", "per_page": "5", "format": "json", "taxonomy_term_id": term("commune", picks["commune"]),
        "taxonomy_id": ids.taxonomy_id("quartier"), "modified_after": "2000-01-01", "minimal": "false", "full": "false",
        "full_service": "false", "postcode": "1030", "proximity": "50.85,4.40", "top_only": "false", "sector": str(picks["sector"]),
        "category": str(picks["category"]), "accreditation": str(picks["accreditation"]), "commune": None, "quartier": str(picks["quartier"]),
        "statistical_sector": str(picks["statistical_sector"]), "radius": "5000",
    }
    for path, spec in ENDPOINTS.items():
        if "{id}" in path or path in ("/", "/openapi.json"):
            continue
        for name in spec["params"]:
            if values.get(name) is None:
                continue
            params = {name: values[name]}
            if name == "radius":
                params["proximity"] = "50.85,4.40"
            ok(client.get(f"/hsds/nl{path}", params=params))


def test_profile_files_are_merge_patches_the_responses_follow(client, loaded):
    index = ok(client.get("/hsds/profile"))
    assert index["hsds_version"] == "3.0" and index["openapi_url"].endswith("/hsds/profile/openapi.json")
    assert set(index["taxonomies"].values()) == {ids.taxonomy_id(k) for k in TAXONOMIES}
    readme = client.get("/hsds/profile/README.md")
    assert readme.status_code == 200 and readme.headers["content-type"].startswith("text/markdown") and "lang_fallbacks" in readme.text
    patched = {}
    for name, url in index["schema"].items():
        served = client.get(url.replace("http://testserver", ""))
        assert served.status_code == 200 and served.headers["content-type"] == "application/merge-patch+json"
        patch = served.json()
        assert patch == json.loads((PROFILE_DIR / "schema" / name).read_text(encoding="utf-8"))
        base = read_schema(name)  # every patch names an HSDS 3.0 schema file
        patched[name] = merge_patch(base, patch)
        Draft202012Validator.check_schema(patched[name])
    assert "tax_id" not in patched["organization.json"]["properties"]
    assert patched["organization.json"]["properties"]["lang_fallbacks"]["additionalProperties"]["enum"] == ["nl", "fr"]

    profile = registry(patched)

    def profile_validator(name):
        return Draft202012Validator(patched.get(name) or read_schema(name), registry=profile, format_checker=CHECKER)

    oid = uuid_of(loaded, 13219)
    monolingual = sql(loaded, "SELECT uuid FROM organisation WHERE publication_state = 'published' AND name_official_nl IS NULL LIMIT 1")[0][0]
    for lang in LANGS:
        for record in (oid, monolingual):
            organization = ok(client.get(f"/hsds/{lang}/organizations/{record}", params={"full_service": "true"}))
            assert_valid(profile_validator("organization.json"), organization, "profile organization")
            service = ok(client.get(f"/hsds/{lang}/services/{ids.record_id(record, 'service')}"))
            assert_valid(profile_validator("service.json"), service, "profile service")
            sal = ok(client.get(f"/hsds/{lang}/service_at_locations/{ids.record_id(record, 'service_at_location')}"))
            assert_valid(profile_validator("service_at_location.json"), sal, "profile service_at_location")
        for taxonomy in ok(client.get(f"/hsds/{lang}/taxonomies"))["contents"]:
            assert_valid(profile_validator("taxonomy.json"), taxonomy, "profile taxonomy")
        for item in ok(client.get(f"/hsds/{lang}/taxonomy_terms", params={"per_page": 300}))["contents"]:
            assert_valid(profile_validator("taxonomy_term.json"), item, "profile term")
    bad = dict(ok(client.get(f"/hsds/nl/organizations/{oid}")), lang_fallbacks={"name": "de"})
    assert list(profile_validator("organization.json").iter_errors(bad))  # the profile schema can fail


# ---------------------------------------------------------------- identifiers


def test_derived_ids_are_valid_distinct_and_reversible():
    import uuid

    org = uuid.uuid5(uuid.NAMESPACE_URL, "organisation:13219")
    derived = {kind: ids.record_id(org, kind) for kind in ("service", "location", "service_at_location")}
    assert len({org, *derived.values()}) == 4
    for kind, value in derived.items():
        assert value.version == 5 and value.variant == uuid.RFC_4122
        assert ids.organisation_uuid(value, kind) == org
    assert ids.term_id("sector", "53") != ids.term_id("category", "53")  # legacy ids overlap between types
