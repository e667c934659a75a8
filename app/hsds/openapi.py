"""The Bruso HSDS profile's own OpenAPI 3.1 document: one file, no external ``$ref`` (the official
``openapi.json`` points at GitHub for its schemas and documents only 200s).

It documents the HSDS 3.0 API (both languages: server variable ``lang``), its parameters, the
profile's filters (the v1 criteria of the same name), 400/404/503 as ``application/problem+json``,
and summary schemas of the HSDS objects with the profile's extensions; the full nested shapes are
the compiled HSDS 3.0 schemas named in each schema's ``externalDocs``.

``ENDPOINTS`` is also what the router accepts: a parameter is documented here or it is a 400.
"""

from __future__ import annotations

from .. import __version__
from . import HSDS_VERSION, LANGS

HSDS_SCHEMA_BASE = "https://raw.githubusercontent.com/openreferral/specification/3.0/schema"

_LIST = {"type": "string"}
PARAMETERS: dict[str, dict] = {
    # HSDS 3.0
    "search": {"description": "Full text over NL+FR names, alternative names, activities, category titles and keywords "
                              "(the v1 `q`: accent-, case- and typo-tolerant; results by relevance)", "schema": {"type": "string", "maxLength": 200}},
    "page": {"description": "Page number, from 1 (default 1)", "schema": {"type": "integer", "minimum": 1, "maximum": 1000000}},
    "per_page": {"description": "Items per page (default 50; larger values are clamped at 1000; `minimal=true` defaults to 1000)",
                 "schema": {"type": "integer", "minimum": 1}},
    "format": {"description": "`json` (default: one page) or `ndjson`: every matching item, one JSON object per line "
                              "(application/x-ndjson), streamed from one database snapshot; not with page/per_page",
               "schema": {"type": "string", "enum": ["json", "ndjson"]}},
    "taxonomy_term_id": {"description": "Taxonomy term ids (comma-separated or repeated): OR between terms of the same kind "
                                        "(two sectors), AND across kinds (a sector and a commune; an authority and an "
                                        "accreditation). A category term includes the categories below it (as v1 `category`). "
                                        "Not together with the profile filter of the same kind", "schema": _LIST},
    "taxonomy_id": {"description": "Taxonomy ids: items with any term of that taxonomy", "schema": _LIST},
    "organization_id": {"description": "Organization ids (comma-separated or repeated)", "schema": _LIST},
    "modified_after": {"description": "Only items changed at or after this ISO 8601 date or date-time (the v1 `updated_since`)",
                       "schema": {"type": "string"}},
    "minimal": {"description": "true: each service as id, name, status and last_modified only (name and status are required "
                               "by the HSDS schema)", "schema": {"type": "boolean"}},
    "full": {"description": "true: fully nested items (as the detail endpoint) instead of the one-to-one fields",
             "schema": {"type": "boolean"}},
    "full_service": {"description": "true: the organization's services fully nested (implies full organizations in lists)",
                     "schema": {"type": "boolean"}},
    "postcode": {"description": "Postcodes of the address (comma-separated: OR). With a `proximity` distance alone, the centre "
                                "of the one postcode given instead (HSDS semantics)", "schema": _LIST},
    "proximity": {"description": "`lat,lon` (WGS84; nearest first), `lat,lon,radius` (within radius metres, nearest first), "
                                 "or `radius` alone with one `postcode`: within radius metres of the postcode's centroid",
                  "schema": {"type": "string"}},
    "top_only": {"description": "true: only the terms without a parent (the top of each taxonomy)", "schema": {"type": "boolean"}},
    "parent_id": {"description": "Only the terms directly below this term", "schema": {"type": "string", "format": "uuid"}},
    # the Bruso profile: the v1 criteria of the same name
    "sector": {"description": "Profile filter: sector ids (v1 `sector`)", "schema": _LIST},
    "category": {"description": "Profile filter: category ids, with every category below them (v1 `category`)", "schema": _LIST},
    "accreditation": {"description": "Profile filter: accreditation ids (v1 `accreditation`)", "schema": _LIST},
    "commune": {"description": "Profile filter: commune NIS codes, e.g. 21015 (v1 `commune`)", "schema": _LIST},
    "quartier": {"description": "Profile filter: monitoring-quartier codes, e.g. 87 (v1 `quartier`)", "schema": _LIST},
    "statistical_sector": {"description": "Profile filter: statistical sector codes, e.g. 21015A77- (v1 `statistical_sector`)",
                           "schema": _LIST},
    "radius": {"description": "Profile filter: radius in metres around `proximity=lat,lon` (0 < radius ≤ 50000; v1 `radius`)",
               "schema": {"type": "number"}},
}
PROFILE_FILTERS = ("sector", "category", "accreditation", "commune", "quartier", "statistical_sector", "radius")
SEARCH = ("search", "taxonomy_term_id", "taxonomy_id", "organization_id", "modified_after", "postcode", "proximity", *PROFILE_FILTERS)
PAGING = ("page", "per_page", "format")

