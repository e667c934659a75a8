"""Text folding shared by search, the inferred tree and the demo generator."""

from __future__ import annotations

import unicodedata


def fold(text: str | None) -> str:
    """Lower case without accents: the Python twin of SQL ``bruso_normalise()``."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
