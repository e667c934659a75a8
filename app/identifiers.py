"""Belgian enterprise numbers (BCE/KBO): parsing, the mod-97 check, and Official Journal links."""

from __future__ import annotations

import re

_NON_DIGITS = re.compile(r"[\s./-]")
BOJ_URL = "http://www.ejustice.just.fgov.be/cgi_tsv/tsv_rech.pl?language={lang}&btw={digits}&liste=Liste"


class InvalidEnterpriseNumber(ValueError):
    pass


def normalise_enterprise_number(value: str) -> str:
    """``'BE 0212.347.945'`` → ``'0212.347.945'``; raises InvalidEnterpriseNumber with the reason."""
    raw = str(value).strip()
    digits = _NON_DIGITS.sub("", raw.upper().removeprefix("BE"))
    if not digits.isdigit():
        raise InvalidEnterpriseNumber(f"{raw!r} is not a number of the form 0123.456.789")
    if len(digits) == 9:  # old 9-digit numbers get the leading 0
        digits = "0" + digits
    if len(digits) != 10 or digits[0] not in "01":
        raise InvalidEnterpriseNumber(f"{raw!r} must have 10 digits starting with 0 or 1")
    if 97 - int(digits[:8]) % 97 != int(digits[8:]):
        raise InvalidEnterpriseNumber(f"{raw!r} fails the mod-97 check")
    return f"{digits[:4]}.{digits[4:7]}.{digits[7:]}"


def belgian_official_journal_url(enterprise_number: str, lang: str) -> str:
    """The Moniteur belge / Belgisch Staatsblad search page of an enterprise (``lang`` = fr|nl)."""
    return BOJ_URL.format(lang=lang, digits=enterprise_number.replace(".", ""))
