"""Posting one batch: claim it, decide what is sent, send it, and record every row's outcome.

After a batch is done the slot takes the next one itself, with no message
(`backfill.dispatch.advance_after`): the next link of its chain (a customer's invoices over several
batches) if it is ready, else the stage's first ready pending batch. Going back to the queue costs a
slot ~15 ms per batch, and a chain's next link would wait behind every queued message.

Plain functions, no Celery: the task in `workers.tasks` is a thin adapter around `process_batch`.
Every transition goes through `backfill.store` under the batch's lease (`state = 'running' AND
lease_owner = me`), so a duplicate message, a second worker or a sweeper's re-queue can never record a
batch twice; while the batch is being processed the process's `LeaseKeeper` keeps its lease alive.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime, timezone
from typing import Any

import orjson
from sqlalchemy import Connection

from backfill import store
from backfill.alerts import Alert
from backfill.api import Exchange, backoff_delay, body_text, classify, redact
from backfill.audit import Outcome, clean_text, counters, status_counters, write_outcomes
from backfill.dispatch import advance_after, advance_on
from backfill.errors import (
    ApiError,
    FatalApiError,
    LeaseLost,
    RejectedError,
    RetriableApiError,
    ThrottledError,
    TooLargeError,
)
from backfill.manifest import ManifestEntry, dump_manifest
from backfill.messages import BatchRef, BatchResult
from backfill.runs import pause_run
from workers.claims import Claimed, claim, claimed, new_owner, not_claimed
from workers.decide import local_outcomes
from workers.context import PostingContext
from workers.results import match_results

log = logging.getLogger(__name__)

# Longest pacing wait spent in a worker slot; longer waits go back to the queue with a countdown.
MAX_PACING_SLEEP = 2.0


def process_batch(ctx: PostingContext, ref: BatchRef) -> BatchResult:
    """Post one batch if it is ours to post, then the batches the slot takes after it (see the module's
    docstring) for `ctx.serve_seconds` at most; returns what happened to the last one (for logs and tests).

    The bound (10 s) brings the slot back to the queue often enough for the batches queued with a
    message to be posted while the stage runs, for a warm shutdown (which waits for running tasks)
    to stay short, and for Flower to show what each slot is doing.
    """
    with ctx.engine.connect() as conn:
        batch = claim(ctx, conn, ref)
        if batch is None:
            return not_claimed(ctx, conn, ref)
        serve_until = time.monotonic() + ctx.serve_seconds
        while True:
            result = _post_held(ctx, batch)
            if not result.finished:
                return result
            if result is not BatchResult.DONE or time.monotonic() >= serve_until:
                advance_on(conn, ref.run_id, ctx.publisher, ctx.settings.max_in_flight)
                return result
            owner = new_owner(ctx)
            row = advance_after(
                conn, ref.run_id, ctx.publisher, ctx.settings.max_in_flight, batch.ref.batch_id, owner, ctx.settings.lease_seconds
            )
            if row is None:
                return result
            batch = claimed(conn, BatchRef(row.id, ref.run_id, row.stage, row.seq, row.part), row, owner)
            log.debug("batch %s: taken by the slot of %s", batch.ref.label, ref.label)


def _post_held(ctx: PostingContext, batch: Claimed) -> BatchResult:
    """Process a batch whose lease we hold, keeping the lease alive meanwhile."""
    try:
        with ctx.leases.holding(batch.ref.batch_id, batch.owner) if ctx.leases is not None else nullcontext():
            return _process_claimed(ctx, batch)
    except Exception as exc:  # noqa: BLE001 - a bug or a surprise must not lose the batch
        log.exception("batch %s: unexpected error", batch.ref.label)
        return _transient_failure(ctx, batch, None, f"internal error: {type(exc).__name__}: {exc}")


def _keeps_lease(func: Callable[..., BatchResult]) -> Callable[..., BatchResult]:
    """Turn a lost lease inside `func` into BatchResult.LOST (its transaction rolled back)."""

    @functools.wraps(func)
    def wrapper(ctx: PostingContext, batch: Claimed, *args: Any, **kwargs: Any) -> BatchResult:
        try:
            return func(ctx, batch, *args, **kwargs)
        except LeaseLost:
            log.warning("batch %s: lease lost; another worker records it", batch.ref.label)
            return BatchResult.LOST

    return wrapper


def _process_claimed(ctx: PostingContext, batch: Claimed) -> BatchResult:
    ref = batch.ref
    entries = batch.entries
    with batch.conn.begin():
        local = local_outcomes(batch.conn, ref.run_id, ref.stage, batch.data_source, entries, batch.only_changed)
    send = (
        list(range(len(entries))) if not local and batch.sendable == len(entries)
        else [i for i, entry in enumerate(entries) if entry.sendable and i not in local]
    )
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
        rejected = {
            i: Outcome(entries[i].id, "error", message, http_status=exc.status, payload_hash=entries[i].hash_bytes, sent=True)
            for i in send
        }
        return _finalize(ctx, batch, local, rejected, exchange, send)
    except RetriableApiError as exc:
        return _transient_failure(ctx, batch, exchange, str(exc))
    answered = match_results([entries[i] for i in send], results)
    if _all_accepted(batch, local, send, exchange, answered):
        return _finalize_accepted(ctx, batch, exchange, [outcome for outcome, _, _ in answered])
    sent = {}
    status = exchange.status
    for i, (outcome, export_status, message) in zip(send, answered):
        if message is not None:
            message = clean_text(redact(message, key))
            export_status = clean_text(redact(export_status, key), 200)
        sent[i] = Outcome(entries[i].id, outcome, message, export_status, entries[i].hash_bytes, status, sent=True)
    return _finalize(ctx, batch, local, sent, exchange, send)


def _all_accepted(batch: Claimed, local: dict[int, Outcome], send: list[int], exchange: Exchange, answered: list[Any]) -> bool:
    """The common case that PostgreSQL records from the manifest: a first pass, every row sent, every
    answer a plain accepted status (no message), a clean 200 (whose body the attempt does not keep), and a
    manifest jsonb can read."""
    return (
        batch.pass_no == 1
        and not local
        and len(send) == len(batch.entries)
        and exchange.status == 200
        and exchange.error is None
        and all(message is None for _, _, message in answered)
        and b"\\u0000" not in batch.manifest
    )


@_keeps_lease
def _finalize_accepted(ctx: PostingContext, batch: Claimed, exchange: Exchange, statuses: list[str]) -> BatchResult:
    with batch.conn.begin():
        store.record_accepted(
            batch.conn, batch.ref.batch_id, batch.owner, batch.attempts + 1, status_counters(statuses),
            run_id=batch.ref.run_id, entity=batch.ref.stage, statuses=statuses, http_status=exchange.status,
            sent_at=exchange.started_at, answered_at=datetime.now(timezone.utc), latency_ms=exchange.latency_ms,
        )
    return BatchResult.DONE


def _body(batch: Claimed, entries: list[ManifestEntry], send: list[int]) -> bytes:
    """The payload as produced, or rebuilt without the rows that were decided locally."""
    assert batch.payload is not None
    if len(send) == batch.sendable:
        return batch.payload
    hashed = [i for i, entry in enumerate(entries) if entry.sendable]
    position = {i: p for p, i in enumerate(hashed)}
    rows = orjson.loads(batch.payload)
    return orjson.dumps([rows[position[i]] for i in send])


def _backoff(ctx: PostingContext, n: int) -> float:
    """The delay before retry number `n` (1-based), with jitter."""
    return backoff_delay(ctx.settings.retry_backoff, n, ctx.settings.retry_jitter, ctx.rng)


def _record_attempt(conn: Connection, batch_id: int, exchange: Exchange | None, rows_sent: int, error: str | None, key: str | None) -> None:
    if exchange is None:
        store.record_attempt(conn, batch_id, rows_sent=rows_sent, error=clean_text(error))
        return
    clean = exchange.status == 200 and error is None
    store.record_attempt(
        conn,
        batch_id,
        rows_sent=rows_sent,
        error=clean_text(redact(error or exchange.error, key)),
        started_at=exchange.started_at,
        latency_ms=exchange.latency_ms,
        http_status=exchange.status,
        response_body=None if clean else clean_text(body_text(exchange, key), 70000),
    )


@_keeps_lease
def _finalize(
    ctx: PostingContext,
    batch: Claimed,
    local: dict[int, Outcome],
    sent: dict[int, Outcome],
    exchange: Exchange | None,
    send: list[int],
) -> BatchResult:
    outcomes = [local.get(i) or sent[i] for i in range(len(batch.entries))]
    counts = counters(outcomes)
    attempts = batch.attempts + (1 if exchange is not None else 0)
    answered_at = datetime.now(timezone.utc) if exchange is not None else None
    key = ctx.settings.api_key_for(batch.data_source)
    with batch.conn.begin():
        conn = batch.conn
        store.finish(conn, batch.ref.batch_id, batch.owner, attempts, counts)
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
    return BatchResult.DONE


def _transient_failure(ctx: PostingContext, batch: Claimed, exchange: Exchange | None, error: str) -> BatchResult:
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
) -> BatchResult:
    """Back to the queue after `delay` (a countdown message), unless the batch's time budget is spent."""
    # Every wait counts, pacing by the shared rate limit included: a run never sits parked without an alert.
    if batch.elapsed() + delay > ctx.settings.batch_time_budget:
        return _fail(
            ctx,
            batch,
            exchange,
            f"time budget of {ctx.settings.batch_time_budget:g} s spent ({attempts} failed attempts, "
            f"{throttled} rate limited): {error or 'still waiting for the shared rate limit (GROWPANEL_MAX_RPS)'}",
            attempts,
        )
    key = ctx.settings.api_key_for(batch.data_source)
    with batch.conn.begin():
        conn = batch.conn
        store.reschedule(conn, batch.ref.batch_id, batch.owner, delay, attempts, throttled, clean_text(redact(error, key)))
        if exchange is not None or error is not None:
            _record_attempt(conn, batch.ref.batch_id, exchange, _sendable(batch), error, key)
    if delay <= ctx.settings.max_countdown:
        ctx.publisher.publish_batch(batch.ref, countdown=delay)
    # Longer waits are picked up by the sweeper once `not_before` has passed.
    log.info("batch %s: retry in %.3f s (%s)", batch.ref.label, delay, error or "paced")
    return BatchResult.RETRY


