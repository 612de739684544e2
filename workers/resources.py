"""Per-process resources (engine, HTTP client, Redis), created by the start-up hooks after any fork."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import redis

from backfill.alerts import Alerter
from backfill.api import GrowPanelClient
from backfill.ratelimit import SharedRateLimiter
from backfill.settings import Settings
from models.db import make_engine
from producers.normalize import PayloadOptions
from producers.produce import ProducerContext
from workers.posting import PostingContext
from workers.publisher import CeleryPublisher


@dataclass
class WorkerResources:
    """Everything a task needs, one per process."""

    settings: Settings
    posting: PostingContext
    redis: redis.Redis

    def producer(self, data_source: str) -> ProducerContext:
        """A producer context for a run of `data_source`."""
        from backfill.dispatch import advance

        settings = self.settings
        assert settings.source_database_url is not None
        posting = self.posting
        return ProducerContext(
            engine=posting.engine,
            source_url=settings.source_database_url,
            options=PayloadOptions(
                data_source=data_source,
                invoice_amount_field=settings.invoice_amount_field,
                plan_send_external_id=settings.plan_send_external_id,
            ),
            lease_seconds=settings.producer_lease_seconds,
            owner=posting.owner,
            on_checkpoint=lambda run_id: advance(posting.engine, run_id, posting.publisher, settings.max_in_flight),
        )

    def close(self) -> None:
        """Release connections (worker shutdown)."""
        self.posting.client.close()
        self.posting.engine.dispose()
        self.redis.close()


_current: WorkerResources | None = None


def init_resources(settings: Settings, concurrency: int) -> WorkerResources:
    """Create this process's resources (idempotent per process)."""
    global _current
    if _current is not None:
        return _current
    from workers.celery_app import app

    settings.require("database_url", "celery_broker_url", "source_database_url")
    assert settings.database_url and settings.celery_broker_url
    engine = make_engine(settings.database_url, pool_size=concurrency + 2, application_name="growpanel-backfill worker")
    client = GrowPanelClient(
        settings.growpanel_api_url,
        timeout=settings.http_timeout,
        connect_timeout=settings.http_connect_timeout,
        max_connections=max(10, concurrency * 2),
    )
    redis_client = redis.Redis.from_url(settings.celery_broker_url, socket_timeout=10, socket_connect_timeout=10)
    posting = PostingContext(
        engine=engine,
        settings=settings,
        client=client,
        publisher=CeleryPublisher(app),
        alerter=Alerter(settings.alert_webhook_url),
        owner=f"{socket.gethostname()}:{os.getpid()}",
        limiter=SharedRateLimiter(redis_client, settings.growpanel_max_rps),
    )
    _current = WorkerResources(settings=settings, posting=posting, redis=redis_client)
    return _current


def current() -> WorkerResources:
    """This process's resources; initialised on first use if no hook ran (e.g. a custom pool)."""
    if _current is None:
        from workers.celery_app import app, app_settings

        return init_resources(app_settings(), int(app.conf.worker_concurrency or 4))
    return _current


def close_resources() -> None:
    """Dispose of this process's resources."""
    global _current
    if _current is not None:
        _current.close()
        _current = None
