"""The Celery application: configured from Settings when first used, never at import time."""

from __future__ import annotations

import sys
from typing import Any

from celery import Celery

from backfill.errors import ConfigError
from backfill.messages import BATCH_QUEUE, PRODUCE_QUEUE
from backfill.settings import Settings, load_settings

app = Celery("growpanel_backfill", include=["workers.tasks", "workers.hooks"])

_settings: Settings | None = None


def use_settings(settings: Settings) -> None:
    """Configure the app from settings built by the entry point (the CLI)."""
    global _settings
    _settings = settings
    app.conf.update(celery_config(settings))


def app_settings() -> Settings:
    """The settings the app was configured with (built from the environment for `celery -A workers`)."""
    global _settings
    if _settings is None:
        try:
            _settings = load_settings()
            _settings.require("celery_broker_url", "database_url")
        except ConfigError as exc:
            print(f"growpanel-backfill: {exc}", file=sys.stderr)
            raise SystemExit(3) from None
    return _settings


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings that follow from our design (see docs/architecture.md)."""
    return {
        "broker_url": settings.celery_broker_url,
        "broker_connection_retry_on_startup": True,
        # Outcomes live in Postgres; Celery keeps no results.
        "result_backend": None,
        "task_ignore_result": True,
        # A message is acknowledged after the batch is recorded, and given back if the pool child dies.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # A worker takes a message only when a slot is free. Without this, every countdown (retry) message
        # it holds raises its prefetch by one, so it can hold queued batches it has no slot for: if it is
        # killed, those wait QUEUE_TIMEOUT (600 s) instead of LEASE_SECONDS to be published again.
        "worker_disable_prefetch": True,
        # Redis re-delivers unacked messages after this; the database leases recover much sooner, so it
        # only has to be longer than any countdown we schedule and than a producer task.
        "broker_transport_options": {"visibility_timeout": 6 * 3600},
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": BATCH_QUEUE,
        "task_routes": {"post_batch": {"queue": BATCH_QUEUE}, "produce": {"queue": PRODUCE_QUEUE}},
        # Flower shows tasks from the workers' events: on from the start. No "sent" events: one more Redis
        # message per batch published, for a state Flower does not need.
        "worker_send_task_events": True,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
    }


@app.on_configure.connect
def _configure(sender: Celery, **_: Any) -> None:
    settings = app_settings()
    sender.conf.update(celery_config(settings))
