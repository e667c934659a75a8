"""The importer's field checks: what a record must satisfy to be loaded, and what only lowers its
quality score. Hard problems reject (quarantine) the record; soft findings become quality flags.

Phones are kept as written and also normalised to E.164 (``phonenumbers``, Belgian numbering
plan); e-mails and URLs are checked for shape, never rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

import phonenumbers

from ..loaders import Problem

# A pragmatic address shape (RFC 5321 limits, one @, a dotted domain with a letter TLD).
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")

PHONE_FIELDS = ("phone_nl", "phone_fr", "fax_nl", "fax_fr")
EMAIL_FIELDS = ("email_nl", "email_fr")
URL_FIELDS = ("website_official_nl", "website_official_fr", "website_unofficial_nl", "website_unofficial_fr",
              "website_info_nl", "website_info_fr")
# NL/FR pairs: at least one side is required (checked by the loader for names); a missing side is a flag.
PAIRS = {"name_official": "name", "street": "street", "commune": "commune"}

# How much each finding costs out of 100.
FLAG_COST = {
    "geocode-pending": 30, "address-not-found": 40, "no-point": 50, "source-point-far": 20,
    "postcode-commune-mismatch": 20, "statistical-sector-unverified": 10, "statistical-sector-corrected": 5,
    "street-renamed": 5, "name-nl-missing": 10, "name-fr-missing": 10, "street-nl-missing": 5,
    "street-fr-missing": 5, "commune-nl-missing": 5, "commune-fr-missing": 5,
}


def e164(number: str) -> str:
    """``'02/435.51.38'`` → ``'+3224355138'``; raises ValueError when it is not a valid number."""
    try:
        parsed = phonenumbers.parse(number, "BE")
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("not a valid phone number (Belgian numbering plan unless it starts with +)")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def check_email(value: str) -> None:
    if not _EMAIL.match(value) or ".." in value:
        raise ValueError("not an e-mail address (name@domain.tld)")


def check_url(value: str) -> None:
    """http(s) URLs, or a bare host such as ``www.example.be`` as the legacy data often has."""
    candidate = value if "://" in value else f"http://{value}"
    parts = urlsplit(candidate)
    if parts.scheme not in ("http", "https"):
        raise ValueError("only http and https URLs")
    if not parts.hostname or not _HOST.match(parts.hostname) or " " in value:
        raise ValueError("not a web address (https://host.tld/…)")


def check_row(row: dict, source: str) -> tuple[list[Problem], list[str]]:
    """Hard problems (reject) and soft flags for one organisation row; fills ``phones_e164``."""
    record = str(row.get("id"))
    problems: list[Problem] = []
    numbers: list[str] = []
    for column in PHONE_FIELDS:
        for value in row.get(column) or []:
            try:
                normalised = e164(value)
            except ValueError as exc:
                problems.append(Problem(source, record, column, value, str(exc)))
                continue
            if column.startswith("phone") and normalised not in numbers:
                numbers.append(normalised)
    row["phones_e164"] = numbers
    for column, check in [*((c, check_email) for c in EMAIL_FIELDS), *((c, check_url) for c in URL_FIELDS)]:
        for value in row.get(column) or []:
            try:
                check(value)
            except ValueError as exc:
                problems.append(Problem(source, record, column, value, str(exc)))
    flags = [f"{flag}-{lang}-missing" for stem, flag in PAIRS.items() for lang in ("nl", "fr")
             if not row.get(f"{stem}_{lang}") and row.get(f"{stem}_{'fr' if lang == 'nl' else 'nl'}")]
    return problems, flags


def quality(flags: Iterable[str]) -> int:
    return max(0, 100 - sum(FLAG_COST.get(flag, 10) for flag in set(flags)))
