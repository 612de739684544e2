"""The posting context: the per-process resources a worker's posting slots share, built once."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from backfill.alerts import Alerter
from backfill.api import GrowPanelClient
from backfill.messages import Publisher
from backfill.ratelimit import SharedRateLimiter
from backfill.settings import Settings
from workers.leases import LeaseKeeper


@dataclass
class PostingContext:
    """Per-process resources for posting, built once per process by `from_settings`."""

    engine: Engine
    settings: Settings
    client: GrowPanelClient
    publisher: Publisher
    alerter: Alerter
    owner: str
    limiter: SharedRateLimiter | None = None
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    leases: LeaseKeeper | None = None
    # How long one message's slot goes on taking batches itself (`workers.posting.process_batch`);
    # 0 posts exactly one batch per message (the perf guards count one batch's statements).
    serve_seconds: float = 10.0

    @classmethod
    def from_settings(
        cls, settings: Settings, publisher: Publisher, *, owner: str, concurrency: int = 1, application_name: str = "growpanel-backfill worker"
    ) -> PostingContext:
        """The engine, HTTP client, shared rate limiter and alerter for `concurrency` posting slots."""
        import redis

        from models.db import make_engine

        settings.require("database_url", "celery_broker_url")
        assert settings.database_url and settings.celery_broker_url
        engine = make_engine(settings.database_url, pool_size=concurrency + 2, application_name=application_name)
        client = GrowPanelClient.from_settings(settings, max_connections=max(10, concurrency * 2))
        redis_client = redis.Redis.from_url(settings.celery_broker_url, socket_timeout=10, socket_connect_timeout=10)
        return cls(
            engine=engine,
            settings=settings,
            client=client,
            publisher=publisher,
            alerter=Alerter.from_settings(settings),
            owner=owner,
            limiter=SharedRateLimiter(redis_client, settings.growpanel_max_rps),
            leases=LeaseKeeper(engine, settings.lease_seconds),
        )

    def close(self) -> None:
        """Release connections (process shutdown)."""
        if self.leases is not None:
            self.leases.stop()
        self.client.close()
        self.engine.dispose()
        if self.limiter is not None:
            self.limiter.client.close()
