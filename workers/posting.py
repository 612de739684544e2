"""Posting one batch: claim it, decide what is sent, send it, and record every row's outcome.

Plain functions, no Celery: the task in `workers.tasks` is a thin adapter around `process_batch`.
Every transition happens under the batch's lease (`state = 'running' AND lease_owner = me`), so a
duplicate message, a second worker or a sweeper's re-queue can never record a batch twice.
"""

from __future__ import annotations

import functools
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, text

from backfill.alerts import Alert, Alerter
from backfill.api import Exchange, GrowPanelClient, backoff_delay, body_text, classify, redact
from backfill.audit import Outcome, clean_text, counters, write_outcomes
from backfill.dispatch import BatchRef, Publisher, advance_on, pause_run
from backfill.errors import (
    ApiError,
    FatalApiError,
    RejectedError,
    RetriableApiError,
    ThrottledError,
    TooLargeError,
)
from backfill.ratelimit import SharedRateLimiter
from backfill.settings import Settings
from workers.decide import local_outcomes, payload_hash
from workers.results import match_results

log = logging.getLogger(__name__)

# Longest pacing wait spent in a worker slot; longer waits go back to the queue with a countdown.
MAX_PACING_SLEEP = 2.0


@dataclass
class PostingContext:
    """Per-process resources for posting, built in the worker start-up hook."""

    engine: Engine
    settings: Settings
    client: GrowPanelClient
    publisher: Publisher
    alerter: Alerter
    owner: str
    limiter: SharedRateLimiter | None = None
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)


@dataclass
class Claimed:
    """A batch this worker holds the lease of."""

    ref: BatchRef
    pass_no: int
    rows: int
    payload: bytes | None
    entries: list[list[Any]]
    attempts: int
    throttled: int
    first_try_at: datetime
    depends_on: int | None
    data_source: str
    api_url: str
    only_changed: bool
    # One connection serves the whole batch (claim, decisions, record, advance): one pool checkout.
    conn: Connection
    # This claim's lease token: unique per claim, so two threads of one process never share a lease.
    owner: str


def process_batch(ctx: PostingContext, ref: BatchRef) -> str:
    """Post one batch if it is ours to post; returns what happened (for logs and tests)."""
    with ctx.engine.connect() as conn:
        batch = _claim(ctx, conn, ref)
        if batch is None:
            return _not_claimed(ctx, conn, ref)
        try:
            result = _process_claimed(ctx, batch)
        except Exception as exc:  # noqa: BLE001 - a bug or a surprise must not lose the batch
            log.exception("batch %s: unexpected error", ref.label)
            result = _transient_failure(ctx, batch, None, f"internal error: {type(exc).__name__}: {exc}")
        if result in ("done", "failed", "split"):
            advance_on(conn, ref.run_id, ctx.publisher, ctx.settings.max_in_flight)
    return result


class _LeaseLost(Exception):
    """The batch's lease went to another worker: it records the batch, not us."""


