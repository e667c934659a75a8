"""Whole organisation records (``app.search.fetch_records``) → Open Referral HSDS 3.0 objects in one
language, for the Bruso HSDS profile (``app/hsds/``).

One activity place is one organization, one service, one location and the service_at_location
that joins them (ids: ``app.hsds.ids``). HSDS records are single-language: every label is taken in
the API's language; where that language has no value and the other has, the other's value is used
and the object's ``lang_fallbacks`` names the field (``{"description": "fr"}``) — never a silent
fallback. Taxonomy terms also say it with HSDS's own ``language`` (the language of ``name``).

Nothing is emitted that would fail the HSDS format checks: absent values are omitted (HSDS types are
not nullable); e-mail addresses and web sites from the legacy data are cleaned (``mailto:``,
spaces, several addresses in one field, a missing ``https://``, non-ASCII hosts and paths) and a
value that cannot be made valid is withheld. Every correction and every withheld value is recorded in
the object's HSDS ``metadata`` (field_name, previous_value, replacement_value, last_action_type
``corrected`` or ``withheld``), so nothing is lost silently either.
"""

from __future__ import annotations

import math
import re
from urllib.parse import quote, urlsplit, urlunsplit

from jsonschema import FormatChecker

from ..geo.crs import to_wgs84
from ..hsds import ids
from ..hsds.vocabulary import GENERIC_DESCRIPTION, TAXONOMIES, Term, Vocabulary
from ..text import fold

OTHER = {"nl": "fr", "fr": "nl"}
FORMATS = FormatChecker(formats=("uri", "email", "uuid", "date-time"))
UPDATED_BY = "Bruso HSDS profile"
IDENTIFIER_SCHEME = "BE-BCE_KBO"  # org-id.guide: Crossroads Bank for Enterprises
IDENTIFIER_TYPE = {"nl": "Ondernemingsnummer (KBO)", "fr": "Numéro d'entreprise (BCE)"}
REGION = {"nl": "Brussels Hoofdstedelijk Gewest", "fr": "Région de Bruxelles-Capitale"}
BOX = {"nl": "bus", "fr": "bte"}
INTERPRETING = {"nl": "Tolken beschikbaar", "fr": "Interprétariat disponible"}
ZONE_KINDS = {
    "nl": {"region": "Gewest", "commune": "Gemeente", "commune-part": "Deel van een gemeente", "quartier": "Wijk", "area": "Gebied"},
    "fr": {"region": "Région", "commune": "Commune", "commune-part": "Partie de commune", "quartier": "Quartier", "area": "Zone"},
}
# ISO 639-1 codes of the offered languages, by their folded French name (code omitted when unknown).
LANGUAGE_CODES = {
    "francais": "fr", "neerlandais": "nl", "anglais": "en", "allemand": "de", "arabe": "ar", "espagnol": "es",
    "italien": "it", "portugais": "pt", "turc": "tr", "russe": "ru", "polonais": "pl", "roumain": "ro",
    "bulgare": "bg", "grec": "el", "albanais": "sq", "serbe": "sr", "croate": "hr", "slovaque": "sk",
    "slovene": "sl", "tcheque": "cs", "hongrois": "hu", "persan": "fa", "farsi": "fa", "dari": "prs", "pachto": "ps",
    "ourdou": "ur", "hindi": "hi", "bengali": "bn", "chinois": "zh", "japonais": "ja", "vietnamien": "vi",
    "swahili": "sw", "lingala": "ln", "somali": "so", "tigrinya": "ti", "amharique": "am", "berbere": "ber",
    "kurde": "ku", "armenien": "hy", "georgien": "ka", "ukrainien": "uk", "langue des signes": "sgn",
}


# ---------------------------------------------------------------- cleaning legacy contact values

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}")
_AT = re.compile(r"\s*(?:\(at\)|\[at\]|\{at\})\s*", re.IGNORECASE)


