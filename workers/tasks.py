"""Celery tasks: thin adapters from a message (ids only) to the plain functions that do the work."""

from __future__ import annotations

from backfill.messages import BatchRef
from workers import resources
from workers.celery_app import app
from workers.posting import process_batch
from workers.producing import start_producer


@app.task(name="post_batch", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def post_batch(batch_id: int, run_id: int, stage: str, seq: int, part: str = "") -> str:
    """Post one batch and record its rows (see `workers.posting`)."""
    return process_batch(resources.current().posting, BatchRef(batch_id, run_id, stage, seq, part)).value


@app.task(name="produce", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def produce(run_id: int) -> str:
    """Take the run's producer lease and read its source into batches in a thread of its own (see
    `workers.producing`): the slot is free for posting as soon as the lease is taken."""
    return start_producer(resources.current(), run_id)
