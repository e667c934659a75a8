"""Geocoding during an import (placeholder until the URBIS client lands)."""

from __future__ import annotations


def make_prepare(settings, engine, mode: str, urbis_url: str | None):
    if mode == "none":
        return None, None
    raise NotImplementedError("geocoding")