def clean_email(raw: str) -> tuple[list[str], bool]:
    """The valid addresses in a legacy e-mail field and whether the field had to be changed.

    Removes ``mailto:``, surrounding spaces, brackets and punctuation, turns ``(at)`` into ``@`` and
    splits several addresses given in one field. Returns ``([], True)`` when nothing valid is left.
    """
    text = _AT.sub("@", (raw or "").strip())
    text = re.sub(r"(?i)^mailto:", "", text).strip().strip("<>()[]\"'.,;: ")
    parts = [p.strip("<>()[]\"'.,;: ") for p in re.split(r"[;,\s/]+", text) if p.strip("<>()[]\"'.,;: ")]
    valid = []
    for part in parts:
        if EMAIL.fullmatch(part) and FORMATS.conforms(part, "email") and part not in valid:
            valid.append(part)
    return valid, valid != [raw]


_SCHEME = re.compile(r"(?i)^([a-z][a-z0-9+.-]*):")
_LOOSE_HTTP = re.compile(r"(?i)^(https?)(?:[:;]/*|/+)")


def clean_url(raw: str) -> str | None:
    """A legacy web address as an absolute http(s) URI that passes RFC 3986/3987 checks, or None.

    Adds ``https://`` to a bare domain (``www.example.be``), repairs ``http//`` and ``http:/``,
    encodes an internationalised host with IDNA and percent-encodes what a URI may not contain
    (spaces, non-ASCII letters, stray ``%``).
    """
    text = (raw or "").strip().strip("<>\"'").strip()
    if not text:
        return None
    loose = _LOOSE_HTTP.match(text)
    if loose:
        text = f"{loose.group(1).lower()}://{text[loose.end():]}"
    elif _SCHEME.match(text) and not re.match(r"^[A-Za-z0-9.-]+:\d", text):
        return None  # mailto:, ftp:, javascript: … are not web sites (host:port is)
    else:
        text = "https://" + text.lstrip("/")
    try:
        parts = urlsplit(text)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or "." not in host.strip("."):
        return None
    try:
        ascii_host = host.strip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    labels = ascii_host.split(".")
    if not all(re.fullmatch(_LABEL, label) for label in labels) or not re.fullmatch(r"[a-z]{2,63}|xn--[a-z0-9-]+", labels[-1]):
        return None
    netloc = ascii_host + (f":{port}" if port else "")

    def encode(part: str, safe: str) -> str:
        return quote(re.sub(r"%(?![0-9A-Fa-f]{2})", "%25", part), safe=safe + "%")

    url = urlunsplit((
        parts.scheme.lower(), netloc,
        encode(parts.path, "/!$&'()*+,;=:@-._~"),
        encode(parts.query, "/?!$&'()*+,;=:@-._~"),
        encode(parts.fragment, "/?!$&'()*+,;=:@-._~"),
    ))
    return url if FORMATS.conforms(url, "uri") else None


# ---------------------------------------------------------------- the page object


def page(contents: list, total: int, page_number: int, per_page: int) -> dict:
    """The HSDS paginated list (``Page`` of the HSDS OpenAPI) around one page of items."""
    total_pages = math.ceil(total / per_page) if total else 0
    return {
        "total_items": total,
        "total_pages": total_pages,
        "page_number": page_number,
        "size": len(contents),
        "first_page": page_number == 1,
        "last_page": page_number >= total_pages,
        "empty": not contents,
        "contents": contents,
    }


# ---------------------------------------------------------------- shaping


def _present(value) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, (list, tuple)):
        return any(_present(v) for v in value)
    return True


def _pair(row: dict, stem: str) -> dict:
    return {"nl": row.get(f"{stem}_nl"), "fr": row.get(f"{stem}_fr")}


def _texts(values, strip: bool = True) -> list[str]:
    return [v.strip() if strip else v for v in values or [] if isinstance(v, str) and v.strip()]


