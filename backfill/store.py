"""The batches table's transitions and counters: the one module that writes `batches`.

Every state change of a batch (insert, claim, release, reschedule, split, queue, recover) is a statement
here, using the state names of `models.states`; callers hold the connection and the transaction.

    pending ──queue──▶ queued ──claim──▶ running ──finish──▶ done
       ▲                 ▲                  │ ├──reschedule──▶ retry_wait ──claim──▶ running
       └──hold───────────┴──recover─────────┤ ├──fail──▶ failed (resume: ▶ pending)
                                            │ └──split──▶ split + two pending halves
                                            └──hold (key, URL, pause)──▶ pending

A worker's transitions out of `running` go through `_release`, which only updates a batch whose lease
the caller still holds and raises LeaseLost otherwise, so a batch is recorded once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, text

from backfill.errors import LeaseLost
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


# --- insert -------------------------------------------------------------------------------------------

def insert_batch(
    conn: Connection, *, run_id: int, stage: str, pass_no: int, seq: int, depends_on: int | None, rows: int,
    payload: bytes | None, manifest: bytes, part: str = "", first_try_at: datetime | None = None,
) -> int:
    """A new pending batch (from the producer, or half of a split); returns its id."""
    return int(
        conn.execute(
            text(
                f"""
                INSERT INTO batches (run_id, stage, pass_no, seq, part, state, depends_on, rows, payload, manifest,
                                     first_try_at)
                VALUES (:run_id, :stage, :pass_no, :seq, :part, '{B.PENDING}', :depends_on, :rows, :payload, :manifest,
                        :first_try_at)
                RETURNING id
                """
            ),
            {"run_id": run_id, "stage": stage, "pass_no": pass_no, "seq": seq, "part": part, "depends_on": depends_on,
             "rows": rows, "payload": payload, "manifest": manifest, "first_try_at": first_try_at},
        ).scalar_one()
    )


# --- claim and release (a worker, under the batch's lease) ----------------------------------------------

def claim(conn: Connection, batch_id: int, owner: str, lease_seconds: float) -> Row[Any] | None:
    """Take the lease of a queued (or due) batch of a running run; None when it is not ours to post.

    Returns the batch's columns a worker needs, and `elapsed`: seconds since its first try, measured
    on the database's clock (the same clock that wrote `first_try_at`).
    """
    return conn.execute(
        text(
            f"""
            UPDATE batches b SET state = '{B.RUNNING}', lease_owner = :owner,
                lease_until = now() + make_interval(secs => :lease),
                first_try_at = coalesce(b.first_try_at, now())
            FROM runs r
            WHERE b.id = :id AND r.id = b.run_id AND r.state = '{R.RUNNING}'
              AND b.state IN {_CLAIMABLE}
              AND (b.not_before IS NULL OR b.not_before <= now() + interval '50 milliseconds')
            RETURNING b.pass_no, b.rows, b.payload, b.manifest, b.attempts, b.throttled, b.first_try_at,
                      extract(epoch FROM now() - coalesce(b.first_try_at, now()))::float8 AS elapsed,
                      b.depends_on, r.data_source, r.api_url, r.only_changed
            """
        ),
        {"owner": owner, "lease": lease_seconds, "id": batch_id},
    ).first()


def why_not_claimed(conn: Connection, batch_id: int) -> Row[Any] | None:
    """The batch's state, its run's state and the seconds left before `not_before` (None: no batch)."""
    return conn.execute(
        text(
            """
            SELECT b.state, r.state AS run_state, extract(epoch FROM b.not_before - now())::float8 AS remaining
            FROM batches b JOIN runs r ON r.id = b.run_id WHERE b.id = :id
            """
        ),
        {"id": batch_id},
    ).first()


def hold_unclaimed(conn: Connection, batch_id: int) -> None:
    """A message of a paused or cancelled run: the batch waits as pending, `resume` queues it again."""
    conn.execute(
        text(f"UPDATE batches SET state = '{B.PENDING}' WHERE id = :id AND state IN {_CLAIMABLE}"),
        {"id": batch_id},
    )


def _release(conn: Connection, batch_id: int, owner: str, sets: str, params: dict[str, Any]) -> None:
    """Update the batch only while `owner` still holds its lease (LeaseLost otherwise)."""
    row = conn.execute(
        text(
            f"UPDATE batches SET {sets}, lease_owner = NULL, lease_until = NULL "  # noqa: S608 - fixed fragments
            f"WHERE id = :id AND state = '{B.RUNNING}' AND lease_owner = :owner RETURNING id"
        ),
        {**params, "id": batch_id, "owner": owner},
    ).first()
    if row is None:
        raise LeaseLost(f"batch {batch_id}")


def finish(conn: Connection, batch_id: int, owner: str, attempts: int, counts: dict[str, int]) -> None:
    """running -> done, with the outcome counters of its rows."""
    sets = ", ".join(f"{column} = :{column}" for column in counts)
    _release(
        conn,
        batch_id,
        owner,
        f"state = '{B.DONE}', finished_at = now(), attempts = :attempts, last_error = NULL, {sets}",
        {"attempts": attempts, **counts},
    )


def reschedule(
    conn: Connection, batch_id: int, owner: str, delay: float, attempts: int, throttled: int, error: str | None
) -> None:
    """running -> retry_wait until now() + `delay` (on the database's clock)."""
    _release(
        conn,
        batch_id,
        owner,
        f"state = '{B.RETRY_WAIT}', not_before = now() + make_interval(secs => :delay), attempts = :attempts, "
        "throttled = :throttled, last_error = coalesce(:error, last_error)",
        {"delay": delay, "attempts": attempts, "throttled": throttled, "error": error},
    )


def fail(conn: Connection, batch_id: int, owner: str, attempts: int, error: str) -> None:
    """running -> failed (the caller pauses the run)."""
    _release(
        conn,
        batch_id,
        owner,
        f"state = '{B.FAILED}', finished_at = now(), attempts = :attempts, last_error = :error",
        {"attempts": attempts, "error": error},
    )


def hold(conn: Connection, batch_id: int, owner: str, reason: str) -> None:
    """running -> pending: a problem every batch shares (the caller pauses the run)."""
    _release(conn, batch_id, owner, f"state = '{B.PENDING}', last_error = :error", {"error": reason})


@dataclass(frozen=True)
class Half:
    """One half of a split batch."""

    rows: int
    payload: bytes | None
    manifest: bytes


def split(
    conn: Connection, ref: BatchRef, owner: str, *, pass_no: int, depends_on: int | None,
    first_try_at: datetime | None, halves: Sequence[Half], error: str | None,
) -> list[int]:
    """running -> split, replaced by `halves` in a chain: the first depends on what the batch depended
    on, each next one on the one before, and whatever waited for the batch waits for its last half."""
    _release(
        conn, ref.batch_id, owner, f"state = '{B.SPLIT}', finished_at = now(), rows = 0, last_error = :error", {"error": error}
    )
    ids: list[int] = []
    previous = depends_on
    for n, half in enumerate(halves):
        previous = insert_batch(
            conn,
            run_id=ref.run_id,
            stage=ref.stage,
            pass_no=pass_no,
            seq=ref.seq,
            part=ref.part + str(n),
            depends_on=previous,
            rows=half.rows,
            payload=half.payload,
            manifest=half.manifest,
            first_try_at=first_try_at,
        )
        ids.append(previous)
    conn.execute(
        text("UPDATE batches SET depends_on = :last WHERE depends_on = :old AND id <> :last"),
        {"last": previous, "old": ref.batch_id},
    )
    return ids


def record_attempt(
    conn: Connection, batch_id: int, *, rows_sent: int, error: str | None, started_at: datetime | None = None,
    latency_ms: float | None = None, http_status: int | None = None, response_body: str | None = None,
) -> None:
    """One line of the batch's attempt history (`started_at` None: now, no exchange happened)."""
    conn.execute(
        text(
            """
            INSERT INTO batch_attempts (batch_id, started_at, latency_ms, rows_sent, http_status, error, response_body)
            VALUES (:b, coalesce(:t, now()), :lat, :n, :s, :e, :body)
            """
        ),
        {"b": batch_id, "t": started_at, "lat": latency_ms, "n": rows_sent, "s": http_status, "e": error, "body": response_body},
    )


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


def renew_leases(conn: Connection, held: Sequence[tuple[int, str]], lease_seconds: float) -> list[int]:
    """Extend every lease in `held` ((batch id, owner) pairs) still held; returns the ids renewed."""
    if not held:
        return []
    return list(
        conn.execute(
            text(
                f"""
                UPDATE batches b SET lease_until = now() + make_interval(secs => :lease)
                FROM unnest(CAST(:ids AS bigint[]), CAST(:owners AS text[])) AS h(id, owner)
                WHERE b.id = h.id AND b.lease_owner = h.owner AND b.state = '{B.RUNNING}'
                RETURNING b.id
                """
            ),
            {"ids": [i for i, _ in held], "owners": [o for _, o in held], "lease": lease_seconds},
        ).scalars()
    )