def _sendable(batch: Claimed) -> int:
    return batch.sendable


@_keeps_lease
def _fail(ctx: PostingContext, batch: Claimed, exchange: Exchange | None, error: str, attempts: int) -> BatchResult:
    key = ctx.settings.api_key_for(batch.data_source)
    error = clean_text(redact(error, key)) or error
    with batch.conn.begin():
        conn = batch.conn
        store.fail(conn, batch.ref.batch_id, batch.owner, attempts, error)
        _record_attempt(conn, batch.ref.batch_id, exchange, _sendable(batch), error, key)
        paused = pause_run(conn, batch.ref.run_id, f"batch {batch.ref.label} failed: {error}")
    if paused:
        ctx.alerter.send(Alert(batch.ref.run_id, batch.data_source, batch.ref.stage, batch.ref.label, error))
    return BatchResult.FAILED


@_keeps_lease
def _pause_for(ctx: PostingContext, batch: Claimed, reason: str, exchange: Exchange | None = None) -> BatchResult:
    """A problem every batch shares (key, URL): hold this batch and pause the run at once."""
    key = ctx.settings.api_key_for(batch.data_source)
    reason = clean_text(redact(reason, key)) or reason
    with batch.conn.begin():
        conn = batch.conn
        store.hold(conn, batch.ref.batch_id, batch.owner, reason)
        if exchange is not None:
            _record_attempt(conn, batch.ref.batch_id, exchange, _sendable(batch), reason, key)
        paused = pause_run(conn, batch.ref.run_id, reason)
    if paused:
        ctx.alerter.send(Alert(batch.ref.run_id, batch.data_source, batch.ref.stage, batch.ref.label, reason))
    return BatchResult.PAUSED


