"""Building what a command needs from the settings: engine, publisher, source check."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

import console.cli as cli
from backfill.errors import ConfigError
from backfill.settings import Settings, load_settings
from models.db import make_engine


def settings(*required: str) -> Settings:
    """Settings from the environment and `.env`, with the variables this command cannot do without."""
    result = load_settings()
    cli.SECRETS[:] = result.secrets()
    result.require(*required)
    return result


def engine(s: Settings) -> Engine:
    """The state database, checked to be reachable and migrated."""
    assert s.database_url is not None
    eng = make_engine(s.database_url, pool_size=2, application_name="growpanel-backfill cli")
    with eng.connect() as conn:
        conn.execute(text("SELECT 1 FROM runs LIMIT 1"))
    return eng


def publisher(s: Settings) -> Any:
    """A Celery publisher configured from these settings (imports Celery only when needed)."""
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