# path → what the router accepts and the document says
ENDPOINTS: dict[str, dict] = {
    "/": {"operationId": "getAPIMetaInformation", "summary": "HSDS version, profile and OpenAPI document of this API",
          "params": (), "schema": "ApiInfo"},
    "/services": {"operationId": "getPaginatedListOfServices", "summary": "Paginated list of services (one-to-one fields)",
                  "params": (*SEARCH, *PAGING, "minimal", "full"), "item": "ServiceListItem", "full_item": "Service"},
    "/services/{id}": {"operationId": "getFullyNestedServiceById", "summary": "A fully nested service", "params": (),
                       "schema": "Service"},
    "/organizations": {"operationId": "getPaginatedListOfOrganizations", "summary": "Paginated list of organizations",
                       "params": (*SEARCH, *PAGING, "full", "full_service"), "item": "OrganizationListItem",
                       "full_item": "Organization"},
    "/organizations/{id}": {"operationId": "getOrganizationById",
                            "summary": "A fully nested organization; its services as one-to-one fields unless full_service=true",
                            "params": ("full_service",), "schema": "Organization"},
    "/service_at_locations": {"operationId": "getPaginatedListOfServiceAtLocation",
                              "summary": "Paginated list of services at locations",
                              "params": (*SEARCH, *PAGING, "full"), "item": "ServiceAtLocationListItem",
                              "full_item": "ServiceAtLocation"},
    "/service_at_locations/{id}": {"operationId": "getServiceAtLocationWithNestedDataById",
                                   "summary": "A fully nested service at location", "params": (), "schema": "ServiceAtLocation"},
    "/taxonomies": {"operationId": "getPaginatedListOfTaxonomies", "summary": "Paginated list of taxonomies",
                    "params": ("search", *PAGING), "item": "Taxonomy"},
    "/taxonomies/{id}": {"operationId": "getTaxonomyById", "summary": "A taxonomy", "params": (), "schema": "Taxonomy"},
    "/taxonomy_terms": {"operationId": "getPaginatedListOfTaxonomyTerms", "summary": "Paginated list of taxonomy terms",
                        "params": ("search", "taxonomy_id", "top_only", "parent_id", *PAGING), "item": "TaxonomyTerm"},
    "/taxonomy_terms/{id}": {"operationId": "getTaxonomyTermById", "summary": "A taxonomy term (with taxonomy_detail)",
                             "params": (), "schema": "TaxonomyTerm"},
    "/openapi.json": {"operationId": "getProfileOpenAPI", "summary": "This OpenAPI document", "params": (), "schema": None},
}

_UUID = {"type": "string", "format": "uuid"}
_STR = {"type": "string"}
LANG_FALLBACKS = {
    "type": "object",
    "description": "Bruso profile: the fields of this object whose value is in the other language, because it has none "
                   "in the API's language (field → `nl` or `fr`). Empty when every value is in the API's language.",
    "additionalProperties": {"type": "string", "enum": list(LANGS)},
}


def _object(title: str, compiled: str, required: list[str], properties: dict, description: str) -> dict:
    return {
        "type": "object",
        "title": title,
        "description": description,
        "required": required,
        "properties": {**properties, "lang_fallbacks": {"$ref": "#/components/schemas/LangFallbacks"}},
        "additionalProperties": True,
        "externalDocs": {"description": "The full HSDS 3.0 schema", "url": f"{HSDS_SCHEMA_BASE}/{compiled}"},
    }


_ORG = {
    "id": {**_UUID, "description": "organisation.uuid of the Bruso record: the same in NL and FR"},
    "name": _STR, "alternate_name": _STR, "description": _STR,
    "email": {"type": "string", "format": "email"}, "website": {"type": "string", "format": "uri"},
    "legal_status": _STR, "year_incorporated": {"type": "number"},
    "uri": {"type": "string", "format": "uri", "description": "The Bruso v1 record"},
}
_SERVICE = {
    "id": _UUID, "organization_id": _UUID, "name": _STR, "alternate_name": _STR, "description": _STR,
    "url": {"type": "string", "format": "uri"}, "email": {"type": "string", "format": "email"},
    "status": {"type": "string", "enum": ["active", "inactive", "defunct", "temporarily closed"]},
    "application_process": _STR, "accreditations": _STR, "eligibility_description": _STR, "interpretation_services": _STR,
    "assured_date": _STR, "last_modified": {"type": "string", "format": "date-time"},
}
_LOCATION = {"id": _UUID, "location_type": {"type": "string", "enum": ["physical", "postal", "virtual"]}, "organization_id": _UUID,
             "name": _STR, "latitude": {"type": "number"}, "longitude": {"type": "number"}}
