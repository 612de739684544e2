"""One batch's transitions: inserted by a producer, claimed, released and recorded by a worker under its lease.

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
from models.states import CLAIMABLE_STATES, BatchState as B, RunState as R, sql_list

_CLAIMABLE = sql_list(CLAIMABLE_STATES)


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

# What a claim sets and returns, shared by the two ways a lease is taken.
_TAKE_LEASE = f"""state = '{B.RUNNING}', lease_owner = :owner, lease_until = now() + make_interval(secs => :lease),
                first_try_at = coalesce(b.first_try_at, now())"""
_CLAIMED = """b.id, b.stage, b.seq, b.part, b.pass_no, b.rows, b.payload, b.manifest, b.attempts, b.throttled, b.first_try_at,
                      extract(epoch FROM now() - coalesce(b.first_try_at, now()))::float8 AS elapsed,
                      b.depends_on, r.data_source, r.api_url, r.only_changed"""
def _due(alias: str) -> str:
    """The batch's `not_before`, if any, has come (50 ms early is near enough)."""
    return f"({alias}.not_before IS NULL OR {alias}.not_before <= now() + interval '50 milliseconds')"


_DUE = _due("b")


def claim(conn: Connection, batch_id: int, owner: str, lease_seconds: float) -> Row[Any] | None:
    """Take the lease of a queued (or due) batch of a running run; None when it is not ours to post.

    Returns the batch's columns a worker needs, and `elapsed`: seconds since its first try, measured
    on the database's clock (the same clock that wrote `first_try_at`).
    """
    return conn.execute(
        text(
            f"""
            UPDATE batches b SET {_TAKE_LEASE}
            FROM runs r
            WHERE b.id = :id AND r.id = b.run_id AND r.state = '{R.RUNNING}'
              AND b.state IN {_CLAIMABLE} AND {_DUE}
            RETURNING {_CLAIMED}
            """  # noqa: S608 - fixed fragments
        ),
        {"owner": owner, "lease": lease_seconds, "id": batch_id},
    ).first()


def claim_next(conn: Connection, run_id: int, stage: str, done_id: int, owner: str, lease_seconds: float) -> Row[Any] | None:
    """pending -> running for the next batch the worker that just finished `done_id` posts itself, with
    no message: the batch that continues the chain of `done_id` (a customer's invoices over several
    batches) if it is ready, else the stage's first ready pending batch in stream order (as
    `run.queue_ready` would queue it). The same columns as `claim`. The caller holds the run's lock
    (`dispatch.advance_after`) and has checked the in-flight limit; a pending batch never has a
    message, so no delivery can claim it too."""
    return conn.execute(
        text(
            f"""
            UPDATE batches b SET {_TAKE_LEASE}, queued_at = now()
            FROM runs r
            WHERE b.id = (
                SELECT pick.id FROM (
                    (SELECT s.id, 0 AS rank FROM batches s
                     WHERE s.depends_on = :done AND s.run_id = :r AND s.stage = :s AND s.state = '{B.PENDING}'
                       AND {_due('s')}
                       AND EXISTS (SELECT 1 FROM batches d WHERE d.id = :done AND d.state = '{B.DONE}')
                     LIMIT 1)
                    UNION ALL
                    (SELECT p.id, 1 FROM batches p
                     WHERE p.run_id = :r AND p.stage = :s AND p.state = '{B.PENDING}' AND {_due('p')}
                       AND (p.depends_on IS NULL
                            OR EXISTS (SELECT 1 FROM batches d WHERE d.id = p.depends_on AND d.state = '{B.DONE}'))
                     ORDER BY p.pass_no, p.seq, p.part
                     LIMIT 1)
                ) pick ORDER BY pick.rank LIMIT 1
            )
              AND r.id = b.run_id AND r.state = '{R.RUNNING}' AND b.state = '{B.PENDING}' AND {_DUE}
            RETURNING {_CLAIMED}
            """  # noqa: S608 - fixed fragments
        ),
        {"owner": owner, "lease": lease_seconds, "done": done_id, "r": run_id, "s": stage},
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


# --- the clean path: a batch, its audit rows and its attempt in one statement -----------------------

def record_accepted(conn: Connection, batch_id: int, owner: str, attempts: int, counts: dict[str, int], *,
                    run_id: int, entity: str, statuses: Sequence[str], http_status: int, sent_at: datetime,
                    answered_at: datetime, latency_ms: float | None) -> None:
    """`finish`, its audit rows and its attempt in one statement, for a first-pass batch whose every row
    was sent and accepted in manifest order: PostgreSQL builds the rows from the stored manifest (id,
    hash) and the answered statuses, so the worker builds none. Only the lease holder records it."""
    sets = ", ".join(f"{column} = :{column}" for column in counts)
    done, written = conn.execute(
        text(
            f"""
            WITH fin AS (
                UPDATE batches SET state = '{B.DONE}', finished_at = now(), attempts = :attempts, last_error = NULL,
                    {sets}, lease_owner = NULL, lease_until = NULL
                WHERE id = :id AND state = '{B.RUNNING}' AND lease_owner = :owner RETURNING id, manifest
            ), rows AS (
                INSERT INTO audit (run_id, entity, external_id, batch_id, outcome, export_status, http_status, attempts,
                                   payload_hash, sent_at, answered_at)
                SELECT :run_id, :entity, m.e ->> 0, fin.id, s.status, s.status, :http, :attempts,
                       decode(m.e ->> 1, 'hex'), :sent_at, :answered_at
                FROM fin CROSS JOIN LATERAL jsonb_array_elements(convert_from(fin.manifest, 'UTF8')::jsonb)
                         WITH ORDINALITY AS m(e, n)
                JOIN unnest(string_to_array(:statuses, ',')) WITH ORDINALITY AS s(status, n) ON s.n = m.n
                RETURNING 1
            ), attempt AS (
                INSERT INTO batch_attempts (batch_id, started_at, latency_ms, rows_sent, http_status)
                SELECT fin.id, :sent_at, :latency, :sent, :http FROM fin
            )
            SELECT (SELECT count(*) FROM fin), (SELECT count(*) FROM rows)
            """  # noqa: S608 - fixed fragments
        ),
        {"id": batch_id, "owner": owner, "attempts": attempts, **counts, "run_id": run_id, "entity": entity,
         "statuses": ",".join(statuses), "http": http_status, "sent_at": sent_at, "answered_at": answered_at,
         "latency": latency_ms, "sent": len(statuses)},
    ).one()
    if not done:
        raise LeaseLost(f"batch {batch_id}")
    if written != len(statuses):
        # Never commit a batch whose audit rows do not match its answers one for one.
        raise RuntimeError(f"batch {batch_id}: {written} audit rows for {len(statuses)} answers")
