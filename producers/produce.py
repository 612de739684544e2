"""Production of a run's batches: stream each stage from the source, check every row, write batches.

Runs inside a worker (task `produce`), holding a lease on the run so a second delivery of the task or a
sweeper's re-queue cannot produce twice. Batches are committed in checkpoints together with the number
of stream rows they cover, so a producer that dies resumes exactly after the last committed batch.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
import uuid
from dataclasses import dataclass, replace
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, text

from backfill import store
from backfill.errors import ConfigError, LeaseLost
from backfill.manifest import ManifestEntry, dump_manifest
from backfill.runs import claim_producer, mark_targets_found, release_producer, renew_producer
from backfill.settings import Settings
from models.states import STAGES
from producers.batching import BatchDraft, Packer
from producers.mapping import Mapping, check_columns
from producers.normalize import PayloadOptions, RowBuilder
from producers.source import DUPS, GROUP, RANK, SourceReadError, StageReader, fingerprint, source_connection

log = logging.getLogger(__name__)

CHECKPOINT_BATCHES = 20
CHECKPOINT_SECONDS = 1.0
_DUMPS = orjson.dumps


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
    mapping = Mapping.from_json(run["mapping"])
    try:
        for stage in STAGES:
            with ctx.engine.connect() as conn:
                state = conn.execute(
                    text("SELECT produced, rows_read, next_seq, tail_batch_id, tail_customer FROM run_stages WHERE run_id = :r AND stage = :s"),
                    {"r": run_id, "s": stage},
                ).mappings().one()
            if state["produced"]:
                continue
            produce_stage(
                ctx,
                run_id,
                run["pass_no"],
                run["batch_size"],
                stage,
                mapping.queries[stage],
                {**state, "fingerprint": run["source_fingerprint"]},
            )
    except LeaseLost:
        return False
    finally:
        with ctx.engine.begin() as conn:
            release_producer(conn, run_id, ctx.owner)
    return True


def _targets(engine: Engine, run_id: int, pass_no: int, stage: str) -> list[str] | None:
    if pass_no == 1:
        return None
    with engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT external_id FROM retry_targets WHERE run_id = :r AND pass_no = :p AND entity = :s"),
                {"r": run_id, "p": pass_no, "s": stage},
            ).scalars()
        )


def produce_stage(
    ctx: ProducerContext, run_id: int, pass_no: int, batch_size: int, stage: str, query: str, state: dict[str, Any]
) -> None:
    """Stream one stage from its checkpoint to the end, committing batches as they fill."""
    targets = _targets(ctx.engine, run_id, pass_no, stage)
    writer = _BatchWriter(ctx, run_id, pass_no, stage, state["tail_batch_id"])
    if targets == []:
        writer.finish(state["rows_read"], state["next_seq"])
        return
    with source_connection(ctx.source_url) as source:
        expected = state.get("fingerprint")
        if expected is not None and fingerprint(source) != expected:
            raise ConfigError(
                f"this worker's SOURCE_DATABASE_URL reads {fingerprint(source)}, but the run was started against "
                f"{expected}: give workers and `start` the same SOURCE_DATABASE_URL"
            )
        reader = StageReader(source, stage, query, batch_size, targets)
        try:
            columns = reader.columns
            check_columns(stage, [c for c in columns if not c.startswith("__gp_")])
            builder = RowBuilder(stage, columns, reader.type_names, ctx.options)
            dups_i, rank_i = columns.index(DUPS), columns.index(RANK)
            group_i = columns.index(GROUP) if stage == "invoices" else None
            cust_i = columns.index("customer_id") if stage == "invoices" else None
            reader.skip(state["rows_read"])
            packer = Packer(stage, batch_size, state["next_seq"], state["tail_customer"], state["rows_read"])
            rows_read = state["rows_read"]
            build = builder.build
            for chunk in reader.chunks():
                for row in chunk:
                    rows_read += 1
                    entry, body = _entry(build, row, dups_i, rank_i, rows_read)
                    if group_i is not None:
                        key = row[cust_i]  # type: ignore[index]
                        draft = packer.add(entry, body, None if key is None else str(key), row[group_i])
                    else:
                        draft = packer.add(entry, body, None, 0)
                    if draft is not None:
                        writer.add(draft)
            last = packer.finish()
            if last is not None:
                writer.add(last)
            writer.finish(rows_read, packer.next_seq)
        finally:
            reader.close()


def _entry(
    build: Callable[[Any], Any], row: tuple[Any, ...], dups_i: int, rank_i: int, ordinal: int
) -> tuple[ManifestEntry | None, bytes | None]:
    """One manifest entry and payload body per row; None for the extra copies of a duplicated id."""
    dups = row[dups_i]
    if dups > 1 and row[rank_i] > 1:
        return None, None
    ext_id, payload, problems, customer_id, plan_id = build(row)
    if ext_id is None:
        ext_id = f"(no id: source row {ordinal})"
        problems = problems or ["id is required"]
    if dups > 1:
        return ManifestEntry(ext_id, None, "invalid", f"id appears {dups} times in the source", customer_id, plan_id), None
    if problems:
        return ManifestEntry(ext_id, None, "invalid", "; ".join(problems), customer_id, plan_id), None
    # The mapping fixes the key order, so the same row always gives the same bytes (and hash).
    body = _DUMPS(payload)
    return ManifestEntry(ext_id, hashlib.blake2b(body, digest_size=16).hexdigest(), None, None, customer_id, plan_id), body


class _BatchWriter:
    """Buffers drafts and commits them with the stream position, in checkpoints."""

    def __init__(self, ctx: ProducerContext, run_id: int, pass_no: int, stage: str, tail_batch_id: int | None):
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
        with self.ctx.engine.begin() as conn:
            renew_producer(conn, self.run_id, self.ctx.owner, self.ctx.lease_seconds)
            tail_customer = None
            for draft in self.pending:
                self.last_id = _insert_batch(conn, self.run_id, self.pass_no, self.stage, draft, self.last_id)
                tail_customer = draft.tail_customer
                if not produced:
                    rows_read = draft.stream_end
                    next_seq = draft.seq + 1
            if self.pending or produced:
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
                        "tail_id": self.last_id,
                        "has_tail": bool(self.pending),
                        "tail_customer": tail_customer,
                        "produced": produced,
                        "run_id": self.run_id,
                        "stage": self.stage,
                    },
                )
            if self.pending:
                _mark_targets_found(conn, self.run_id, self.pass_no, self.stage, self.pending)
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
    if pass_no == 1:
        return
    mark_targets_found(conn, run_id, pass_no, stage, [e.id for d in drafts for e in d.entries])


__all__ = ["ConfigError", "LeaseLost", "ProducerContext", "SourceReadError", "produce_run", "produce_stage"]