_ARRAY = {"type": "array", "items": {"type": "object"}}

SCHEMAS: dict[str, dict] = {
    "LangFallbacks": LANG_FALLBACKS,
    "ApiInfo": {
        "type": "object",
        "required": ["version", "profile", "openapi_url"],
        "properties": {
            "version": {"type": "string", "const": HSDS_VERSION},
            "profile": {"type": "string", "format": "uri"},
            "openapi_url": {"type": "string", "format": "uri"},
        },
    },
    "Page": {
        "type": "object",
        "required": ["total_items", "total_pages", "page_number", "size", "first_page", "last_page", "empty", "contents"],
        "properties": {
            "total_items": {"type": "integer", "description": "Matching items (the v1 numberMatched)"},
            "total_pages": {"type": "integer"},
            "page_number": {"type": "integer"},
            "size": {"type": "integer", "description": "Items in this page"},
            "first_page": {"type": "boolean"},
            "last_page": {"type": "boolean"},
            "empty": {"type": "boolean", "description": "This page has no item"},
            "contents": {"type": "array", "items": {}},
        },
    },
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "detail": {"type": "string"}, "instance": {"type": "string"},
            "parameter": {"type": "string", "description": "The query parameter at fault"},
        },
        "additionalProperties": True,
    },
    "OrganizationListItem": _object("organization (list)", "compiled/organization_list.json", ["id", "name", "description"], _ORG,
                                    "One activity place of the social map as an organization: its one-to-one fields."),
    "Organization": _object("organization", "compiled/organization.json", ["id", "name", "description"], {
        **_ORG, "contacts": _ARRAY, "phones": _ARRAY, "locations": _ARRAY, "organization_identifiers": _ARRAY,
        "metadata": {**_ARRAY, "description": "Bruso profile: e-mail addresses and web sites corrected (last_action_type "
                                              "`corrected`) or withheld as invalid (`withheld`), with the value as given"},
        "services": _ARRAY,
    }, "A fully nested organization: contacts (e-mails), phones, its location, enterprise numbers (identifier_scheme "
       "BE-BCE_KBO) and services."),
    "ServiceListItem": _object("service (list)", "compiled/service_list.json", ["id", "name", "status"],
                               {**_SERVICE, "organization": {"$ref": "#/components/schemas/OrganizationListItem"}},
                               "The service of an activity place: its one-to-one fields and organization."),
    "MinimalService": _object("service (minimal)", "compiled/service_list.json", ["id", "name", "status"],
                              {k: _SERVICE[k] for k in ("id", "name", "status", "last_modified")}, "minimal=true"),
    "Service": _object("service", "compiled/service.json", ["id", "name", "status"], {
        **_SERVICE, "organization": {"$ref": "#/components/schemas/Organization"}, "phones": _ARRAY,
        "schedules": {**_ARRAY, "description": "Opening hours as free text (description)"},
        "service_areas": {**_ARRAY, "description": "The action zones"},
        "service_at_locations": _ARRAY, "languages": {**_ARRAY, "description": "Offered languages"}, "contacts": _ARRAY,
        "attributes": {**_ARRAY, "description": "Terms of the sector, category, accreditation (authority and accreditation) "
                                                "and offer_type taxonomies; value `inferred` on sectors derived through the "
                                                "inferred thematic tree"},
        "metadata": _ARRAY,
    }, "A fully nested service."),
    "Location": _object("location", "location.json", ["id", "location_type"], {
        **_LOCATION, "addresses": _ARRAY,
        "attributes": {**_ARRAY, "description": "Terms of the commune, quartier and statistical_sector taxonomies (value: the code)"},
    }, "The address of an activity place."),
    "ServiceAtLocationListItem": _object("service_at_location (list)", "compiled/service_at_location_list.json", ["id"], {
        "id": _UUID, "service_id": _UUID, "location_id": _UUID, "description": _STR,
        "location": {"type": "object"}, "service": {"$ref": "#/components/schemas/ServiceListItem"},
    }, "The service of an activity place at its location."),
    "ServiceAtLocation": _object("service_at_location", "compiled/service_at_location.json", ["id"], {
        "id": _UUID, "service_id": _UUID, "location_id": _UUID, "description": _STR,
        "location": {"$ref": "#/components/schemas/Location"}, "service": {"$ref": "#/components/schemas/Service"},
    }, "A fully nested service at location."),
    "Taxonomy": _object("taxonomy", "taxonomy.json", ["id", "name", "description"], {
        "id": _UUID, "name": _STR, "description": _STR, "uri": {"type": "string", "format": "uri"},
    }, "One of the seven taxonomies: sector, category, accreditation, offer_type, commune, quartier, statistical_sector."),
    "TaxonomyTerm": _object("taxonomy_term", "taxonomy_term.json", ["id", "name", "description"], {
        "id": _UUID, "code": {"type": "string", "description": "The legacy id, NIS code, quartier or statistical sector code"},
        "name": _STR, "description": _STR, "parent_id": _UUID, "taxonomy": _STR, "taxonomy_id": _UUID,
        "language": {"type": "string", "enum": list(LANGS), "description": "The language of name: the API's, or the other "
                                                                            "when the term has no name in the API's language"},
        "term_uri": {"type": "string", "format": "uri"}, "taxonomy_detail": {"$ref": "#/components/schemas/Taxonomy"},
    }, "A term of a Bruso taxonomy."),
}


