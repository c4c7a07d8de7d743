"""The nearcare backend: ingest, storage, alert rules and routing, clinician web app and API."""
