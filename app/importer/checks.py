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


# A Belgian national number as written in the directory: "0", a non-zero digit, then digits with at
# most one ".", "/" or " " between two digits, 9 or 10 digits in all ("02/435.51.38", "0475 12 34 56").
# For such a string phonenumbers.parse(number, "BE") is exactly PhoneNumber(32, int(digits[1:])):
# nothing for it to strip (no extension mark, no letters, no "+"/"00" prefix, no RFC 3966 parts), the
# national prefix "0" is stripped because 8 or 9 digits remain (a possible length in Belgium), and no
# leading zero is left. Validity and the E.164 form still come from phonenumbers itself;
# tests/test_loader_fast_path.py checks this equivalence against e164() on many generated strings.
_BE_NATIONAL = re.compile(r"0[1-9](?:[./ ]?[0-9]){7,8}")
_SEPARATORS = str.maketrans("", "", "./ ")
_INVALID = "not a valid phone number (Belgian numbering plan unless it starts with +)"


def _e164_checked(number: str) -> tuple[str | None, str | None]:
    """(E.164 form, None) or (None, the reason e164() gives); the same answers, faster."""
    if _BE_NATIONAL.fullmatch(number):
        nsn = number.translate(_SEPARATORS)[1:]
        if phonenumbers.is_valid_number(phonenumbers.PhoneNumber(country_code=32, national_number=int(nsn))):
            return "+32" + nsn, None
        return None, _INVALID
    return _e164_reason(number)


def _e164_reason(number) -> tuple[str | None, str | None]:
    try:
        return e164(number), None
    except ValueError as exc:
        return None, str(exc)


class _Memo(dict):
    """Answers per exact value (a record repeats its numbers and addresses in both languages, a
    directory repeats switchboards); emptied when it grows past ``limit`` so memory stays bounded."""

    def __init__(self, fn, limit: int = 100_000):
        super().__init__()
        self.fn = fn
        self.limit = limit

    def __missing__(self, key):
        if len(self) >= self.limit:
            self.clear()
        value = self[key] = self.fn(key)
        return value


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


def _reason(check):
    def run(value: str) -> str | None:
        try:
            check(value)
        except ValueError as exc:
            return str(exc)
        return None
    return run


_PHONES = _Memo(_e164_checked)
_EMAIL_REASONS = _Memo(_reason(check_email))
_URL_REASONS = _Memo(_reason(check_url))
_TEXT_CHECKS = [*((c, _EMAIL_REASONS) for c in EMAIL_FIELDS), *((c, _URL_REASONS) for c in URL_FIELDS)]
_PAIR_FLAGS = [(f"{stem}_{lang}", f"{stem}_{'fr' if lang == 'nl' else 'nl'}", f"{flag}-{lang}-missing")
               for stem, flag in PAIRS.items() for lang in ("nl", "fr")]


def check_row(row: dict, source: str) -> tuple[list[Problem], list[str]]:
    """Hard problems (reject) and soft flags for one organisation row; fills ``phones_e164``."""
    record = str(row.get("id"))
    problems: list[Problem] = []
    numbers: list[str] = []
    get = row.get
    for column in PHONE_FIELDS:
        for value in get(column) or []:
            normalised, reason = _PHONES[value] if value.__class__ is str else _e164_reason(value)
            if reason is not None:
                problems.append(Problem(source, record, column, value, reason))
                continue
            if column.startswith("phone") and normalised not in numbers:
                numbers.append(normalised)
    row["phones_e164"] = numbers
    for column, reasons in _TEXT_CHECKS:
        for value in get(column) or []:
            reason = reasons[value] if value.__class__ is str else reasons.fn(value)
            if reason is not None:
                problems.append(Problem(source, record, column, value, reason))
    flags = [flag for own, other, flag in _PAIR_FLAGS if not get(own) and get(other)]
    return problems, flags


def quality(flags: Iterable[str]) -> int:
    return max(0, 100 - sum(FLAG_COST.get(flag, 10) for flag in set(flags)))