def _keeps_lease(func: Callable[..., str]) -> Callable[..., str]:
    """Turn a lost lease inside `func` into the result "lost" (its transaction rolled back)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        try:
            return func(*args, **kwargs)
        except _LeaseLost:
            return "lost"

    return wrapper


def _claim(ctx: PostingContext, conn: Connection, ref: BatchRef) -> Claimed | None:
    owner = f"{ctx.owner}:{uuid.uuid4().hex[:12]}"
    with conn.begin():
        row = conn.execute(
            text(
                """
                UPDATE batches b SET state = 'running', lease_owner = :owner,
                    lease_until = now() + make_interval(secs => :lease),
                    first_try_at = coalesce(b.first_try_at, now())
                FROM runs r
                WHERE b.id = :id AND r.id = b.run_id AND r.state = 'running'
                  AND b.state IN ('queued', 'retry_wait')
                  AND (b.not_before IS NULL OR b.not_before <= now() + interval '50 milliseconds')
                RETURNING b.pass_no, b.rows, b.payload, b.manifest, b.attempts, b.throttled, b.first_try_at,
                          b.depends_on, r.data_source, r.api_url, r.only_changed
                """
            ),
            {"owner": owner, "lease": ctx.settings.lease_seconds, "id": ref.batch_id},
        ).first()
    if row is None:
        return None
    return Claimed(
        ref=ref,
        pass_no=row.pass_no,
        rows=row.rows,
        payload=row.payload,
        entries=orjson.loads(row.manifest),
        attempts=row.attempts,
        throttled=row.throttled,
        first_try_at=row.first_try_at,
        depends_on=row.depends_on,
        data_source=row.data_source,
        api_url=row.api_url,
        only_changed=row.only_changed,
        conn=conn,
        owner=owner,
    )


def _not_claimed(ctx: PostingContext, conn: Connection, ref: BatchRef) -> str:
    """Why the claim failed: a paused run (hold the batch), an early retry (re-queue), or a duplicate."""
    with conn.begin():
        row = conn.execute(
            text(
                """
                SELECT b.state, r.state AS run_state, extract(epoch FROM b.not_before - now()) AS remaining
                FROM batches b JOIN runs r ON r.id = b.run_id WHERE b.id = :id
                """
            ),
            {"id": ref.batch_id},
        ).first()
        if row is None:
            return "gone"
        if row.run_state != "running" and row.state in ("queued", "retry_wait"):
            # Paused or cancelled: the batch waits in the database, `resume` queues it again.
            conn.execute(
                text("UPDATE batches SET state = 'pending' WHERE id = :id AND state IN ('queued', 'retry_wait')"),
                {"id": ref.batch_id},
            )
            return "held"
    if row.state == "retry_wait" and row.remaining is not None and float(row.remaining) > 0:
        remaining = float(row.remaining)
        if remaining <= ctx.settings.max_countdown:
            ctx.publisher.publish_batch(ref, countdown=remaining)
        return "early"
    return "duplicate"


def _process_claimed(ctx: PostingContext, batch: Claimed) -> str:
    ref = batch.ref
    entries = batch.entries
    with batch.conn.begin():
        local = local_outcomes(batch.conn, ref.run_id, ref.stage, batch.data_source, entries, batch.only_changed)
    send = [i for i, entry in enumerate(entries) if entry[1] is not None and i not in local]
    if not send:
        return _finalize(ctx, batch, local, {}, None, [])
    key = ctx.settings.api_key_for(batch.data_source)
    if key is None:
        return _pause_for(
            ctx,
            batch,
            f"this worker has no API key for data source {batch.data_source} "
            "(set GROWPANEL_API_KEY with GROWPANEL_DATA_SOURCE_ID, or GROWPANEL_API_KEYS)",
        )
    if batch.api_url.rstrip("/") != ctx.client.base_url:
        return _pause_for(
            ctx,
            batch,
            f"the run was started for {batch.api_url} but this worker posts to {ctx.client.base_url} "
            "(GROWPANEL_API_URL differs)",
        )
    body = _body(batch, entries, send)
    if ctx.limiter is not None:
        reserved, wait = ctx.limiter.acquire(ref.run_id, MAX_PACING_SLEEP)
        if not reserved:
            return _reschedule(ctx, batch, None, wait, attempts=batch.attempts, throttled=batch.throttled, error=None)
        if wait > 0:
            ctx.sleep(wait)
    exchange = ctx.client.post_rows(ref.stage, body, key)
    try:
        results = classify(exchange, key)
    except ThrottledError as exc:
        delay = exc.retry_after if exc.retry_after is not None else _backoff(ctx, batch.throttled + 1)
        if ctx.limiter is not None:
            ctx.limiter.pause(ref.run_id, delay)
        return _reschedule(ctx, batch, exchange, delay, attempts=batch.attempts, throttled=batch.throttled + 1, error=str(exc))
    except TooLargeError as exc:
        return _split(ctx, batch, exchange, local, send, str(exc))
    except FatalApiError as exc:
        return _pause_for(ctx, batch, str(exc), exchange)
    except RejectedError as exc:
        message = clean_text(str(exc), 2000)
        rejected = {i: Outcome(entries[i][0], "error", message, http_status=exc.status, payload_hash=payload_hash(entries[i]), sent=True) for i in send}
        return _finalize(ctx, batch, local, rejected, exchange, send)
    except RetriableApiError as exc:
        return _transient_failure(ctx, batch, exchange, str(exc))
    answered = match_results([entries[i] for i in send], results)
    sent = {}
    status = exchange.status
    for i, (outcome, export_status, message) in zip(send, answered):
        if message is not None:
            message = clean_text(redact(message, key))
            export_status = clean_text(redact(export_status, key), 200)
        sent[i] = Outcome(entries[i][0], outcome, message, export_status, payload_hash(entries[i]), status, sent=True)
    return _finalize(ctx, batch, local, sent, exchange, send)


def _body(batch: Claimed, entries: list[list[Any]], send: list[int]) -> bytes:
    """The payload as produced, or rebuilt without the rows that were decided locally."""
    hashed = [i for i, entry in enumerate(entries) if entry[1] is not None]
    assert batch.payload is not None
    if len(hashed) == len(send):
        return batch.payload
    position = {i: p for p, i in enumerate(hashed)}
    rows = orjson.loads(batch.payload)
    return orjson.dumps([rows[position[i]] for i in send])


def _backoff(ctx: PostingContext, n: int) -> float:
    """The delay before retry number `n` (1-based), with jitter."""
    return backoff_delay(ctx.settings.retry_backoff, n, ctx.settings.retry_jitter, ctx.rng)


def _record_attempt(conn: Connection, batch_id: int, exchange: Exchange | None, rows_sent: int, error: str | None, key: str | None) -> None:
    if exchange is None:
        conn.execute(
            text(
                "INSERT INTO batch_attempts (batch_id, started_at, rows_sent, error) VALUES (:b, now(), :n, :e)"
            ),
            {"b": batch_id, "n": rows_sent, "e": clean_text(error)},
        )
        return
    clean = exchange.status == 200 and error is None
    conn.execute(
        text(
            """
            INSERT INTO batch_attempts (batch_id, started_at, latency_ms, rows_sent, http_status, error, response_body)
            VALUES (:b, :t, :lat, :n, :s, :e, :body)
            """
        ),
        {
            "b": batch_id,
            "t": exchange.started_at,
            "lat": exchange.latency_ms,
            "n": rows_sent,
            "s": exchange.status,
            "e": clean_text(redact(error or exchange.error, key)),
            "body": None if clean else clean_text(body_text(exchange, key), 70000),
        },
    )


def _release(conn: Connection, batch: Claimed, owner: str, sets: str, params: dict[str, Any]) -> None:
    """Update the batch only while we still hold its lease (_LeaseLost, and a rollback, otherwise)."""
    row = conn.execute(
        text(
            f"UPDATE batches SET {sets}, lease_owner = NULL, lease_until = NULL "  # noqa: S608 - fixed fragments
            "WHERE id = :id AND state = 'running' AND lease_owner = :owner RETURNING id"
        ),
        {**params, "id": batch.ref.batch_id, "owner": owner},
    ).first()
    if row is None:
        log.warning("batch %s: lease lost; another worker records it", batch.ref.label)
        raise _LeaseLost


@_keeps_lease
def _finalize(
    ctx: PostingContext,
    batch: Claimed,
    local: dict[int, Outcome],
    sent: dict[int, Outcome],
    exchange: Exchange | None,
    send: list[int],
) -> str:
    outcomes = [local.get(i) or sent[i] for i in range(len(batch.entries))]
    counts = counters(outcomes)
    attempts = batch.attempts + (1 if exchange is not None else 0)
    answered_at = datetime.now(timezone.utc) if exchange is not None else None
    key = ctx.settings.api_key_for(batch.data_source)
    with batch.conn.begin():
        conn = batch.conn
        sets = ", ".join(f"{column} = :{column}" for column in counts)
        _release(
            conn,
            batch,
            batch.owner,
            f"state = 'done', finished_at = now(), attempts = :attempts, last_error = NULL, {sets}",
            {"attempts": attempts, **counts},
        )
        write_outcomes(
            conn,
            run_id=batch.ref.run_id,
            entity=batch.ref.stage,
            batch_id=batch.ref.batch_id,
            pass_no=batch.pass_no,
            outcomes=outcomes,
            attempts=attempts,
            sent_at=exchange.started_at if exchange is not None else None,
            answered_at=answered_at,
        )
        if exchange is not None:
            _record_attempt(conn, batch.ref.batch_id, exchange, len(send), None, key)
    return "done"


def _transient_failure(ctx: PostingContext, batch: Claimed, exchange: Exchange | None, error: str) -> str:
    attempts = batch.attempts + 1
    if attempts > len(ctx.settings.retry_backoff):
        return _fail(ctx, batch, exchange, f"gave up after {attempts} attempts: {error}", attempts)
    delay = _backoff(ctx, attempts)
    return _reschedule(ctx, batch, exchange, delay, attempts=attempts, throttled=batch.throttled, error=error)


@_keeps_lease
def _reschedule(
    ctx: PostingContext,
    batch: Claimed,
    exchange: Exchange | None,
    delay: float,
    *,
    attempts: int,
    throttled: int,
    error: str | None,
) -> str:
    """Back to the queue after `delay` (a countdown message), unless the batch's time budget is spent."""
    elapsed = (datetime.now(timezone.utc) - batch.first_try_at).total_seconds()
    if error is not None and elapsed + delay > ctx.settings.batch_time_budget:
        return _fail(
            ctx,
            batch,
            exchange,
            f"time budget of {ctx.settings.batch_time_budget:g} s spent ({attempts} failed attempts, "
            f"{throttled} rate limited): {error}",
            attempts,
        )
    key = ctx.settings.api_key_for(batch.data_source)
    with batch.conn.begin():
        conn = batch.conn
        _release(
            conn,
            batch,
            batch.owner,
            "state = 'retry_wait', not_before = now() + make_interval(secs => :delay), attempts = :attempts, "
            "throttled = :throttled, last_error = coalesce(:error, last_error)",
            {
                "delay": delay,
                "attempts": attempts,
                "throttled": throttled,
                "error": clean_text(redact(error, key)),
            },
        )
        if exchange is not None or error is not None:
            _record_attempt(conn, batch.ref.batch_id, exchange, _sendable(batch), error, key)
    if delay <= ctx.settings.max_countdown:
        ctx.publisher.publish_batch(batch.ref, countdown=delay)
    # Longer waits are picked up by the sweeper once `not_before` has passed.
    log.info("batch %s: retry in %.3f s (%s)", batch.ref.label, delay, error or "paced")
    return "retry"


