"""The state database: runs, stages, batches, attempts and the per-row audit (SQLAlchemy 2 models).

`models.tables` holds the typed models (what Alembic migrates); `models.db` builds engines. Import
them by module: this package imports nothing itself, so commands that only need an engine do not pay
for the ORM.
"""
