"""Alembic migrations of the state database (`growpanel-backfill migrate`)."""
