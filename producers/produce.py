"""Production of a run's batches: stream each stage from the source, check every row, write batches.

Runs inside a worker (task `produce`), holding a lease on the run (renewed by time, `producers.lease`)
so a second delivery of the task or a sweeper's re-queue cannot produce twice. All stages are read in
one snapshot of the source (`producers.source.begin_snapshot`). Batches are committed in checkpoints;
a producer that dies, or loses its source connection, resumes in a new snapshot and skips by id what
the committed batches hold (`producers.resume`), so a source that changed meanwhile loses no row and
repeats none.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, text

from backfill import store
from backfill.errors import ConfigError, LeaseLost
from backfill.manifest import dump_manifest
from backfill.runs import (
    KEEP_TAIL,
    checkpoint_stage,
    claim_producer,
    extend_producer,
    mark_targets_found,
    release_producer,
    renew_producer,
)
from backfill.settings import Settings
from models.states import STAGES
from producers.batching import BatchDraft, Packer
from producers.entities import ENTITIES
from producers.lease import LeaseKeeper
from producers.mapping import Mapping, check_columns
from producers.normalize import PayloadOptions, RowBuilder
from producers.resume import Batched, tail_instant
from producers.source import (
    DUPS,
    GROUP,
    RANK,
    SourceReadError,
    SourceUnavailable,
    StageReader,
    begin_snapshot,
    fingerprint,
    source_connection,
)
from producers.stream import Filters, StageStream

log = logging.getLogger(__name__)

CHECKPOINT_BATCHES = 20
CHECKPOINT_SECONDS = 1.0
# Waits between attempts after a transient source error (a restart, a failover): about two minutes in
# all, then the run pauses with the reason.
SOURCE_RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)


@dataclass(frozen=True)
class ProducerContext:
    """What a producer needs; built by the worker (or by the CLI for a dry run)."""

    engine: Engine
    source_url: str
    options: PayloadOptions
    lease_seconds: float
    owner: str
    # Called after each checkpoint so the coordinator can dispatch what was just written.
    on_checkpoint: Callable[[int], None]

    @classmethod
    def from_settings(
        cls, settings: Settings, engine: Engine, data_source: str, owner: str, on_checkpoint: Callable[[int], None]
    ) -> ProducerContext:
        """A producer of runs of `data_source`, with the payload options and lease of `settings`."""
        settings.require("source_database_url")
        assert settings.source_database_url is not None
        return cls(
            engine=engine,
            source_url=settings.source_database_url,
            options=PayloadOptions(
                data_source=data_source,
                invoice_amount_field=settings.invoice_amount_field,
                plan_send_external_id=settings.plan_send_external_id,
            ),
            lease_seconds=settings.producer_lease_seconds,
            owner=owner,
            on_checkpoint=on_checkpoint,
        )


def producer_token(owner: str) -> str:
    """A lease token per production, not per process: two deliveries of `produce` to threads of one
    worker must not both hold the lease."""
    return f"{owner}:{uuid.uuid4().hex[:12]}"


def produce_run(ctx: ProducerContext, run_id: int, token: str | None = None) -> bool:
    """Produce every stage not yet produced. Returns False if the lease could not be taken or was lost.

    `token`: the lease token, when the caller already took the lease with it (`runs.claim_producer`).
    """
    ctx = replace(ctx, owner=token or producer_token(ctx.owner))
    with ctx.engine.begin() as conn:
        run = claim_producer(conn, run_id, ctx.owner, ctx.lease_seconds)
    if run is None:
        return False
    log.info("producer %s took run %s", ctx.owner, run_id)

    def renew() -> bool:
        # Extend only: a lease given up or taken over is never taken back by a late heartbeat.
        with ctx.engine.begin() as conn:
            return extend_producer(conn, run_id, ctx.owner, ctx.lease_seconds)

    try:
        with LeaseKeeper(renew, ctx.lease_seconds, run_id) as lease:
            _produce_with_retries(ctx, run_id, run, Mapping.from_json(run["mapping"]), lease)
    except LeaseLost:
        return False
    finally:
        with ctx.engine.begin() as conn:
            release_producer(conn, run_id, ctx.owner)
    return True


def _produce_with_retries(ctx: ProducerContext, run_id: int, run: dict[str, Any], mapping: Mapping, lease: LeaseKeeper) -> None:
    """Transient source errors are retried in a new snapshot (resuming by id); others pause the run."""
    failures = 0
    while True:
        progress: list[int] = [0]
        try:
            _produce_snapshot(ctx, run_id, run, mapping, lease, progress)
            return
        except (SourceReadError, SourceUnavailable) as exc:
            lease.check()  # a query we cancelled because the lease was lost is not a source failure
            if progress[0]:
                failures = 0
            if not exc.transient or failures >= len(SOURCE_RETRY_DELAYS):
                raise
            delay = SOURCE_RETRY_DELAYS[failures]
            failures += 1
            log.warning("run %s: %s; reading again in %.0f s (attempt %d)", run_id, exc, delay, failures + 1)
            lease.sleep(delay)


def _stage_state(engine: Engine, run_id: int, stage: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(
            conn.execute(
                text("SELECT produced, rows_read, next_seq, tail_batch_id, tail_customer FROM run_stages WHERE run_id = :r AND stage = :s"),
                {"r": run_id, "s": stage},
            ).mappings().one()
        )


def _produce_snapshot(
    ctx: ProducerContext, run_id: int, run: dict[str, Any], mapping: Mapping, lease: LeaseKeeper, progress: list[int]
) -> None:
    with source_connection(ctx.source_url) as source:
        expected = run["source_fingerprint"]
        try:
            found = fingerprint(source)
        except psycopg.Error as exc:
            raise SourceReadError("the source's name", exc) from None
        if expected is not None and found != expected:
            raise ConfigError(
                f"this worker's SOURCE_DATABASE_URL reads {found}, but the run was started against "
                f"{expected}: give workers and `start` the same SOURCE_DATABASE_URL"
            )
        lease.watch(source)
        try:
            try:
                begin_snapshot(source)
            except psycopg.Error as exc:
                raise SourceReadError("the snapshot", exc) from None
            # Stages produced before this snapshot may lack rows it has: their children are checked.
            earlier = [stage for stage in STAGES if _stage_state(ctx.engine, run_id, stage)["produced"]]
            for stage in STAGES:
                state = _stage_state(ctx.engine, run_id, stage)
                if state["produced"]:
                    continue
                missing = {}
                if run["pass_no"] == 1:
                    for column, parent in ENTITIES[stage].parents:
                        if parent in earlier:
                            missing[parent] = _missing_rows(ctx, run_id, source, parent, mapping.queries[parent], run["batch_size"], lease)
                produce_stage(ctx, run_id, run["pass_no"], run["batch_size"], stage, mapping.queries[stage], state,
                              source=source, lease=lease, missing_parents=missing, progress=progress)
        finally:
            lease.watch(None)


def _targets(engine: Engine, run_id: int, pass_no: int, stage: str) -> set[str] | None:
    if pass_no == 1:
        return None
    with engine.connect() as conn:
        return set(
            conn.execute(
                text("SELECT external_id FROM retry_targets WHERE run_id = :r AND pass_no = :p AND entity = :s"),
                {"r": run_id, "p": pass_no, "s": stage},
            ).scalars()
        )


def _open_stream(source: psycopg.Connection[Any], stage: str, query: str, batch_size: int, options: PayloadOptions,
                 filters: Filters) -> tuple[StageReader, StageStream]:
    spec = ENTITIES[stage]
    reader = StageReader(source, stage, query, batch_size)
    columns = reader.columns
    try:
        check_columns(stage, [c for c in columns if not c.startswith("__gp_")])
    except ConfigError:
        reader.close()
        raise
    builder = RowBuilder(stage, columns, reader.type_names, options)
    group_i = columns.index(GROUP) if spec.group_by else None
    stream = StageStream(spec, columns, reader.type_names, builder.build, columns.index(DUPS), columns.index(RANK),
                         group_i, filters)
    return reader, stream


def _missing_rows(ctx: ProducerContext, run_id: int, source: psycopg.Connection[Any], stage: str, query: str,
                  batch_size: int, lease: LeaseKeeper) -> set[str]:
    """Ids this snapshot has in `stage` that the stage's batches (read in an earlier snapshot) lack."""
    batched = Batched(ctx.engine, run_id, stage, 1, None)
    try:
        reader, stream = _open_stream(source, stage, query, batch_size, ctx.options, Filters(batched=batched))
        try:
            missing = set()
            for chunk in reader.chunks():
                lease.check()
                missing.update(item.entry.id for item in stream.items(chunk) if item.entry is not None)
        finally:
            reader.close()
    finally:
        batched.close()
    if missing:
        log.warning("run %s: %d %s were added to the source after the run read them; their rows are skipped",
                    run_id, len(missing), stage)
    return missing


