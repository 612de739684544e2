"""Moving a run forward: open the next stage when the current one is done, and keep batches flowing.

The state database decides everything here; the broker only carries the messages we publish after
each commit. `advance` is called by a worker after every batch it finishes, by the producer after every
checkpoint, by `start`/`resume`, and by the periodic sweep, and it is cheap and idempotent: under a
row lock on the run, it finishes the stage if every batch of it has a final outcome, then queues pending
batches (whose dependency is done) until MAX_IN_FLIGHT batches of the run are queued or running.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, text

from backfill.store import stage_counts
from models.states import STAGES

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchRef:
    """What a batch message carries: ids only, never rows, never the key."""

    batch_id: int
    run_id: int
    stage: str
    seq: int
    part: str = ""

    @property
    def label(self) -> str:
        """`invoices #123 of run 7` (with the half for a split batch)."""
        number = f"{self.seq}.{self.part}" if self.part else str(self.seq)
        return f"{self.stage} #{number} of run {self.run_id}"


class Publisher(Protocol):
    """Sends task messages; implemented over Celery in `workers.publisher`."""

    def publish_batch(self, ref: BatchRef, countdown: float | None = None) -> None:
        """Queue one batch for posting."""

    def publish_produce(self, run_id: int) -> None:
        """Queue (or re-queue) the producer of a run."""


def advance(engine: Engine, run_id: int, publisher: Publisher, max_in_flight: int) -> list[BatchRef]:
    """Finish completed stages, finish the run, and queue batches up to the in-flight limit."""
    with engine.connect() as conn:
        return advance_on(conn, run_id, publisher, max_in_flight)


def advance_on(conn: Connection, run_id: int, publisher: Publisher, max_in_flight: int) -> list[BatchRef]:
    """`advance` on a connection the caller already holds (a worker's, after its batch)."""
    with conn.begin():
        refs = _advance_locked(conn, run_id, max_in_flight)
    for ref in refs:
        publisher.publish_batch(ref)
    return refs


def _advance_locked(conn: Connection, run_id: int, max_in_flight: int) -> list[BatchRef]:
    run = conn.execute(
        text("SELECT state, current_stage, dry_run FROM runs WHERE id = :id FOR UPDATE"), {"id": run_id}
    ).mappings().first()
    if run is None or run["state"] != "running" or run["dry_run"]:
        return []
    # A statement of its own, after the lock: in READ COMMITTED it sees what the transaction that held
    # the lock before us committed (a subquery of the locking statement would not).
    run = conn.execute(
        text(
            """
            SELECT r.current_stage, s.produced, s.done_at,
                   (SELECT count(*) FROM batches b WHERE b.run_id = r.id AND b.stage = r.current_stage
                      AND b.state IN ('queued', 'running', 'retry_wait')) AS in_flight
            FROM runs r JOIN run_stages s ON s.run_id = r.id AND s.stage = r.current_stage
            WHERE r.id = :id
            """
        ),
        {"id": run_id},
    ).mappings().one()
    stage = run["current_stage"]
    in_flight = int(run["in_flight"])
    st: Any = run
    # The stage can only be over when nothing of it is in flight: only then look further.
    while st["done_at"] is not None or (st["produced"] and not in_flight and not _has_open_batches(conn, run_id, stage)):
        if st["done_at"] is None:
            conn.execute(
                text("UPDATE run_stages SET done_at = now(), summary = CAST(:summary AS jsonb) WHERE run_id = :r AND stage = :s"),
                {"r": run_id, "s": stage, "summary": _json(stage_counts(conn, run_id)[stage])},
            )
        index = STAGES.index(stage)
        if index + 1 == len(STAGES):
            _finish_run(conn, run_id)
            return []
        stage = STAGES[index + 1]
        conn.execute(text("UPDATE runs SET current_stage = :s WHERE id = :r"), {"s": stage, "r": run_id})
        st = conn.execute(
            text("SELECT produced, done_at FROM run_stages WHERE run_id = :r AND stage = :s"), {"r": run_id, "s": stage}
        ).mappings().one()
        in_flight = int(
            conn.execute(
                text(
                    "SELECT count(*) FROM batches WHERE run_id = :r AND stage = :s "
                    "AND state IN ('queued', 'running', 'retry_wait')"
                ),
                {"r": run_id, "s": stage},
            ).scalar_one()
        )
    room = max_in_flight - int(in_flight)
    if room <= 0:
        return []
    rows = conn.execute(
        text(
            """
            UPDATE batches SET state = 'queued', queued_at = now()
            WHERE id IN (
                SELECT b.id FROM batches b
                WHERE b.run_id = :r AND b.stage = :s AND b.state = 'pending'
                  AND (b.depends_on IS NULL
                       OR EXISTS (SELECT 1 FROM batches d WHERE d.id = b.depends_on AND d.state = 'done'))
                ORDER BY b.pass_no, b.seq, b.part
                LIMIT :room
            )
            RETURNING id, seq, part
            """
        ),
        {"r": run_id, "s": stage, "room": room},
    ).all()
    return [BatchRef(r.id, run_id, stage, r.seq, r.part) for r in sorted(rows, key=lambda r: (r.seq, r.part))]


_UNFINISHED = ("pending", "queued", "running", "retry_wait", "failed")


def pause_run(conn: Connection, run_id: int, reason: str) -> bool:
    """running -> paused, with the reason an operator will read; False if the run was not running."""
    row = conn.execute(
        text("UPDATE runs SET state = 'paused', paused_reason = :reason WHERE id = :r AND state = 'running' RETURNING id"),
        {"reason": reason, "r": run_id},
    ).first()
    return row is not None


# One probe of the dispatch index per unfinished state, in the index's order: a stage made of done
# batches is never walked.
_OPEN_PROBES = " OR ".join(
    f"(SELECT 1 FROM batches WHERE run_id = :r AND stage = :s AND state = '{state}' "
    "ORDER BY pass_no, seq, part LIMIT 1) IS NOT NULL"
    for state in _UNFINISHED
)


def _has_open_batches(conn: Connection, run_id: int, stage: str) -> bool:
    """Whether a batch of the stage has no final state."""
    return bool(conn.execute(text(f"SELECT {_OPEN_PROBES}"), {"r": run_id, "s": stage}).scalar_one())  # noqa: S608


def _finish_run(conn: Connection, run_id: int) -> None:
    if any(_has_open_batches(conn, run_id, stage) for stage in STAGES):
        # Never call a run finished while a batch of it has no outcome (a stage closed too early would
        # otherwise strand it): the next advance or sweep looks again.
        log.warning("run %s: every stage looks done but a batch is still open; not finishing it yet", run_id)
        return
    rejected = conn.execute(
        text(
            "SELECT coalesce(sum(n_error + n_invalid + n_skipped), 0) FROM batches WHERE run_id = :r"
        ),
        {"r": run_id},
    ).scalar_one()
    state = "completed_with_errors" if rejected else "succeeded"
    conn.execute(
        text("UPDATE runs SET state = :state, finished_at = now() WHERE id = :r AND state = 'running'"),
        {"state": state, "r": run_id},
    )
    log.info("run %s finished: %s", run_id, state)


def _json(value: object) -> str:
    import orjson

    return orjson.dumps(value).decode()


SWEEP_LOCK = 727274002


@dataclass(frozen=True)
class SweepPolicy:
    """Timeouts of the periodic check (from settings)."""

    queue_timeout: float
    max_deliveries: int
    max_in_flight: int
    retry_grace: float


def sweep(engine: Engine, publisher: Publisher, policy: SweepPolicy, on_pause: "PauseHook | None" = None) -> dict[str, int]:
    """Recover what a crash or a lost broker left behind, for every running run; one sweeper at a time.

    - a batch whose lease expired (its worker died) is queued again, or failed after too many deaths;
    - a batch queued longer than QUEUE_TIMEOUT (its message was lost) is published again;
    - a batch whose retry time passed long ago (its countdown message was lost) is queued again;
    - a run whose producer died is given a new producer;
    - then every running run is advanced.
    """
    found = {"expired": 0, "lost": 0, "overdue": 0, "producers": 0, "failed": 0}
    republish: list[BatchRef] = []
    producers: list[int] = []
    paused: list[tuple[int, str, str, str]] = []
    with engine.begin() as conn:
        if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": SWEEP_LOCK}).scalar_one():
            return found
        expired = conn.execute(
            text(
                """
                UPDATE batches b SET
                    state = CASE WHEN b.deliveries + 1 >= :max THEN 'failed' ELSE 'queued' END,
                    deliveries = b.deliveries + 1, queued_at = now(), lease_owner = NULL, lease_until = NULL,
                    last_error = 'the worker posting this batch stopped (killed or lost) before recording it'
                FROM runs r
                WHERE r.id = b.run_id AND r.state = 'running' AND b.state = 'running' AND b.lease_until < now()
                RETURNING b.id, b.run_id, b.stage, b.seq, b.part, b.state, r.data_source
                """
            ),
            {"max": policy.max_deliveries},
        ).all()
        for row in expired:
            if row.state == "failed":
                found["failed"] += 1
                ref = BatchRef(row.id, row.run_id, row.stage, row.seq, row.part)
                reason = f"batch {ref.label} failed: its worker died {policy.max_deliveries} times while posting it"
                if pause_run(conn, row.run_id, reason):
                    paused.append((row.run_id, row.data_source, row.stage, reason))
            else:
                found["expired"] += 1
                republish.append(BatchRef(row.id, row.run_id, row.stage, row.seq, row.part))
        lost = conn.execute(
            text(
                """
                UPDATE batches b SET queued_at = now()
                FROM runs r
                WHERE r.id = b.run_id AND r.state = 'running' AND b.state = 'queued'
                  AND b.queued_at < now() - make_interval(secs => :timeout)
                RETURNING b.id, b.run_id, b.stage, b.seq, b.part
                """
            ),
            {"timeout": policy.queue_timeout},
        ).all()
        found["lost"] = len(lost)
        republish += [BatchRef(r.id, r.run_id, r.stage, r.seq, r.part) for r in lost]
        overdue = conn.execute(
            text(
                """
                UPDATE batches b SET state = 'queued', queued_at = now()
                FROM runs r
                WHERE r.id = b.run_id AND r.state = 'running' AND b.state = 'retry_wait'
                  AND b.not_before < now() - make_interval(secs => :grace)
                RETURNING b.id, b.run_id, b.stage, b.seq, b.part
                """
            ),
            {"grace": policy.retry_grace},
        ).all()
        found["overdue"] = len(overdue)
        republish += [BatchRef(r.id, r.run_id, r.stage, r.seq, r.part) for r in overdue]
        producers = list(
            conn.execute(
                text(
                    """
                    SELECT r.id FROM runs r
                    WHERE r.state = 'running' AND NOT r.dry_run
                      AND EXISTS (SELECT 1 FROM run_stages s WHERE s.run_id = r.id AND NOT s.produced)
                      AND (r.producer_lease_until < now()
                           OR (r.producer_lease_until IS NULL
                               AND greatest(r.started_at, coalesce(r.resumed_at, r.started_at))
                                   < now() - make_interval(secs => :timeout)))
                    """
                ),
                {"timeout": policy.queue_timeout},
            ).scalars()
        )
        found["producers"] = len(producers)
        running = list(conn.execute(text("SELECT id FROM runs WHERE state = 'running' AND NOT dry_run")).scalars())
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


class PauseHook(Protocol):
    """Told when the sweep pauses a run (to raise an alert)."""

    def __call__(self, run_id: int, data_source: str, stage: str, reason: str) -> None:
        """Called once per paused run."""
