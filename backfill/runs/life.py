"""A run's life after its creation: pause, cancel, reopen, retry, finish, and its producer lease.

The database row lock on the run orders these. Publishing (a producer to restart, batches to queue)
is the caller's: `backfill.dispatch.resume_run` wraps `reopen_run` with it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, text

from backfill import store
from backfill.errors import LeaseLost, RunStateError
from backfill.redact import redact
from backfill.runs.creation import active_run_on
from models.states import (
    REJECTED_OUTCOMES,
    RUN_ACTIVE_STATES,
    RUN_FINISHED_STATES,
    STAGES,
    RunState as R,
    sql_list,
)


# The run's lock is FOR NO KEY UPDATE, not FOR UPDATE: it orders the run's transitions among themselves
# (and against prune's FOR SHARE) all the same, but does not block the FOR KEY SHARE that each audit and
# batch insert takes on the run row for its foreign key, so recording a batch never waits for another
# slot's `advance`, nor the producer's inserts for a dispatch (issue 13).
_LOCK = "FOR NO KEY UPDATE"


def lock_run(conn: Connection, run_id: int) -> dict[str, Any]:
    """Lock the run row for this transaction; RunStateError if it does not exist."""
    row = conn.execute(text(f"SELECT * FROM runs WHERE id = :id {_LOCK}"), {"id": run_id}).mappings().first()
    if row is None:
        raise RunStateError(f"there is no run {run_id}")
    return dict(row)


def pause_run(conn: Connection, run_id: int, reason: str) -> bool:
    """running -> paused, with the reason an operator will read; False if the run was not running."""
    row = conn.execute(
        text(
            f"UPDATE runs SET state = '{R.PAUSED}', paused_reason = :reason "
            f"WHERE id = :r AND state = '{R.RUNNING}' RETURNING id"
        ),
        # A source error's text can carry a connection string: no password is ever stored.
        {"reason": redact(reason, ()), "r": run_id},
    ).first()
    return row is not None


def cancel_run(engine: Engine, run_id: int) -> str:
    """No new batches are queued; batches being posted finish; `resume` can pick the run up later."""
    with engine.begin() as conn:
        run = lock_run(conn, run_id)
        if run["state"] not in RUN_ACTIVE_STATES:
            raise RunStateError(f"run {run_id} is {run['state']}; only a running or paused run can be cancelled")
        conn.execute(
            text(
                f"UPDATE runs SET state = '{R.CANCELLED}', paused_reason = 'cancelled by an operator', "
                "finished_at = now() WHERE id = :r"
            ),
            {"r": run_id},
        )
        # Queued messages will find the run cancelled and drop; the batches wait as pending.
        store.hold_run(conn, run_id)
    return R.CANCELLED


# --- a stage and a run reaching their end (called by dispatch under the run's lock) ----------------------

def lock_running(conn: Connection, run_id: int) -> bool:
    """Lock the run if it is a running real run (the only kind dispatch moves forward)."""
    row = conn.execute(text(f"SELECT state, dry_run FROM runs WHERE id = :id {_LOCK}"), {"id": run_id}).first()
    return row is not None and row.state == R.RUNNING and not row.dry_run


def close_stage(conn: Connection, run_id: int, stage: str, summary: dict[str, int]) -> None:
    """The stage has a final outcome for every batch: record when, and its counters."""
    conn.execute(
        text("UPDATE run_stages SET done_at = now(), summary = CAST(:summary AS jsonb) WHERE run_id = :r AND stage = :s"),
        {"r": run_id, "s": stage, "summary": orjson.dumps(summary).decode()},
    )


def open_stage(conn: Connection, run_id: int, stage: str) -> None:
    """The run moves on to `stage`."""
    conn.execute(text("UPDATE runs SET current_stage = :s WHERE id = :r"), {"s": stage, "r": run_id})


def finish_run(conn: Connection, run_id: int) -> str:
    """running -> succeeded, or completed_with_errors when a row was rejected; returns the state."""
    state = R.COMPLETED_WITH_ERRORS if store.rejected_rows(conn, run_id) else R.SUCCEEDED
    conn.execute(
        text(f"UPDATE runs SET state = :state, finished_at = now() WHERE id = :r AND state = '{R.RUNNING}'"),
        {"state": state, "r": run_id},
    )
    return state


def fail_run(conn: Connection, run_id: int) -> None:
    """A run that could not go on at all (a dry run whose production broke) -> failed."""
    conn.execute(text("UPDATE runs SET state = :s, finished_at = now() WHERE id = :r"), {"s": R.FAILED, "r": run_id})


def mark_pruned(conn: Connection, run_id: int) -> None:
    """The run's detail is (being) pruned: `retry` refuses it and `errors` says so."""
    conn.execute(text("UPDATE runs SET pruned_at = now() WHERE id = :r"), {"r": run_id})


# --- resume and retry ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResumeResult:
    """What `resume` did."""

    run_id: int
    state: str
    requeued: int
    producer_restarted: bool


