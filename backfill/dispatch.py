"""Moving a run forward: open the next stage when the current one is done, and keep batches flowing.

The state database decides everything here; the broker only carries the messages we publish after
each commit. `advance` is called by a worker after every batch it finishes, by the producer after every
checkpoint, by `start`/`resume`, and by the periodic sweep, and it is cheap and idempotent: under a
row lock on the run, it finishes the stage if every batch of it has a final outcome, then queues pending
batches (whose dependency is done) until MAX_IN_FLIGHT batches of the run are queued or running.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, Row, text

from backfill import runs, store
from backfill.messages import BatchRef, Publisher
from models.states import IN_FLIGHT_STATES, STAGES, RunState, sql_list

log = logging.getLogger(__name__)

_IN_FLIGHT = sql_list(IN_FLIGHT_STATES)


def advance(engine: Engine, run_id: int, publisher: Publisher, max_in_flight: int) -> list[BatchRef]:
    """Finish completed stages, finish the run, and queue batches up to the in-flight limit."""
    with engine.connect() as conn:
        return advance_on(conn, run_id, publisher, max_in_flight)


def advance_on(conn: Connection, run_id: int, publisher: Publisher, max_in_flight: int) -> list[BatchRef]:
    """`advance` on a connection the caller already holds (a worker's, after its batch)."""
    with conn.begin():
        refs, _ = _advance_locked(conn, run_id, max_in_flight)
    for ref in refs:
        publisher.publish_batch(ref)
    return refs


def advance_after(
    conn: Connection, run_id: int, publisher: Publisher, max_in_flight: int, done_id: int, owner: str, lease_seconds: float
) -> Row[Any] | None:
    """`advance_on` after the worker finished batch `done_id`, first taking (as `owner`) the next batch
    for the same slot to post, if the in-flight limit has room: the batch that continues the chain of
    `done_id`, else the stage's first ready pending one (see `store.claim_next`). Returned claimed.

    Why: a message costs a slot ~15 ms between two requests (the ack, the task events, the next
    delivery) and its worker ~1.5 ms of CPU; and a chain's next link, ready only once its predecessor
    is done, would wait behind up to MAX_IN_FLIGHT queued messages, once per link, so that a big
    customer's chain ended its stage long after everything else (issue 13). Taken here, under the
    run's lock, the batch still counts against MAX_IN_FLIGHT, and its lease protects it like any claim.
    The batches already queued keep their messages, for idle slots and for the slots that come back
    to the queue (`workers.posting`: after `ctx.serve_seconds`).
    """
    with conn.begin():
        refs, taken = _advance_locked(
            conn, run_id, max_in_flight, lambda stage: store.claim_next(conn, run_id, stage, done_id, owner, lease_seconds)
        )
    for ref in refs:
        publisher.publish_batch(ref)
    return taken


def _advance_locked(
    conn: Connection, run_id: int, max_in_flight: int, take: Callable[[str], Row[Any] | None] | None = None
) -> tuple[list[BatchRef], Row[Any] | None]:
    """The batches queued (to publish after commit), and the one `take` claimed for the caller, if any."""
    if not runs.lock_running(conn, run_id):
        return [], None
    # A statement of its own, after the lock: in READ COMMITTED it sees what the transaction that held
    # the lock before us committed (a subquery of the locking statement would not).
    # The stage and its in-flight count in one round trip (one snapshot, too).
    stage, produced, done_at, in_flight = conn.execute(
        text(
            f"""
            SELECT r.current_stage, s.produced, s.done_at,
                   (SELECT count(*) FROM batches b
                    WHERE b.run_id = r.id AND b.stage = r.current_stage AND b.state IN {_IN_FLIGHT})
            FROM runs r JOIN run_stages s ON s.run_id = r.id AND s.stage = r.current_stage
            WHERE r.id = :id
            """  # noqa: S608 - fixed state names
        ),
        {"id": run_id},
    ).one()
    taken = take(stage) if take is not None and done_at is None and in_flight < max_in_flight else None
    if taken is not None:
        in_flight += 1
    # The stage can only be over when nothing of it is in flight: only then look further.
    while done_at is not None or (produced and not in_flight and not store.has_open_batches(conn, run_id, stage)):
        if done_at is None:
            runs.close_stage(conn, run_id, stage, store.stage_counts(conn, run_id)[stage])
        index = STAGES.index(stage)
        if index + 1 == len(STAGES):
            _finish_run(conn, run_id)
            return [], taken
        stage = STAGES[index + 1]
        runs.open_stage(conn, run_id, stage)
        produced, done_at = conn.execute(
            text("SELECT produced, done_at FROM run_stages WHERE run_id = :r AND stage = :s"), {"r": run_id, "s": stage}
        ).one()
        in_flight = store.in_flight(conn, run_id, stage)
    room = max_in_flight - in_flight
    return (store.queue_ready(conn, run_id, stage, room) if room > 0 else []), taken


def _finish_run(conn: Connection, run_id: int) -> None:
    if any(store.has_open_batches(conn, run_id, stage) for stage in STAGES):
        # Never call a run finished while a batch of it has no outcome (a stage closed too early would
        # otherwise strand it): the next advance or sweep looks again.
        log.warning("run %s: every stage looks done but a batch is still open; not finishing it yet", run_id)
        return
    log.info("run %s finished: %s", run_id, runs.finish_run(conn, run_id))


def resume_run(
    engine: Engine, run_id: int, publisher: Publisher, max_in_flight: int, started_at: float | None = None
) -> runs.ResumeResult:
    """`resume`: reopen the run (see `runs.reopen_run`), restart its producer if it has none, queue batches."""
    result = runs.reopen_run(engine, run_id, started_at)
    if result.state != RunState.RUNNING:
        return result
    if result.producer_restarted:
        publisher.publish_produce(run_id)
    advance(engine, run_id, publisher, max_in_flight)
    return result


__all__ = ["BatchRef", "Publisher", "advance", "advance_after", "advance_on", "resume_run"]