def _problem(description: str) -> dict:
    return {"description": description, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


RESPONSES = {
    "BadRequest": _problem("Bad request: a parameter is unknown or malformed, or names an unknown id (the problem names it)"),
    "NotFound": _problem("No such resource (unknown or unpublished id)"),
    "Unavailable": _problem("Database unavailable or query too slow; retry later (Retry-After)"),
}


def _operation(path: str, spec: dict) -> dict:
    parameters = [{"$ref": f"#/components/parameters/{name}"} for name in spec["params"]]
    if "{id}" in path:
        parameters.insert(0, {"name": "id", "in": "path", "required": True, "description": "The object's id (UUID)",
                              "schema": {"type": "string", "format": "uuid"}})
    if "item" in spec:
        items = {"$ref": f"#/components/schemas/{spec['item']}"}
        if "full_item" in spec:
            alternatives = [items, {"$ref": f"#/components/schemas/{spec['full_item']}"}]
            if path == "/services":
                alternatives.append({"$ref": "#/components/schemas/MinimalService"})
            items = {"anyOf": alternatives}
        content = {
            "application/json": {"schema": {"allOf": [{"$ref": "#/components/schemas/Page"},
                                                      {"properties": {"contents": {"type": "array", "items": items}}}]}},
            "application/x-ndjson": {"schema": {"type": "string", "description": "format=ndjson: one item of contents per line"}},
        }
        ok = {"description": spec["summary"], "content": content}
    elif spec["schema"]:
        ok = {"description": spec["summary"], "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{spec['schema']}"}}}}
    else:
        ok = {"description": spec["summary"], "content": {"application/json": {"schema": {"type": "object"}}}}
    responses = {"200": ok, "400": {"$ref": "#/components/responses/BadRequest"}}
    if path != "/" and path != "/openapi.json":
        responses["404"] = {"$ref": "#/components/responses/NotFound"}
    responses["503"] = {"$ref": "#/components/responses/Unavailable"}
    return {"operationId": spec["operationId"], "summary": spec["summary"], "tags": ["HSDS 3.0"],
            "parameters": parameters, "responses": responses}


def document(base_url: str, lang: str | None = None) -> dict:
    """The profile's OpenAPI document; ``lang`` sets the default of the server variable."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Bruso — Open Referral HSDS 3.0 API",
            "version": __version__,
            "summary": "The social map of the Brussels-Capital Region as HSDS 3.0, one API per language (nl, fr)",
            "description": (
                "Open Referral HSDS 3.0 with the Bruso profile. Each activity place of the social map is one organization, "
                "one service, one location and one service_at_location; ids are UUIDs, the same in both languages. Labels "
                "are in the language of the API; a value served in the other language because the record has none in it is "
                "named in the object's `lang_fallbacks` (taxonomy terms: `language`). Lists are HSDS pages "
                "(`page`, `per_page`) or, with `format=ndjson`, a stream of every matching item. The profile filters "
                "(sector, category, accreditation, commune, quartier, statistical_sector, radius) and search, postcode, "
                "proximity and modified_after are the v1 search criteria: the same parameter finds the same records on "
                f"every Bruso surface. Profile: {base_url}/hsds/profile."
            ),
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "servers": [{
            "url": f"{base_url}/hsds/{{lang}}",
            "description": "One API per language",
            "variables": {"lang": {"enum": list(LANGS), "default": lang or LANGS[0], "description": "nl or fr"}},
        }],
        "externalDocs": {"description": "The Bruso HSDS profile (JSON Merge Patches of the HSDS 3.0 schemas)",
                         "url": f"{base_url}/hsds/profile"},
        "tags": [{"name": "HSDS 3.0", "description": "Open Referral Human Services Data Specification 3.0"}],
        "paths": {path: {"get": _operation(path, spec)} for path, spec in ENDPOINTS.items()},
        "components": {
            "schemas": SCHEMAS,
            "parameters": {name: {"name": name, "in": "query", "required": False, **spec} for name, spec in PARAMETERS.items()},
            "responses": RESPONSES,
        },
    }