def _sendable(batch: Claimed) -> int:
    return sum(1 for e in batch.entries if e[1] is not None)


@_keeps_lease
def _fail(ctx: PostingContext, batch: Claimed, exchange: Exchange | None, error: str, attempts: int) -> str:
    key = ctx.settings.api_key_for(batch.data_source)
    error = clean_text(redact(error, key)) or error
    with batch.conn.begin():
        conn = batch.conn
        _release(
            conn,
            batch,
            batch.owner,
            "state = 'failed', finished_at = now(), attempts = :attempts, last_error = :error",
            {"attempts": attempts, "error": error},
        )
        _record_attempt(conn, batch.ref.batch_id, exchange, _sendable(batch), error, key)
        paused = pause_run(conn, batch.ref.run_id, f"batch {batch.ref.label} failed: {error}")
    if paused:
        ctx.alerter.send(Alert(batch.ref.run_id, batch.data_source, batch.ref.stage, batch.ref.label, error))
    return "failed"


@_keeps_lease
def _pause_for(ctx: PostingContext, batch: Claimed, reason: str, exchange: Exchange | None = None) -> str:
    """A problem every batch shares (key, URL): hold this batch and pause the run at once."""
    key = ctx.settings.api_key_for(batch.data_source)
    reason = clean_text(redact(reason, key)) or reason
    with batch.conn.begin():
        conn = batch.conn
        _release(
            conn, batch, batch.owner, "state = 'pending', last_error = :error", {"error": reason}
        )
        if exchange is not None:
            _record_attempt(conn, batch.ref.batch_id, exchange, _sendable(batch), reason, key)
        paused = pause_run(conn, batch.ref.run_id, reason)
    if paused:
        ctx.alerter.send(Alert(batch.ref.run_id, batch.data_source, batch.ref.stage, batch.ref.label, reason))
    return "paused"


