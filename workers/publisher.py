"""Publishing task messages over Celery: ids only, with a name Flower can show."""

from __future__ import annotations

import logging

from celery import Celery

from backfill.messages import BATCH_QUEUE, PRODUCE_QUEUE, PUBLISH_RETRY, BatchRef

log = logging.getLogger(__name__)


class CeleryPublisher:
    """The `backfill.messages.Publisher` over Celery's `send_task`."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def publish_batch(self, ref: BatchRef, countdown: float | None = None) -> None:
        """One `post_batch` message; a failure to publish is logged (the sweeper re-queues the batch)."""
        try:
            self.app.send_task(
                "post_batch",
                args=[ref.batch_id, ref.run_id, ref.stage, ref.seq, ref.part],
                countdown=countdown,
                queue=BATCH_QUEUE,
                shadow=f"post_batch {ref.label}",
                retry=True,
                retry_policy=PUBLISH_RETRY,
            )
        except Exception as exc:  # noqa: BLE001 - the database still has the batch as queued
            log.warning("could not publish batch %s (%s); the sweeper will re-queue it", ref.label, type(exc).__name__)

    def publish_produce(self, run_id: int) -> None:
        """The producer task of a run."""
        try:
            self.app.send_task(
                "produce",
                args=[run_id],
                queue=PRODUCE_QUEUE,
                shadow=f"produce run {run_id}",
                retry=True,
                retry_policy=PUBLISH_RETRY,
            )
        except Exception as exc:  # noqa: BLE001
            log.warning("could not publish the producer of run %s (%s); the sweeper will retry", run_id, type(exc).__name__)