def produce_stage(
    ctx: ProducerContext,
    run_id: int,
    pass_no: int,
    batch_size: int,
    stage: str,
    query: str,
    state: dict[str, Any],
    *,
    source: psycopg.Connection[Any],
    lease: LeaseKeeper,
    missing_parents: dict[str, set[str]] | None = None,
    progress: list[int] | None = None,
) -> None:
    """Stream one stage to the end, committing batches as they fill; after a resume, skip what is batched."""
    spec = ENTITIES[stage]
    targets = _targets(ctx.engine, run_id, pass_no, stage)
    writer = _BatchWriter(ctx, run_id, pass_no, stage, state["tail_batch_id"], lease, progress)
    if targets is not None and not targets:
        writer.finish(state["rows_read"], state["next_seq"])
        return
    resumed = state["next_seq"] > 1
    filters = Filters(targets=targets, missing_parents=missing_parents or {})
    if resumed:
        filters.batched = Batched(ctx.engine, run_id, stage, pass_no, 4 if spec.group_by else None)
        filters.tail_group = state["tail_customer"]
        if spec.group_by and spec.order_by:
            filters.tail_latest = tail_instant(ctx.engine, state["tail_batch_id"], state["tail_customer"], spec.group_by, spec.order_by)
        log.info("run %s: %s resumes in a new snapshot, skipping the %d ids already batched", run_id, stage, filters.batched.count)
    try:
        reader, stream = _open_stream(source, stage, query, batch_size, ctx.options, filters)
        try:
            packer = Packer(spec.group_by is not None, batch_size, state["next_seq"], state["tail_customer"],
                            state["rows_read"], state["tail_batch_id"])
            add = packer.add
            for chunk in reader.chunks():
                lease.check()
                for item in stream.items(chunk):
                    draft = add(item.entry, item.body, item.group, item.group_size)
                    if draft is not None:
                        writer.add(draft)
            for item in stream.release():
                draft = add(item.entry, item.body, item.group, item.group_size)
                if draft is not None:
                    writer.add(draft)
            last = packer.finish()
            if last is not None:
                writer.add(last)
            writer.finish(packer.position, packer.next_seq)
        finally:
            reader.close()
    finally:
        if filters.batched is not None:
            filters.batched.close()


