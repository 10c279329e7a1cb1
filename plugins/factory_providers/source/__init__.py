"""Extraction from the operational source database (the `factory_source` Connection: SQLite or PostgreSQL)."""