def reopen_run(engine: Engine, run_id: int, started_at: float | None = None) -> ResumeResult:
    """Set the run running again and every batch of it without a final outcome back to pending.

    Batches queued before the command began (`started_at`, a local time.time()) may have lost their
    message (Redis restarted empty): they go back to pending and are queued again. A concurrent `resume`
    waits on the run's row lock and then finds them queued after its own start, so it does not queue
    them a second time. `producer_restarted` says the caller must publish a producer.
    """
    age = max(0.0, time.time() - started_at) if started_at is not None else 0.0
    with engine.begin() as conn:
        # The command's start on the database's clock (queued_at is written with that clock).
        began = conn.execute(text("SELECT clock_timestamp() - make_interval(secs => :age)"), {"age": age}).scalar_one()
    with engine.begin() as conn:
        run = lock_run(conn, run_id)
        if run["dry_run"]:
            raise RunStateError(f"run {run_id} is a dry run; start a real run instead")
        if run["state"] in RUN_FINISHED_STATES:
            return ResumeResult(run_id, str(run["state"]), 0, False)
        if run["state"] != R.RUNNING:
            other = active_run_on(conn, run["data_source"], except_run=run_id)
            if other is not None:
                raise RunStateError(
                    f"run {other[0]} for data source {run['data_source']} is active; cancel it before resuming run {run_id}"
                )
        conn.execute(
            text(
                f"UPDATE runs SET state = '{R.RUNNING}', paused_reason = NULL, finished_at = NULL, resumed_at = now() "
                "WHERE id = :r"
            ),
            {"r": run_id},
        )
        requeued = store.reopen_run(conn, run_id, began)
        row = conn.execute(
            text(
                """
                SELECT (SELECT bool_and(produced) FROM run_stages WHERE run_id = :r) AS produced,
                       (producer_lease_until IS NULL OR producer_lease_until < now()) AS lease_free
                FROM runs WHERE id = :r
                """
            ),
            {"r": run_id},
        ).one()
    return ResumeResult(run_id, R.RUNNING, requeued, bool(not row.produced and row.lease_free))


def prepare_retry(engine: Engine, run_id: int) -> dict[str, int]:
    """Open a new pass of a finished run for its rows that ended `error`, `invalid` or `skipped`."""
    with engine.begin() as conn:
        run = lock_run(conn, run_id)
        if run["dry_run"]:
            raise RunStateError(f"run {run_id} is a dry run: nothing was sent, start a real run instead")
        if run["pruned_at"] is not None:
            raise RunStateError(
                f"run {run_id} was pruned at {run['pruned_at']:%Y-%m-%d %H:%M}: its rejected rows are no longer "
                "recorded, start a new run instead"
            )
        if run["state"] in RUN_ACTIVE_STATES:
            raise RunStateError(
                f"run {run_id} is {run['state']}; retry works on a finished run (resume or cancel it first)"
            )
        if run["state"] not in RUN_FINISHED_STATES:
            # A cancelled or failed run may not have read its whole source: a retry pass, which reads only
            # the rejected rows, would never read the rest.
            raise RunStateError(
                f"run {run_id} is {run['state']}; retry works only on a succeeded or completed_with_errors run "
                f"(`growpanel-backfill resume {run_id}` finishes it first)"
            )
        other = active_run_on(conn, run["data_source"], except_run=run_id)
        if other is not None:
            raise RunStateError(f"run {other[0]} for data source {run['data_source']} is active; let it finish first")
        pass_no = int(run["pass_no"]) + 1
        counts = {}
        for stage in STAGES:
            counts[stage] = conn.execute(
                text(
                    f"""
                    INSERT INTO retry_targets (run_id, pass_no, entity, external_id)
                    SELECT run_id, :p, entity, external_id FROM audit
                    WHERE run_id = :r AND entity = :s AND outcome IN {sql_list(REJECTED_OUTCOMES)}
                      AND external_id NOT LIKE '(no id: %'
                    """
                ),
                {"r": run_id, "p": pass_no, "s": stage},
            ).rowcount
        if not any(counts.values()):
            return counts
        conn.execute(
            text(
                f"""
                UPDATE runs SET state = '{R.RUNNING}', pass_no = :p, current_stage = :first, paused_reason = NULL,
                    finished_at = NULL, resumed_at = now()
                WHERE id = :r
                """
            ),
            {"p": pass_no, "r": run_id, "first": STAGES[0]},
        )
        conn.execute(
            text(
                """
                UPDATE run_stages SET rows_read = 0, next_seq = 1, produced = false, produced_at = NULL,
                    done_at = NULL, tail_batch_id = NULL, tail_customer = NULL
                WHERE run_id = :r
                """
            ),
            {"r": run_id},
        )
    return counts


KEEP_TAIL = object()
"""`checkpoint_stage(tail_customer=KEEP_TAIL)`: keep the stored tail customer (None is a value)."""


