"""Engines for the state database, built from settings (never at import time)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

# SQLAlchemy is imported by the functions that build engines: `start` reads and writes the state
# database with psycopg alone and must not pay for it (issue 13), and `libpq_url` needs nothing.


class DatabaseUrlError(ValueError):
    """A state database URL that is malformed or not PostgreSQL (settings report it as a ConfigError)."""


def sqlalchemy_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and pick the psycopg 3 driver."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        raise DatabaseUrlError("DATABASE_URL is malformed") from None
    if parsed.drivername in {"postgresql", "postgres", "postgresql+psycopg"}:
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise DatabaseUrlError("DATABASE_URL must be a postgresql:// URL")


def libpq_url(url: str) -> str:
    """The same URL for psycopg itself (no SQLAlchemy driver suffix)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1).replace("postgres://", "postgresql://", 1)


def make_engine(url: str, pool_size: int = 5, application_name: str = "growpanel-backfill") -> Engine:
    """An engine for the state database; one per process."""
    from sqlalchemy import create_engine

    return create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"application_name": application_name, "connect_timeout": 10},
    )
