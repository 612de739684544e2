"""Taking a batch's lease for this worker: the claim of a message's batch, or of the batch a slot
takes after one is done (`backfill.dispatch.advance_after`), and why a message's batch was not ours.

Every claim has a lease token of its own (`new_owner`), so two threads of one process never share a
lease; the batch's columns the posting needs travel in `Claimed`.
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from backfill import store
from backfill.manifest import ManifestEntry, load_manifest
from backfill.messages import BatchRef, BatchResult
from models.states import BatchState, CLAIMABLE_STATES, RunState
from workers.context import PostingContext


@dataclass
class Claimed:
    """A batch this worker holds the lease of."""

    ref: BatchRef
    pass_no: int
    rows: int
    payload: bytes | None
    entries: list[ManifestEntry]
    manifest: bytes
    attempts: int
    throttled: int
    first_try_at: datetime
    # Seconds since the first try when the lease was taken, on the database's clock.
    elapsed_at_claim: float
    claimed_at: float  # time.monotonic() at the claim: elapsed time never reads the local wall clock
    depends_on: int | None
    data_source: str
    api_url: str
    only_changed: bool
    # One connection serves the whole batch (claim, decisions, record, advance): one pool checkout.
    conn: Connection
    # This claim's lease token: unique per claim, so two threads of one process never share a lease.
    owner: str

    @functools.cached_property
    def sendable(self) -> int:
        """Entries with a payload body (rows the producer did not decide locally)."""
        return sum(1 for e in self.entries if e.hash is not None)

    def elapsed(self) -> float:
        """Seconds since the batch's first try (database clock at the claim, then a monotonic clock)."""
        return self.elapsed_at_claim + time.monotonic() - self.claimed_at


def new_owner(ctx: PostingContext) -> str:
    return f"{ctx.owner}:{uuid.uuid4().hex[:12]}"


def claim(ctx: PostingContext, conn: Connection, ref: BatchRef) -> Claimed | None:
    owner = new_owner(ctx)
    with conn.begin():
        row = store.claim(conn, ref.batch_id, owner, ctx.settings.lease_seconds)
    return None if row is None else claimed(conn, ref, row, owner)


def claimed(conn: Connection, ref: BatchRef, row: Any, owner: str) -> Claimed:
    return Claimed(
        ref=ref,
        pass_no=row.pass_no,
        rows=row.rows,
        payload=row.payload,
        entries=load_manifest(row.manifest),
        manifest=row.manifest,
        attempts=row.attempts,
        throttled=row.throttled,
        first_try_at=row.first_try_at,
        elapsed_at_claim=float(row.elapsed),
        claimed_at=time.monotonic(),
        depends_on=row.depends_on,
        data_source=row.data_source,
        api_url=row.api_url,
        only_changed=row.only_changed,
        conn=conn,
        owner=owner,
    )


def not_claimed(ctx: PostingContext, conn: Connection, ref: BatchRef) -> BatchResult:
    """Why the claim failed: a paused run (hold the batch), an early retry (re-queue), or a duplicate."""
    with conn.begin():
        row = store.why_not_claimed(conn, ref.batch_id)
        if row is None:
            return BatchResult.GONE
        if row.run_state != RunState.RUNNING and row.state in CLAIMABLE_STATES:
            # Paused or cancelled: the batch waits in the database, `resume` queues it again.
            store.hold_unclaimed(conn, ref.batch_id)
            return BatchResult.HELD
    if row.state == BatchState.RETRY_WAIT and row.remaining is not None and row.remaining > 0:
        if row.remaining <= ctx.settings.max_countdown:
            ctx.publisher.publish_batch(ref, countdown=row.remaining)
        return BatchResult.EARLY
    return BatchResult.DUPLICATE
