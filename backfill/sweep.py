"""The periodic check: recover what a crash or a lost broker left behind, one sweeper at a time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Engine, text

from backfill import runs, store
from backfill.dispatch import advance
from backfill.messages import BatchRef, Publisher
from models.states import BatchState

SWEEP_LOCK = 727274002


@dataclass(frozen=True)
class SweepPolicy:
    """Timeouts of the periodic check (from settings)."""

    queue_timeout: float
    max_deliveries: int
    max_in_flight: int
    retry_grace: float


class PauseHook(Protocol):
    """Told when the sweep pauses a run (to raise an alert)."""

    def __call__(self, run_id: int, data_source: str, stage: str, reason: str) -> None:
        """Called once per paused run."""


def sweep(engine: Engine, publisher: Publisher, policy: SweepPolicy, on_pause: PauseHook | None = None) -> dict[str, int]:
    """Recover what a crash or a lost broker left behind, for every running run; one sweeper at a time.

    - a batch whose lease expired (its worker died) is queued again, or failed after too many deaths;
    - a batch queued longer than QUEUE_TIMEOUT (its message was lost) is published again;
    - a batch whose retry time passed long ago (its countdown message was lost) is queued again;
    - a run whose producer died is given a new producer;
    - then every running run is advanced.
    """
    found = {"expired": 0, "lost": 0, "overdue": 0, "producers": 0, "failed": 0}
    republish: list[BatchRef] = []
    paused: list[tuple[int, str, str, str]] = []
    with engine.begin() as conn:
        if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": SWEEP_LOCK}).scalar_one():
            return found
        for row in store.recover_expired(conn, policy.max_deliveries):
            ref = BatchRef(row.id, row.run_id, row.stage, row.seq, row.part)
            if row.state == BatchState.FAILED:
                found["failed"] += 1
                reason = f"batch {ref.label} failed: its worker died {policy.max_deliveries} times while posting it"
                if runs.pause_run(conn, row.run_id, reason):
                    paused.append((row.run_id, row.data_source, row.stage, reason))
            else:
                found["expired"] += 1
                republish.append(ref)
        lost = store.requeue_stale(conn, policy.queue_timeout)
        found["lost"] = len(lost)
        overdue = store.requeue_overdue(conn, policy.retry_grace)
        found["overdue"] = len(overdue)
        republish += lost + overdue
        producers = runs.runs_needing_producer(conn, policy.queue_timeout)
        found["producers"] = len(producers)
        running = runs.running_runs(conn)
    for ref in republish:
        publisher.publish_batch(ref)
    for run_id in producers:
        publisher.publish_produce(run_id)
    if on_pause is not None:
        for run_id, data_source, stage, reason in paused:
            on_pause(run_id, data_source, stage, reason)
    for run_id in running:
        advance(engine, run_id, publisher, policy.max_in_flight)
    return found
