"""The importer: sources → checks → geocoding → enrichment → one transaction, with a run record
and a quarantine (see app.importer.run)."""
