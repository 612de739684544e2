"""Building what a command needs from the settings: engine, publisher, source check, a quick reading connection.

Nothing heavy is imported at module level: `status`, `errors` and `runs` use only `state_url` and
`reader`, which import neither pydantic nor SQLAlchemy (issue 13: these answer within 150 ms).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import console.cli as cli
from backfill.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from backfill.settings import Settings

_POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")


def settings(*required: str) -> Settings:
    """Settings from the environment and `.env`, with the variables this command cannot do without."""
    from backfill.settings import load_settings

    result = load_settings()
    cli.SECRETS[:] = result.secrets()
    result.require(*required)
    return result


def _raw_setting(name: str) -> str | None:
    """The value pydantic-settings would read for `name`: the environment (any case, empty ignored), then `.env`."""
    for source in (os.environ, None):
        if source is None:
            # Settings reads `.env` from the working directory, with python-dotenv, keys in any case.
            if not Path(".env").is_file():
                return None
            from dotenv import dotenv_values

            source = dotenv_values(".env", encoding="utf-8")  # type: ignore[assignment]
        found = [v for k, v in source.items() if k.lower() == name and v]
        if found:
            return found[-1]
    return None


def state_url() -> str:
    """DATABASE_URL as `settings("database_url")` reads it, without loading pydantic.

    Only a well-formed value is read here; anything else (unset, empty, not PostgreSQL) goes to the
    full Settings, so the one-line error is the very one every other command prints.
    """
    url = _raw_setting("database_url")
    if url is not None and url.strip() and url.startswith(_POSTGRES_SCHEMES):
        return url
    value = settings("database_url").database_url
    assert value is not None
    return value


def _problem(exc: Exception) -> ConfigError:
    """A state database error as the one line `console.cli.handles_errors` prints for SQLAlchemy's."""
    from console.libpq import StateDbError

    assert isinstance(exc, StateDbError)
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if exc.sqlstate == "42P01":
        return ConfigError("the state database is not migrated: run `growpanel-backfill migrate` first")
    if exc.sqlstate is None:
        return ConfigError(f"DATABASE_URL: cannot use the state database: {cli.connection_failure(text)}")
    return ConfigError(f"state database error: {lines[0] if lines else exc.sqlstate}")


class Reader:
    """A reading connection to the state database whose errors are one-line ConfigErrors."""

    def __init__(self, url: str) -> None:
        from console.libpq import StateDbError, connect

        self._error = StateDbError
        try:
            self.conn = connect(url)
        except StateDbError as exc:
            raise _problem(exc) from None

    def fetch(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        """See `console.libpq.Connection.fetch`."""
        try:
            return self.conn.fetch(query, params)
        except self._error as exc:
            raise _problem(exc) from None

    def stream(self, query: str, params: Any = None, size: int = 2000) -> Any:
        """See `console.libpq.Connection.stream`."""
        try:
            yield from self.conn.stream(query, params, size)
        except self._error as exc:
            raise _problem(exc) from None

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def reader() -> Reader:
    """The state database for a read-only command (DATABASE_URL), checked to be reachable and migrated."""
    result = Reader(state_url())
    result.fetch("SELECT 1 FROM runs LIMIT 1")
    return result


def engine(s: Settings) -> Engine:
    """The state database, checked to be reachable and migrated."""
    from sqlalchemy import text

    from models.db import make_engine

    assert s.database_url is not None
    eng = make_engine(s.database_url, pool_size=2, application_name="growpanel-backfill cli")
    with eng.connect() as conn:
        conn.execute(text("SELECT 1 FROM runs LIMIT 1"))
    return eng


def state_connection(s: Settings) -> Any:
    """The state database over psycopg alone, for `start`'s path (SQLAlchemy takes ~0.15 s to import:
    issue 13), checked to be reachable and migrated; its errors are the one-line ConfigErrors of `engine`."""
    import psycopg

    from models.db import libpq_url

    assert s.database_url is not None
    if not s.database_url.startswith(_POSTGRES_SCHEMES):
        raise ConfigError("DATABASE_URL must be a postgresql:// URL")
    try:
        conn = psycopg.connect(libpq_url(s.database_url), connect_timeout=10, application_name="growpanel-backfill cli")
    except psycopg.ProgrammingError:
        raise ConfigError("DATABASE_URL is malformed") from None
    except psycopg.OperationalError as exc:
        raise ConfigError(f"DATABASE_URL: cannot use the state database: {cli.connection_failure(str(exc))}") from None
    try:
        conn.execute("SELECT 1 FROM runs LIMIT 1")
        conn.rollback()
    except psycopg.errors.UndefinedTable:
        conn.close()
        raise ConfigError("the state database is not migrated: run `growpanel-backfill migrate` first") from None
    except psycopg.Error as exc:
        conn.close()
        raise ConfigError(f"state database error: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
    return conn


def publisher(s: Settings) -> Any:
    """The publisher for CELERY_BROKER_URL: Celery-protocol messages straight to Redis (issue 13: Celery
    alone takes ~0.1 s to import and configure), through Celery itself for a URL redis-py cannot be
    trusted to read as kombu does (see `backfill.broker.takes`)."""
    from backfill.broker import RedisPublisher, takes

    assert s.celery_broker_url is not None
    if takes(s.celery_broker_url):
        return RedisPublisher.from_url(s.celery_broker_url)
    from workers.celery_app import app, use_settings
    from workers.publisher import CeleryPublisher

    use_settings(s)
    return CeleryPublisher(app)


def check_broker(s: Settings) -> None:
    """Fail early, with the variable's name, when Redis does not answer."""
    import redis

    assert s.celery_broker_url is not None
    try:
        client = redis.Redis.from_url(s.celery_broker_url, socket_connect_timeout=5, socket_timeout=5)
        client.ping()
        client.close()
    except (redis.RedisError, ValueError) as exc:
        raise ConfigError(f"CELERY_BROKER_URL: the broker does not answer ({type(exc).__name__}: {exc})") from None