class _BatchWriter:
    """Buffers drafts and commits them with the stream position, in checkpoints."""

    def __init__(self, ctx: ProducerContext, run_id: int, pass_no: int, stage: str, tail_batch_id: int | None,
                 lease: LeaseKeeper, progress: list[int] | None = None):
        self.lease = lease
        self.progress = progress if progress is not None else [0]
        self.ctx = ctx
        self.run_id = run_id
        self.pass_no = pass_no
        self.stage = stage
        self.pending: list[BatchDraft] = []
        self.last_id = tail_batch_id
        self.last_commit = time.monotonic()
        self.committed_any = False

    def add(self, draft: BatchDraft) -> None:
        """Buffer a complete batch; commit a checkpoint when enough have gathered or time has passed."""
        self.pending.append(draft)
        # The first batch goes out at once: the first request should not wait for a whole checkpoint.
        if (
            not self.committed_any
            or len(self.pending) >= CHECKPOINT_BATCHES
            or time.monotonic() - self.last_commit >= CHECKPOINT_SECONDS
        ):
            self.commit(produced=False)

    def finish(self, rows_read: int, next_seq: int) -> None:
        """The last checkpoint: the stage is produced."""
        self.commit(produced=True, rows_read=rows_read, next_seq=next_seq)

    def commit(self, produced: bool, rows_read: int | None = None, next_seq: int | None = None) -> None:
        """Insert the buffered batches and move the stage's resume point past them, atomically."""
        self.lease.check()
        with self.ctx.engine.begin() as conn:
            renew_producer(conn, self.run_id, self.ctx.owner, self.ctx.lease_seconds)
            tail_customer = None
            for draft in self.pending:
                # `after`: the batch a resumed producer's chain continues, wherever it comes in the stream.
                prev = draft.after if draft.after is not None else self.last_id
                self.last_id = _insert_batch(conn, self.run_id, self.pass_no, self.stage, draft, prev)
                tail_customer = draft.tail_customer
                if not produced:
                    rows_read = draft.stream_end
                    next_seq = draft.seq + 1
            if self.pending or produced:
                checkpoint_stage(conn, self.run_id, self.stage, rows_read=rows_read, next_seq=next_seq,
                                 tail_batch_id=self.last_id,
                                 tail_customer=tail_customer if self.pending else KEEP_TAIL, produced=produced)
            if self.pending:
                _mark_targets_found(conn, self.run_id, self.pass_no, self.stage, self.pending)
        self.progress[0] += len(self.pending)
        self.pending.clear()
        self.committed_any = True
        self.last_commit = time.monotonic()
        self.ctx.on_checkpoint(self.run_id)


def _insert_batch(conn: Connection, run_id: int, pass_no: int, stage: str, draft: BatchDraft, prev_id: int | None) -> int:
    return store.insert_batch(
        conn,
        run_id=run_id,
        stage=stage,
        pass_no=pass_no,
        seq=draft.seq,
        depends_on=prev_id if draft.chained else None,
        rows=len(draft.entries),
        payload=draft.payload(),
        manifest=dump_manifest(draft.entries),
    )


def _mark_targets_found(conn: Connection, run_id: int, pass_no: int, stage: str, drafts: list[BatchDraft]) -> None:
    if pass_no > 1:
        mark_targets_found(conn, run_id, pass_no, stage, [e.id for d in drafts for e in d.entries])


__all__ = ["ConfigError", "LeaseLost", "ProducerContext", "SourceReadError", "produce_run", "produce_stage"]
