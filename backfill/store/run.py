"""A run's batches at once: what dispatch queues, what cancel and resume move, what the sweeper recovers,
and the counters `status` reads (never the audit table)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, text

from backfill.messages import BatchRef
from models.states import (
    CLAIMABLE_STATES,
    IN_FLIGHT_STATES,
    STAGES,
    UNFINISHED_BATCH_STATES,
    BatchState as B,
    RunState as R,
    sql_list,
)

_COUNTERS = ("rows", "inserted", "updated", "unchanged", "success", "local", "error", "invalid", "skipped", "failed_batches")
_CLAIMABLE = sql_list(CLAIMABLE_STATES)
_IN_FLIGHT = sql_list(IN_FLIGHT_STATES)


# --- queue (dispatch) -----------------------------------------------------------------------------------

def in_flight(conn: Connection, run_id: int, stage: str) -> int:
    """Batches of the stage queued, being posted or waiting for a retry."""
    return int(
        conn.execute(
            text(f"SELECT count(*) FROM batches WHERE run_id = :r AND stage = :s AND state IN {_IN_FLIGHT}"),
            {"r": run_id, "s": stage},
        ).scalar_one()
    )


def queue_ready(conn: Connection, run_id: int, stage: str, room: int) -> list[BatchRef]:
    """pending -> queued for up to `room` batches whose dependency is done, in stream order."""
    rows = conn.execute(
        text(
            f"""
            UPDATE batches SET state = '{B.QUEUED}', queued_at = now()
            WHERE id IN (
                SELECT b.id FROM batches b
                WHERE b.run_id = :r AND b.stage = :s AND b.state = '{B.PENDING}'
                  AND (b.depends_on IS NULL
                       OR EXISTS (SELECT 1 FROM batches d WHERE d.id = b.depends_on AND d.state = '{B.DONE}'))
                ORDER BY b.pass_no, b.seq, b.part
                LIMIT :room
            )
            RETURNING id, seq, part
            """
        ),
        {"r": run_id, "s": stage, "room": room},
    ).all()
    return [BatchRef(r.id, run_id, stage, r.seq, r.part) for r in sorted(rows, key=lambda r: (r.seq, r.part))]


# One probe of the dispatch index per unfinished state, in the index's order: a stage made of done
# batches is never walked.
_OPEN_PROBES = " OR ".join(
    f"(SELECT 1 FROM batches WHERE run_id = :r AND stage = :s AND state = '{state}' "
    "ORDER BY pass_no, seq, part LIMIT 1) IS NOT NULL"
    for state in UNFINISHED_BATCH_STATES
)


def has_open_batches(conn: Connection, run_id: int, stage: str) -> bool:
    """Whether a batch of the stage has no final state."""
    return bool(conn.execute(text(f"SELECT {_OPEN_PROBES}"), {"r": run_id, "s": stage}).scalar_one())  # noqa: S608


def rejected_rows(conn: Connection, run_id: int) -> int:
    """Rows of the run that ended error, invalid or skipped (from the counters, not the audit)."""
    return int(
        conn.execute(
            text("SELECT coalesce(sum(n_error + n_invalid + n_skipped), 0) FROM batches WHERE run_id = :r"),
            {"r": run_id},
        ).scalar_one()
    )


# --- a run's batches at once (cancel, resume) -----------------------------------------------------------

def hold_run(conn: Connection, run_id: int) -> None:
    """Every queued or waiting batch of the run back to pending (cancel: their messages will drop)."""
    conn.execute(
        text(f"UPDATE batches SET state = '{B.PENDING}' WHERE run_id = :r AND state IN {_CLAIMABLE}"),
        {"r": run_id},
    )


def reopen_run(conn: Connection, run_id: int, began: datetime) -> int:
    """Back to pending: failed batches (with fresh attempts), batches queued before `began` (their
    message may be lost) and running batches whose lease expired. Returns how many."""
    return len(
        conn.execute(
            text(
                f"""
                UPDATE batches SET state = '{B.PENDING}', lease_owner = NULL, lease_until = NULL,
                    attempts = CASE WHEN state = '{B.FAILED}' THEN 0 ELSE attempts END,
                    throttled = CASE WHEN state = '{B.FAILED}' THEN 0 ELSE throttled END,
                    first_try_at = CASE WHEN state = '{B.FAILED}' THEN NULL ELSE first_try_at END,
                    deliveries = CASE WHEN state = '{B.FAILED}' THEN 0 ELSE deliveries END,
                    not_before = NULL, finished_at = NULL
                WHERE run_id = :r AND (
                    state = '{B.FAILED}'
                    OR (state IN {_CLAIMABLE} AND coalesce(queued_at, '-infinity') < :began)
                    OR (state = '{B.RUNNING}' AND lease_until < now())
                )
                RETURNING id
                """
            ),
            {"r": run_id, "began": began},
        ).all()
    )


# --- recover (the sweeper) ------------------------------------------------------------------------------

def recover_expired(conn: Connection, max_deliveries: int) -> list[Row[Any]]:
    """Running batches whose lease expired (their worker died): queued again, or failed after
    `max_deliveries` deaths. Rows: id, run_id, stage, seq, part, state (the new one), data_source."""
    return list(
        conn.execute(
            text(
                f"""
                UPDATE batches b SET
                    state = CASE WHEN b.deliveries + 1 >= :max THEN '{B.FAILED}' ELSE '{B.QUEUED}' END,
                    deliveries = b.deliveries + 1, queued_at = now(), lease_owner = NULL, lease_until = NULL,
                    last_error = 'the worker posting this batch stopped (killed or lost) before recording it'
                FROM runs r
                WHERE r.id = b.run_id AND r.state = '{R.RUNNING}' AND b.state = '{B.RUNNING}' AND b.lease_until < now()
                RETURNING b.id, b.run_id, b.stage, b.seq, b.part, b.state, r.data_source
                """
            ),
            {"max": max_deliveries},
        ).all()
    )


def requeue_stale(conn: Connection, queue_timeout: float) -> list[BatchRef]:
    """Batches queued longer than `queue_timeout` (their message was lost): to be published again."""
    rows = conn.execute(
        text(
            f"""
            UPDATE batches b SET queued_at = now()
            FROM runs r
            WHERE r.id = b.run_id AND r.state = '{R.RUNNING}' AND b.state = '{B.QUEUED}'
              AND b.queued_at < now() - make_interval(secs => :timeout)
            RETURNING b.id, b.run_id, b.stage, b.seq, b.part
            """
        ),
        {"timeout": queue_timeout},
    ).all()
    return [BatchRef(r.id, r.run_id, r.stage, r.seq, r.part) for r in rows]


def requeue_overdue(conn: Connection, grace: float) -> list[BatchRef]:
    """retry_wait batches whose `not_before` passed more than `grace` ago (countdown lost): queued again."""
    rows = conn.execute(
        text(
            f"""
            UPDATE batches b SET state = '{B.QUEUED}', queued_at = now()
            FROM runs r
            WHERE r.id = b.run_id AND r.state = '{R.RUNNING}' AND b.state = '{B.RETRY_WAIT}'
              AND b.not_before < now() - make_interval(secs => :grace)
            RETURNING b.id, b.run_id, b.stage, b.seq, b.part
            """
        ),
        {"grace": grace},
    ).all()
    return [BatchRef(r.id, r.run_id, r.stage, r.seq, r.part) for r in rows]


# --- counters -------------------------------------------------------------------------------------------

def uncount(conn: Connection, batch_id: int, column: str, n: int) -> None:
    """`n` rows of the batch were answered again by a later pass: they leave its counters (`column`
    is one of the batch's n_* columns, a fixed name from `backfill.audit`)."""
    conn.execute(
        text(f"UPDATE batches SET {column} = {column} - :n, rows = rows - :n WHERE id = :b"),  # noqa: S608
        {"n": n, "b": batch_id},
    )


def set_counts(conn: Connection, batch_id: int, counts: dict[str, int]) -> None:
    """The batch's outcome counters (`counts` keyed by the n_* column names of `backfill.audit.counters`)."""
    sets = ", ".join(f"{column} = :{column}" for column in counts)
    conn.execute(text(f"UPDATE batches SET {sets} WHERE id = :b"), {**counts, "b": batch_id})  # noqa: S608


def clear_detail(conn: Connection, batch_ids: Sequence[int]) -> tuple[int, int]:
    """Prune: the batches' attempts deleted, payload and manifest dropped; (attempts, batches) touched."""
    attempts = conn.execute(text("DELETE FROM batch_attempts WHERE batch_id = ANY(:ids)"), {"ids": list(batch_ids)}).rowcount
    cleared = conn.execute(
        text(
            "UPDATE batches SET payload = NULL, manifest = NULL "
            "WHERE id = ANY(:ids) AND (payload IS NOT NULL OR manifest IS NOT NULL)"
        ),
        {"ids": list(batch_ids)},
    ).rowcount
    return int(attempts), int(cleared)


def stage_counts(conn: Connection, run_id: int) -> dict[str, dict[str, int]]:
    """Per stage, the outcome counters summed over its batches (never over the audit table)."""
    counts = {stage: dict.fromkeys(_COUNTERS, 0) for stage in STAGES}
    rows = conn.execute(
        text(
            f"""
            SELECT stage, sum(rows) AS rows, sum(n_inserted) AS inserted, sum(n_updated) AS updated,
                   sum(n_unchanged) AS unchanged, sum(n_success) AS success, sum(n_local) AS local,
                   sum(n_error) AS error, sum(n_invalid) AS invalid, sum(n_skipped) AS skipped,
                   count(*) FILTER (WHERE state = '{B.FAILED}') AS failed_batches
            FROM batches WHERE run_id = :r GROUP BY stage
            """
        ),
        {"r": run_id},
    ).mappings()
    for row in rows:
        counts[row["stage"]] = {k: int(row[k] or 0) for k in _COUNTERS}
    return counts