class Shaper:
    """Shapes records and vocabulary terms into HSDS objects in ``lang`` (``nl`` or ``fr``).

    ``vocabulary`` is needed for the ``attributes`` of full objects and for taxonomy terms.
    """

    def __init__(self, lang: str, base_url: str, vocabulary: Vocabulary | None = None):
        self.lang = lang
        self.other = OTHER[lang]
        self.base = base_url
        self.vocabulary = vocabulary
        self._terms: dict[str, dict] = {}  # nested terms, shaped once per response (never mutated)

    # ------------------------------------------------------------ languages

    def pick(self, pair: dict, fallbacks: dict, field: str):
        """The value in the API's language; else the other language's, recorded in ``fallbacks``."""
        value = pair.get(self.lang)
        if _present(value):
            return value
        other = pair.get(self.other)
        if _present(other):
            fallbacks[field] = self.other
            return other
        return None

    def _list(self, row: dict, stem: str, fallbacks: dict, field: str, strip: bool = True) -> list[str]:
        return _texts(self.pick(_pair(row, stem), fallbacks, field), strip)

    # ------------------------------------------------------------ contact values

    def _emails(self, row: dict, fallbacks: dict, field: str) -> tuple[list[str], list[tuple]]:
        valid: list[str] = []
        fixes: list[tuple] = []
        for raw in self._list(row, "email", fallbacks, field, strip=False):  # as given, for metadata
            found, changed = clean_email(raw)
            valid += [f for f in found if f not in valid]
            if not found:
                fixes.append((field, raw, "", "withheld"))
            elif changed:
                fixes.append((field, raw, "; ".join(found), "corrected"))
        return valid, fixes

    def _urls(self, row: dict, stem: str, fallbacks: dict, field: str) -> tuple[list[str], list[tuple]]:
        valid: list[str] = []
        fixes: list[tuple] = []
        for raw in self._list(row, stem, fallbacks, field, strip=False):
            url = clean_url(raw)
            if url is None:
                fixes.append((field, raw, "", "withheld"))
                continue
            if url != raw:
                fixes.append((field, raw, url, "corrected"))
            if url not in valid:
                valid.append(url)
        return valid, fixes

    def _metadata(self, owner: str, resource_type: str, fixes: list[tuple], row: dict) -> list[dict]:
        when = row["updated_at"].isoformat()
        return [
            {
                "id": ids.child_id(owner, f"metadata:{i}"),
                "resource_id": owner,
                "resource_type": resource_type,
                "last_action_date": when,
                "last_action_type": action,
                "field_name": field,
                "previous_value": previous,
                "replacement_value": replacement,
                "updated_by": UPDATED_BY,
            }
            for i, (field, previous, replacement, action) in enumerate(fixes)
        ]

    def _phones(self, row: dict, owner_key: str, owner: str, fallbacks: dict) -> list[dict]:
        numbers = [(n, "voice") for n in self._list(row, "phone", fallbacks, "phones")]
        numbers += [(n, "fax") for n in self._list(row, "fax", fallbacks, "phones")]
        return [
            {"id": ids.child_id(owner, f"phone:{i}"), owner_key: owner, "number": number, "type": kind}
            for i, (number, kind) in enumerate(numbers)
        ]

    def _contacts(self, emails: list[str], owner_key: str, owner: str) -> list[dict]:
        return [{"id": ids.child_id(owner, f"contact:{i}"), owner_key: owner, "email": e} for i, e in enumerate(emails)]

    # ------------------------------------------------------------ taxonomy

    def taxonomy(self, kind: str) -> dict:
        spec = TAXONOMIES[kind]
        return {
            "id": ids.taxonomy_id(kind),
            "name": spec["name"][self.lang],
            "description": spec["description"][self.lang],
            "uri": f"{self.base}{spec['path']}",
            "lang_fallbacks": {},
        }

    def term(self, term: Term, *, detail: bool = False) -> dict:
        fallbacks: dict = {}
        name = self.pick({"nl": term.name_nl, "fr": term.name_fr}, fallbacks, "name") or term.code
        description = self.pick({"nl": term.description_nl, "fr": term.description_fr}, fallbacks, "description")
        parent = self.vocabulary.parent_of(term) if self.vocabulary else None
        if description is None:
            if term.kind == "accreditation" and parent is not None:
                parent_name = self.pick({"nl": parent.name_nl, "fr": parent.name_fr}, fallbacks, "description")
                description = GENERIC_DESCRIPTION["accreditation_under"][self.lang].format(parent=parent_name)
            else:
                description = GENERIC_DESCRIPTION[term.kind][self.lang].format(code=term.code)
        doc = {
            "id": term.id,
            "code": term.code,
            "name": name,
            "description": description,
        }
        if parent is not None:
            doc["parent_id"] = parent.id
        doc["taxonomy"] = TAXONOMIES[term.taxonomy]["name"][self.lang]
        doc["taxonomy_id"] = ids.taxonomy_id(term.taxonomy)
        doc["language"] = fallbacks.get("name", self.lang)
        if term.kind == "sector":
            doc["term_uri"] = f"{self.base}/v1/sectors/{term.code}"
        elif term.kind == "category":
            doc["term_uri"] = f"{self.base}/v1/categories/{term.code}"
        if detail:
            doc["taxonomy_detail"] = self.taxonomy(term.taxonomy)
        doc["lang_fallbacks"] = fallbacks
        return doc

    def _nested_term(self, term: Term) -> dict:
        if term.id not in self._terms:
            self._terms[term.id] = self.term(term)
        return self._terms[term.id]

    def _attributes(self, link_id: str, entity: str, links: list[tuple]) -> list[dict]:
        """Attributes linking ``link_id`` to terms: links are (link_type, kind, code, value)."""
        out, seen = [], set()
        for link_type, kind, code, value in links:
            term = self.vocabulary.term(kind, code) if self.vocabulary else None
            if term is None or term.id in seen:
                continue
            seen.add(term.id)
            attribute = {
                "id": ids.child_id(link_id, f"attribute:{term.id}"),
                "link_id": link_id,
                "link_type": link_type,
                "link_entity": entity,
                "taxonomy_term_id": term.id,
                "taxonomy_term": self._nested_term(term),
            }
            if value is not None:
                attribute["value"] = value
            out.append(attribute)
        return out

    # ------------------------------------------------------------ records

    def organization(self, row: dict, *, full: bool = False, services: str | None = None, locations: bool = True) -> dict:
        """The organization; ``full`` adds its nested objects; ``services``: None, "basic" or "full"."""
        fallbacks: dict = {}
        oid = str(row["uuid"])
        doc: dict = {"id": oid, "name": self.pick(_pair(row, "name_official"), fallbacks, "name") or ""}
        alternates = self._list(row, "name_alternative", fallbacks, "alternate_name")
        if alternates:
            doc["alternate_name"] = "; ".join(alternates)
        description = self.pick(_pair(row, "description"), fallbacks, "description")
        if description is None:  # no description in either language: the activities say what it does
            description = self.pick(_pair(row, "activities"), fallbacks, "description")
        doc["description"] = description or ""
        emails, fixes = self._emails(row, fallbacks, "email")
        if emails:
            doc["email"] = emails[0]
        websites, web_fixes = self._urls(row, "website_official", fallbacks, "website")
        fixes += web_fixes
        if websites:
            doc["website"] = websites[0]
        if row.get("legal_status"):
            status = self.pick(_pair(row["legal_status"], "label"), fallbacks, "legal_status")
            if status:
                doc["legal_status"] = status
        if row.get("start_date"):
            doc["year_incorporated"] = row["start_date"].year
        doc["uri"] = f"{self.base}/v1/organisations/{row['id']}"
        if full:
            doc["contacts"] = self._contacts(emails, "organization_id", oid)
            doc["phones"] = self._phones(row, "organization_id", oid, fallbacks)
            if locations:
                doc["locations"] = [self.location(row, full=True)]
            doc["organization_identifiers"] = [
                {
                    "id": ids.child_id(oid, f"identifier:{number}"),
                    "organization_id": oid,
                    "identifier_scheme": IDENTIFIER_SCHEME,
                    "identifier_type": IDENTIFIER_TYPE[self.lang],
                    "identifier": number,
                }
                for number in row.get("enterprise_numbers") or []
            ]
            doc["metadata"] = self._metadata(oid, "organization", fixes, row)
            if services:
                doc["services"] = [self.service(row, full=services == "full", organization=False)]
        doc["lang_fallbacks"] = fallbacks
        return doc

    def service(self, row: dict, *, full: bool = False, organization: bool = True, service_at_locations: bool = True) -> dict:
        fallbacks: dict = {}
        oid = str(row["uuid"])
        sid = str(ids.record_id(row["uuid"], "service"))
        doc: dict = {"id": sid, "organization_id": oid, "name": self.pick(_pair(row, "name_official"), fallbacks, "name") or ""}
        service_names = self._list(row, "name_service", fallbacks, "alternate_name")
        if service_names:
            doc["alternate_name"] = "; ".join(service_names)
        activities = self.pick(_pair(row, "activities"), fallbacks, "description")
        if activities:
            doc["description"] = activities
        urls, fixes = self._urls(row, "website_official", fallbacks, "url")
        info_urls, info_fixes = self._urls(row, "website_info", fallbacks, "url")
        fixes += info_fixes
        urls += [u for u in info_urls if u not in urls]
        if urls:
            doc["url"] = urls[0]
        emails, email_fixes = self._emails(row, fallbacks, "email")
        fixes += email_fixes
        if emails:
            doc["email"] = emails[0]
        doc["status"] = "active"  # only published records are served
        if row.get("is_interpreting"):
            doc["interpretation_services"] = INTERPRETING[self.lang]
        access = self._list(row, "access", fallbacks, "application_process")
        if access:
            doc["application_process"] = "; ".join(access)
        accreditations = [
            self.pick(_pair(a, "label"), fallbacks, "accreditations") for a in row.get("accreditations") or []
        ]
        accreditations = [a for a in accreditations if a] + self._list(row, "other_accreditation", fallbacks, "accreditations")
        if accreditations:
            doc["accreditations"] = "; ".join(accreditations)
        public = self.pick(_pair(row, "public"), fallbacks, "eligibility_description")
        if public:
            doc["eligibility_description"] = public
        if row.get("last_update"):
            doc["assured_date"] = row["last_update"].isoformat()
        doc["last_modified"] = row["updated_at"].isoformat()
        if organization:
            doc["organization"] = self.organization(row, full=full, locations=False)
        if full:
            doc["phones"] = self._phones(row, "service_id", sid, fallbacks)
            hours = self.pick(_pair(row, "permanency"), fallbacks, "schedules")
            doc["schedules"] = [{"id": ids.child_id(sid, "schedule:0"), "service_id": sid, "description": hours}] if hours else []
            doc["service_areas"] = [self._service_area(sid, zone, fallbacks) for zone in row.get("action_zones") or []]
            if service_at_locations:
                doc["service_at_locations"] = [self.service_at_location(row, full=True, service=False)]
            doc["languages"] = [self._language(sid, x, fallbacks) for x in row.get("languages") or []]
            doc["contacts"] = self._contacts(emails, "service_id", sid)
            doc["attributes"] = self._attributes(sid, "service", self._service_links(row))
            doc["metadata"] = self._metadata(sid, "service", fixes, row)
        doc["lang_fallbacks"] = fallbacks
        return doc

    def minimal_service(self, row: dict) -> dict:
        """``minimal=true``: id and last_modified, with the name and status the schema requires."""
        fallbacks: dict = {}
        doc = {
            "id": str(ids.record_id(row["uuid"], "service")),
            "name": self.pick(_pair(row, "name_official"), fallbacks, "name") or "",
            "status": "active",
            "last_modified": row["updated_at"].isoformat(),
        }
        doc["lang_fallbacks"] = fallbacks
        return doc

    def _service_links(self, row: dict) -> list[tuple]:
        links = [("sector", "sector", s["id"], "inferred" if s.get("inferred") else None) for s in row.get("sectors") or []]
        links += [("category", "category", c["id"], None) for c in row.get("categories") or []]
        links += [
            ("authority", "authority", a["authority"]["id"], None)
            for a in row.get("accreditations") or []
            if a.get("authority")
        ]
        links += [("accreditation", "accreditation", a["id"], None) for a in row.get("accreditations") or []]
        links += [("offer_type", "offer_type", x["id"], None) for x in row.get("offer_types") or []]
        return links

    def _service_area(self, sid: str, zone: dict, fallbacks: dict) -> dict:
        area = {"id": ids.child_id(sid, f"service_area:{zone['id']}"), "service_id": sid}
        name = self.pick(_pair(zone, "label"), fallbacks, "service_areas")
        if name:
            area["name"] = name
        kind = ZONE_KINDS[self.lang].get(zone.get("kind") or "")
        if kind:
            area["description"] = kind
        return area

    def _language(self, sid: str, language: dict, fallbacks: dict) -> dict:
        doc = {"id": ids.child_id(sid, f"language:{language['id']}"), "service_id": sid}
        name = self.pick(_pair(language, "name"), fallbacks, "languages")
        if name:
            doc["name"] = name
        code = LANGUAGE_CODES.get(fold(language.get("name_fr") or "").strip())
        if code:
            doc["code"] = code
        return doc

    def location(self, row: dict, *, full: bool = False) -> dict:
        fallbacks: dict = {}
        oid = str(row["uuid"])
        lid = str(ids.record_id(row["uuid"], "location"))
        doc: dict = {
            "id": lid,
            "location_type": "physical",
            "organization_id": oid,
            "name": self.pick(_pair(row, "name_official"), fallbacks, "name") or "",
        }
        remark = self.pick(_pair(row, "address_remark"), fallbacks, "description")
        if remark:
            doc["description"] = remark
        lat, lon = row.get("lat"), row.get("lon")
        if (lat is None or lon is None) and row.get("x_31370") is not None and row.get("y_31370") is not None:
            lon, lat = to_wgs84(row["x_31370"], row["y_31370"])
        if lat is not None and lon is not None and math.isfinite(lat) and math.isfinite(lon):
            doc["latitude"] = round(lat, 7)
            doc["longitude"] = round(lon, 7)
        if full:
            address = self._address(row, lid, fallbacks)
            doc["addresses"] = [address] if address else []
            doc["attributes"] = self._attributes(lid, "location", [
                ("commune", "commune", row.get("commune_nis"), row.get("commune_nis")),
                ("quartier", "quartier", row.get("quartier_code"), row.get("quartier_code")),
                ("statistical_sector", "statistical_sector", row.get("statistical_sector_code"), row.get("statistical_sector_code")),
            ])
        doc["lang_fallbacks"] = fallbacks
        return doc

    def _address(self, row: dict, lid: str, fallbacks: dict) -> dict | None:
        street = self.pick(_pair(row, "street"), fallbacks, "addresses")
        if not street:
            return None
        line = " ".join(p for p in (street.strip(), (row.get("number") or "").strip()) if p)
        if row.get("postal_box"):
            line += f" {BOX[self.lang]} {row['postal_box']}"
        city = self.pick(row.get("commune_ref") or {}, fallbacks, "addresses") or self.pick(_pair(row, "commune"), fallbacks, "addresses")
        address = {"id": ids.child_id(lid, "address"), "location_id": lid, "address_1": line}
        if row.get("number_building"):
            address["address_2"] = row["number_building"]
        address.update({
            "city": city or "",
            "state_province": REGION[self.lang],
            "postal_code": str(row["postcode"]) if row.get("postcode") else "",
            "country": "BE",
            "address_type": "physical",
        })
        return address

    def service_at_location(self, row: dict, *, full: bool = False, service: bool = True) -> dict:
        fallbacks: dict = {}
        sid = str(ids.record_id(row["uuid"], "service"))
        lid = str(ids.record_id(row["uuid"], "location"))
        doc: dict = {"id": str(ids.record_id(row["uuid"], "service_at_location")), "service_id": sid, "location_id": lid}
        remark = self.pick(_pair(row, "remark"), fallbacks, "description")
        if remark:
            doc["description"] = remark
        doc["location"] = self.location(row, full=full)
        if service:
            doc["service"] = self.service(row, full=full, service_at_locations=False)
        doc["lang_fallbacks"] = fallbacks
        return doc
