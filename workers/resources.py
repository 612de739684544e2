"""Per-process resources (engine, HTTP client, Redis), created by the start-up hooks after any fork."""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass

from backfill.dispatch import advance
from backfill.errors import LeaseLost
from backfill.settings import Settings
from producers.produce import ProducerContext
from workers.context import PostingContext
from workers.publisher import CeleryPublisher


@dataclass
class WorkerResources:
    """Everything a task needs, one per process."""

    settings: Settings
    posting: PostingContext

    def producer(self, data_source: str, stopping: threading.Event | None = None) -> ProducerContext:
        """A producer context for a run of `data_source`; it stops at a checkpoint once `stopping` is set."""
        posting = self.posting
        max_in_flight = self.settings.max_in_flight

        def on_checkpoint(run_id: int) -> None:
            advance(posting.engine, run_id, posting.publisher, max_in_flight)
            if stopping is not None and stopping.is_set():
                # Everything up to here is committed: give the lease back (produce_run's finally).
                raise LeaseLost(f"producer of run {run_id}: the worker is shutting down")

        return ProducerContext.from_settings(self.settings, posting.engine, data_source, owner=posting.owner, on_checkpoint=on_checkpoint)

    def close(self) -> None:
        """Release connections (worker shutdown)."""
        self.posting.close()


_current: WorkerResources | None = None


def init_resources(settings: Settings, concurrency: int) -> WorkerResources:
    """Create this process's resources (idempotent per process)."""
    global _current
    if _current is not None:
        return _current
    from workers.celery_app import app

    settings.require("database_url", "celery_broker_url", "source_database_url")
    posting = PostingContext.from_settings(
        settings, CeleryPublisher(app), owner=f"{socket.gethostname()}:{os.getpid()}", concurrency=concurrency
    )
    _current = WorkerResources(settings=settings, posting=posting)
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