def checkpoint_stage(
    conn: Connection, run_id: int, stage: str, *, rows_read: int | None, next_seq: int | None,
    tail_batch_id: int | None, tail_customer: Any, produced: bool,
) -> None:
    """A producer's checkpoint: the stage's resume point moves past the batches just inserted."""
    conn.execute(
        text(
            """
            UPDATE run_stages SET rows_read = coalesce(:rows_read, rows_read),
                next_seq = coalesce(:next_seq, next_seq),
                tail_batch_id = coalesce(:tail_id, tail_batch_id),
                tail_customer = CASE WHEN :has_tail THEN :tail_customer ELSE tail_customer END,
                started_at = coalesce(started_at, now()),
                produced = :produced, produced_at = CASE WHEN :produced THEN now() END
            WHERE run_id = :run_id AND stage = :stage
            """
        ),
        {
            "rows_read": rows_read,
            "next_seq": next_seq,
            "tail_id": tail_batch_id,
            "has_tail": tail_customer is not KEEP_TAIL,
            "tail_customer": None if tail_customer is KEEP_TAIL else tail_customer,
            "produced": produced,
            "run_id": run_id,
            "stage": stage,
        },
    )


def mark_targets_found(conn: Connection, run_id: int, pass_no: int, stage: str, ids: list[str]) -> None:
    """A retry pass read these ids from the source again (the others are reported as gone)."""
    conn.execute(
        text(
            "UPDATE retry_targets SET found = true "
            "WHERE run_id = :r AND pass_no = :p AND entity = :s AND external_id = ANY(:ids)"
        ),
        {"r": run_id, "p": pass_no, "s": stage, "ids": ids},
    )


# --- the producer lease ----------------------------------------------------------------------------------

def claim_producer(conn: Connection, run_id: int, owner: str, lease_seconds: float) -> dict[str, Any] | None:
    """Take (or renew) the producer lease of a running run; None when someone else holds it."""
    row = conn.execute(
        text(
            f"""
            UPDATE runs SET producer_owner = :owner, producer_lease_until = now() + make_interval(secs => :lease)
            WHERE id = :run_id AND state = '{R.RUNNING}'
              AND (producer_owner IS NULL OR producer_owner = :owner OR producer_lease_until < now())
            RETURNING pass_no, batch_size, mapping, data_source, source_fingerprint
            """
        ),
        {"owner": owner, "lease": lease_seconds, "run_id": run_id},
    ).mappings().first()
    return dict(row) if row else None


def renew_producer(conn: Connection, run_id: int, owner: str, lease_seconds: float) -> None:
    """Extend the producer lease we hold; LeaseLost if it went to another producer or the run stopped."""
    if claim_producer(conn, run_id, owner, lease_seconds) is None:
        raise LeaseLost(f"producer of run {run_id}")


def extend_producer(conn: Connection, run_id: int, owner: str, lease_seconds: float) -> bool:
    """Extend the producer lease only while `owner` holds it (never re-take a released or lost one)."""
    row = conn.execute(
        text(
            f"""
            UPDATE runs SET producer_lease_until = now() + make_interval(secs => :lease)
            WHERE id = :r AND state = '{R.RUNNING}' AND producer_owner = :owner RETURNING id
            """
        ),
        {"r": run_id, "owner": owner, "lease": lease_seconds},
    ).first()
    return row is not None


def release_producer(conn: Connection, run_id: int, owner: str) -> None:
    """Give the lease back (production finished or stopped)."""
    conn.execute(
        text("UPDATE runs SET producer_owner = NULL, producer_lease_until = NULL WHERE id = :r AND producer_owner = :o"),
        {"r": run_id, "o": owner},
    )


def runs_needing_producer(conn: Connection, start_timeout: float) -> list[int]:
    """Running runs with a stage left to produce whose producer's lease expired, or that never got
    one within `start_timeout` of their (re)start (the produce message was lost)."""
    return list(
        conn.execute(
            text(
                f"""
                SELECT r.id FROM runs r
                WHERE r.state = '{R.RUNNING}' AND NOT r.dry_run
                  AND EXISTS (SELECT 1 FROM run_stages s WHERE s.run_id = r.id AND NOT s.produced)
                  AND (r.producer_lease_until < now()
                       OR (r.producer_lease_until IS NULL
                           AND greatest(r.started_at, coalesce(r.resumed_at, r.started_at))
                               < now() - make_interval(secs => :timeout)))
                """
            ),
            {"timeout": start_timeout},
        ).scalars()
    )


def running_runs(conn: Connection) -> list[int]:
    """Real runs in state running."""
    return list(conn.execute(text(f"SELECT id FROM runs WHERE state = '{R.RUNNING}' AND NOT dry_run")).scalars())


__all__ = [
    "ResumeResult",
    "cancel_run",
    "pause_run",
    "prepare_retry",
    "reopen_run",
]