@_keeps_lease
def _split(
    ctx: PostingContext, batch: Claimed, exchange: Exchange, local: dict[int, Outcome], send: list[int], error: str
) -> str:
    """413: replace the batch by its two halves, the second depending on the first."""
    entries = batch.entries
    if len(send) < 2:
        too_large = {
            i: Outcome(entries[i][0], "error", f"the API refused this row as too large ({error})", http_status=413, payload_hash=payload_hash(entries[i]), sent=True)
            for i in send
        }
        return _finalize(ctx, batch, local, too_large, exchange, send)
    hashed = [i for i, e in enumerate(entries) if e[1] is not None]
    bodies = dict(zip(hashed, orjson.loads(batch.payload or b"[]")))
    # Cut at the middle of the rows being sent, keeping manifest order.
    cut = send[len(send) // 2]
    halves = [list(range(0, cut)), list(range(cut, len(entries)))]
    key = ctx.settings.api_key_for(batch.data_source)
    with batch.conn.begin():
        conn = batch.conn
        _release(
            conn,
            batch,
            batch.owner,
            "state = 'split', finished_at = now(), rows = 0, last_error = :error",
            {"error": clean_text(redact(error, key))},
        )
        _record_attempt(conn, batch.ref.batch_id, exchange, len(send), error, key)
        previous = batch.depends_on
        for n, half in enumerate(halves):
            half_entries = [entries[i] for i in half]
            half_bodies = [bodies[i] for i in half if i in bodies]
            previous = conn.execute(
                text(
                    """
                    INSERT INTO batches (run_id, stage, pass_no, seq, part, state, depends_on, rows, payload, manifest,
                                         first_try_at)
                    VALUES (:r, :s, :p, :seq, :part, 'pending', :dep, :rows, :payload, :manifest, :first)
                    RETURNING id
                    """
                ),
                {
                    "r": batch.ref.run_id,
                    "s": batch.ref.stage,
                    "p": batch.pass_no,
                    "seq": batch.ref.seq,
                    "part": batch.ref.part + str(n),
                    "dep": previous,
                    "rows": len(half_entries),
                    "payload": orjson.dumps(half_bodies) if half_bodies else None,
                    "manifest": orjson.dumps(half_entries),
                    "first": batch.first_try_at,
                },
            ).scalar_one()
        # Whatever waited for the whole batch now waits for its second half.
        conn.execute(
            text("UPDATE batches SET depends_on = :last WHERE depends_on = :old AND id <> :last"),
            {"last": previous, "old": batch.ref.batch_id},
        )
    log.info("batch %s: split in two after HTTP 413", batch.ref.label)
    return "split"


__all__ = ["ApiError", "PostingContext", "process_batch"]
