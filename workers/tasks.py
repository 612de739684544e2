"""Celery tasks: thin adapters from a message (ids only) to the plain functions that do the work."""

from __future__ import annotations

from backfill.messages import BatchRef
from workers import resources
from workers.celery_app import app
from workers.posting import process_batch
from workers.producing import run_producer


@app.task(name="post_batch", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def post_batch(batch_id: int, run_id: int, stage: str, seq: int, part: str = "") -> str:
    """Post one batch and record its rows (see `workers.posting`)."""
    return process_batch(resources.current().posting, BatchRef(batch_id, run_id, stage, seq, part)).value


@app.task(name="produce", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def produce(run_id: int) -> str:
    """Read the source of a run into batches (see `producers.produce`)."""
    return run_producer(resources.current(), run_id)
