"""Bruso: the open-data web service behind the bilingual social map of Brussels."""

__version__ = "0.1.0"
