"""Serializers: shape search-core rows for each surface."""
