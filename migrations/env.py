"""Alembic environment: metadata from `models`, URL from the importer's settings."""

from __future__ import annotations

from alembic import context
from models.tables import Base
from models.db import make_engine

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        from backfill.settings import load_settings

        settings = load_settings()
        settings.require("database_url")
        url = settings.database_url
    assert url
    return url


def run_migrations_offline() -> None:
    """Emit SQL without a connection (`alembic upgrade head --sql`)."""
    from models.db import sqlalchemy_url

    context.configure(url=sqlalchemy_url(_url()), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate over a connection, under an advisory lock so concurrent `migrate`s queue up."""
    engine = make_engine(_url(), pool_size=1, application_name="growpanel-backfill migrate")
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT pg_advisory_lock(727274001)")
        try:
            context.configure(connection=connection, target_metadata=target_metadata)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.exec_driver_sql("SELECT pg_advisory_unlock(727274001)")
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
