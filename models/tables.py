"""Tables of the state database. Migrations in `migrations/` create exactly these."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from models.states import (  # noqa: F401 - re-exported for the models' users
    ACCEPTED_OUTCOMES,
    BATCH_STATES,
    FINAL_BATCH_STATES,
    IN_FLIGHT_STATES,
    OUTCOMES,
    REJECTED_OUTCOMES,
    RUN_ACTIVE_STATES,
    RUN_STATES,
    STAGES,
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base with stable constraint names for Alembic."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Run(Base):
    """One backfill of one data source (a retry adds a pass to the same run)."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    data_source: Mapped[str] = mapped_column(Text)
    api_url: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text)
    dry_run: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    only_changed: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    batch_size: Mapped[int] = mapped_column(Integer)
    # The three resolved queries and where they came from: workers re-read the source from these.
    mapping: Mapped[dict[str, Any]] = mapped_column(JSONB)
    mapping_file: Mapped[str | None] = mapped_column(Text)
    # Which database (and search_path) `start` checked the mapping against; producers must read the same.
    source_fingerprint: Mapped[str | None] = mapped_column(Text)
    # Retries run as further passes of the same run; batches and targets carry the pass number.
    pass_no: Mapped[int] = mapped_column(SmallInteger, server_default=text("1"))
    current_stage: Mapped[str] = mapped_column(Text, server_default=text("'plans'"))
    paused_reason: Mapped[str | None] = mapped_column(Text)
    reset_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    producer_lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    producer_owner: Mapped[str | None] = mapped_column(Text)
    pruned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(_in("state", RUN_STATES), name="state"),
        CheckConstraint(_in("current_stage", STAGES), name="current_stage"),
        # One active run per data source: the database refuses a second one, atomically.
        Index(
            "uq_runs_active_data_source",
            "data_source",
            unique=True,
            postgresql_where=text("state IN ('running', 'paused') AND NOT dry_run"),
        ),
    )


class RunStage(Base):
    """Production and completion of one stage of a run, and its summary once done."""

    __tablename__ = "run_stages"

    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    stage: Mapped[str] = mapped_column(Text, primary_key=True)
    # Rows of the (current pass's) source stream already in committed batches: where a producer resumes.
    rows_read: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    next_seq: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    # The last committed batch and the customer its last invoice belongs to: a resumed producer
    # chains the rest of that customer's invoices behind it.
    tail_batch_id: Mapped[int | None] = mapped_column(BigInteger)
    tail_customer: Mapped[str | None] = mapped_column(Text)
    produced: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    produced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Final counts, written when the stage is done, kept when `prune` removes the detail.
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    __table_args__ = (CheckConstraint(_in("stage", STAGES), name="stage"),)


class Batch(Base):
    """Up to BATCH_SIZE source rows of one stage: their payload, their state and their outcome counts."""

    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("runs.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(Text)
    pass_no: Mapped[int] = mapped_column(SmallInteger, server_default=text("1"))
    seq: Mapped[int] = mapped_column(Integer)
    # '' for a batch as produced; '0', '1', '01', ... for the halves of a batch split after a 413.
    part: Mapped[str] = mapped_column(Text, server_default=text("''"))
    state: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    # Invoices of one customer that span batches: this batch waits until that one is done.
    depends_on: Mapped[int | None] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(Integer)
    # The JSON array to POST, exactly as it will be sent (rows the producer rejected are not in it).
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    # One entry per row of the batch: id, payload hash, local outcome and message, references.
    manifest: Mapped[bytes | None] = mapped_column(LargeBinary)
    attempts: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    throttled: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    deliveries: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    first_try_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_owner: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    n_inserted: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    n_updated: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    n_unchanged: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    n_success: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    n_local: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    n_error: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    n_invalid: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    n_skipped: Mapped[int] = mapped_column(Integer, server_default=text("0"))

    __table_args__ = (
        CheckConstraint(_in("state", BATCH_STATES), name="state"),
        CheckConstraint(_in("stage", STAGES), name="stage"),
        UniqueConstraint("run_id", "stage", "pass_no", "seq", "part", name="uq_batches_position"),
        # Dispatch reads a stage's pending batches in order and stops at MAX_IN_FLIGHT; the barrier and
        # in-flight counts seek by state; status sums a run's batches: one index serves them all.
        Index("ix_batches_dispatch", "run_id", "stage", "state", "pass_no", "seq", "part"),
        # The sweeper looks for expired leases and lost messages across runs.
        Index("ix_batches_in_flight", "state", postgresql_where=text("state IN ('queued', 'running', 'retry_wait')")),
        # A worker that finished a batch takes the one that continues its chain, if any.
        Index("ix_batches_depends_on", "depends_on", postgresql_where=text("depends_on IS NOT NULL")),
    )


class BatchAttempt(Base):
    """One HTTP exchange of one batch: what went out and what came back."""

    __tablename__ = "batch_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    latency_ms: Mapped[float | None] = mapped_column(Float)
    rows_sent: Mapped[int] = mapped_column(Integer)
    http_status: Mapped[int | None] = mapped_column(SmallInteger)
    error: Mapped[str | None] = mapped_column(Text)
    # Kept only for attempts that were not a clean 200: the body says what went wrong.
    response_body: Mapped[str | None] = mapped_column(Text)


class AuditRow(Base):
    """The final outcome of one source row in one run."""

    __tablename__ = "audit"

    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    entity: Mapped[str] = mapped_column(Text, primary_key=True)
    external_id: Mapped[str] = mapped_column(Text, primary_key=True)
    batch_id: Mapped[int | None] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(Text)
    # The raw `export_status` the API answered (None for outcomes decided locally).
    export_status: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text)
    http_status: Mapped[int | None] = mapped_column(SmallInteger)
    attempts: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    payload_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # How many passes (the run, then each `retry`) gave this row an outcome, and the one before.
    passes: Mapped[int] = mapped_column(SmallInteger, server_default=text("1"))
    previous_outcome: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(_in("outcome", OUTCOMES), name="outcome"),
        CheckConstraint(_in("entity", STAGES), name="entity"),
        # `errors RUN`, `retry RUN` and the report read only the rejected rows of a run.
        Index(
            "ix_audit_rejected",
            "run_id",
            "entity",
            postgresql_where=text("outcome IN ('error', 'invalid', 'skipped')"),
        ),
    )


class AuditHistory(Base):
    """An audit row replaced by a later pass (`retry`), kept as it was."""

    __tablename__ = "audit_history"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("runs.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(Text)
    external_id: Mapped[str] = mapped_column(Text)
    pass_no: Mapped[int] = mapped_column(SmallInteger)
    batch_id: Mapped[int | None] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text)
    http_status: Mapped[int | None] = mapped_column(SmallInteger)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    replaced_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_audit_history_row", "run_id", "entity", "external_id"),)


class RetryTarget(Base):
    """A row that `retry` re-reads from the source; `found` tells whether the source still has it."""

    __tablename__ = "retry_targets"

    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    pass_no: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    entity: Mapped[str] = mapped_column(Text, primary_key=True)
    external_id: Mapped[str] = mapped_column(Text, primary_key=True)
    found: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