@_keeps_lease
def _split(
    ctx: PostingContext, batch: Claimed, exchange: Exchange, local: dict[int, Outcome], send: list[int], error: str
) -> BatchResult:
    """413: replace the batch by its two halves, the second depending on the first."""
    entries = batch.entries
    if len(send) < 2:
        too_large = {
            i: Outcome(
                entries[i].id, "error", f"the API refused this row as too large ({error})", http_status=413,
                payload_hash=entries[i].hash_bytes, sent=True,
            )
            for i in send
        }
        return _finalize(ctx, batch, local, too_large, exchange, send)
    hashed = [i for i, e in enumerate(entries) if e.sendable]
    bodies = dict(zip(hashed, orjson.loads(batch.payload or b"[]")))
    # Cut at the middle of the rows being sent, keeping manifest order.
    cut = send[len(send) // 2]
    halves = []
    for part in (range(0, cut), range(cut, len(entries))):
        half_bodies = [bodies[i] for i in part if i in bodies]
        halves.append(
            store.Half(
                rows=len(part),
                payload=orjson.dumps(half_bodies) if half_bodies else None,
                manifest=dump_manifest([entries[i] for i in part]),
            )
        )
    key = ctx.settings.api_key_for(batch.data_source)
    with batch.conn.begin():
        conn = batch.conn
        store.split(
            conn,
            batch.ref,
            batch.owner,
            pass_no=batch.pass_no,
            depends_on=batch.depends_on,
            first_try_at=batch.first_try_at,
            halves=halves,
            error=clean_text(redact(error, key)),
        )
        _record_attempt(conn, batch.ref.batch_id, exchange, len(send), error, key)
    log.info("batch %s: split in two after HTTP 413", batch.ref.label)
    return BatchResult.SPLIT


__all__ = ["ApiError", "BatchResult", "PostingContext", "process_batch"]
