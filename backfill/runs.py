"""A run's life: create, pause, resume, cancel, retry. The database row lock on the run orders them."""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from backfill.dispatch import BatchRef, Publisher, advance
from backfill.errors import RunStateError
from models.states import STAGES


@dataclass(frozen=True)
class RunOptions:
    """What `start` decides once, stored on the run."""

    data_source: str
    api_url: str
    batch_size: int
    mapping: dict[str, object]
    mapping_file: str | None = None
    dry_run: bool = False
    only_changed: bool = False
    reset_done: bool = False
    source_fingerprint: str | None = None


def create_run(engine: Engine, options: RunOptions) -> int:
    """Insert the run and its stages; refuse a second active run for the same data source."""
    try:
        with engine.begin() as conn:
            run_id = conn.execute(
                text(
                    """
                    INSERT INTO runs (data_source, api_url, state, dry_run, only_changed, batch_size, mapping,
                                      mapping_file, reset_at, source_fingerprint)
                    VALUES (:ds, :url, 'running', :dry, :only, :bs, CAST(:mapping AS jsonb), :file,
                            CASE WHEN :reset THEN now() END, :fingerprint)
                    RETURNING id
                    """
                ),
                {
                    "ds": options.data_source,
                    "url": options.api_url,
                    "dry": options.dry_run,
                    "only": options.only_changed,
                    "bs": options.batch_size,
                    "mapping": orjson.dumps(options.mapping).decode(),
                    "file": options.mapping_file,
                    "reset": options.reset_done,
                    "fingerprint": options.source_fingerprint,
                },
            ).scalar_one()
            for stage in STAGES:
                conn.execute(text("INSERT INTO run_stages (run_id, stage) VALUES (:r, :s)"), {"r": run_id, "s": stage})
        if options.only_changed:
            # The accepted-hash lookup needs fresh statistics: right after a big run autovacuum may not
            # have analysed the audit yet, and the planner would scan a whole run per batch.
            with engine.connect() as conn:
                conn.execute(text("ANALYZE audit"))
                conn.commit()
    except IntegrityError:
        active = active_run(engine, options.data_source)
        raise RunStateError(_active_message(active, options.data_source)) from None
    return int(run_id)


def active_run(engine: Engine, data_source: str) -> tuple[int, str] | None:
    """The running or paused run of a data source, if any."""
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT id, state FROM runs WHERE data_source = :ds AND state IN ('running', 'paused') AND NOT dry_run"),
            {"ds": data_source},
        ).first()
    return (row.id, row.state) if row else None


def _active_message(active: tuple[int, str] | None, data_source: str) -> str:
    if active is None:
        return f"another run for data source {data_source} is active"
    run_id, state = active
    return (
        f"run {run_id} for data source {data_source} is {state}: finish it with "
        f"`growpanel-backfill resume {run_id}` or stop it with `growpanel-backfill cancel {run_id}` first"
    )


def lock_run(conn: Connection, run_id: int) -> dict[str, object]:
    """Lock the run row for this transaction; RunStateError if it does not exist."""
    row = conn.execute(text("SELECT * FROM runs WHERE id = :id FOR UPDATE"), {"id": run_id}).mappings().first()
    if row is None:
        raise RunStateError(f"there is no run {run_id}")
    return dict(row)


def cancel_run(engine: Engine, run_id: int) -> str:
    """No new batches are queued; batches being posted finish; `resume` can pick the run up later."""
    with engine.begin() as conn:
        run = lock_run(conn, run_id)
        if run["state"] not in ("running", "paused"):
            raise RunStateError(f"run {run_id} is {run['state']}; only a running or paused run can be cancelled")
        conn.execute(
            text("UPDATE runs SET state = 'cancelled', paused_reason = 'cancelled by an operator', finished_at = now() WHERE id = :r"),
            {"r": run_id},
        )
        # Queued messages will find the run cancelled and drop; the batches wait as pending.
        conn.execute(
            text("UPDATE batches SET state = 'pending' WHERE run_id = :r AND state IN ('queued', 'retry_wait')"),
            {"r": run_id},
        )
    return "cancelled"


@dataclass(frozen=True)
class ResumeResult:
    """What `resume` did."""

    run_id: int
    state: str
    requeued: int
    producer_restarted: bool


def resume_run(engine: Engine, run_id: int, publisher: Publisher, max_in_flight: int, started_at: float | None = None) -> ResumeResult:
    """Re-queue every batch of the run that has no final outcome, and restart its producer if needed.

    Batches queued before this command began (`started_at`, a local time.time()) may have lost their
    message (Redis restarted empty): they go back to pending and are queued again. A concurrent `resume`
    waits on the run's row lock and then finds them queued after its own start, so it does not queue
    them a second time.
    """
    age = max(0.0, time.time() - started_at) if started_at is not None else 0.0
    with engine.begin() as conn:
        # The command's start on the database's clock (queued_at is written with that clock).
        began = conn.execute(text("SELECT clock_timestamp() - make_interval(secs => :age)"), {"age": age}).scalar_one()
    with engine.begin() as conn:
        run = lock_run(conn, run_id)
        if run["dry_run"]:
            raise RunStateError(f"run {run_id} is a dry run; start a real run instead")
        if run["state"] in ("succeeded", "completed_with_errors"):
            return ResumeResult(run_id, str(run["state"]), 0, False)
        if run["state"] != "running":
            other = conn.execute(
                text(
                    "SELECT id FROM runs WHERE data_source = :ds AND id <> :r AND state IN ('running', 'paused') AND NOT dry_run"
                ),
                {"ds": run["data_source"], "r": run_id},
            ).scalar()
            if other is not None:
                raise RunStateError(
                    f"run {other} for data source {run['data_source']} is active; cancel it before resuming run {run_id}"
                )
        conn.execute(
            text(
                "UPDATE runs SET state = 'running', paused_reason = NULL, finished_at = NULL, resumed_at = now() WHERE id = :r"
            ),
            {"r": run_id},
        )
        requeued = conn.execute(
            text(
                """
                UPDATE batches SET state = 'pending', lease_owner = NULL, lease_until = NULL,
                    attempts = CASE WHEN state = 'failed' THEN 0 ELSE attempts END,
                    throttled = CASE WHEN state = 'failed' THEN 0 ELSE throttled END,
                    first_try_at = CASE WHEN state = 'failed' THEN NULL ELSE first_try_at END,
                    deliveries = CASE WHEN state = 'failed' THEN 0 ELSE deliveries END,
                    not_before = NULL, finished_at = NULL
                WHERE run_id = :r AND (
                    state = 'failed'
                    OR (state IN ('queued', 'retry_wait') AND coalesce(queued_at, '-infinity') < :began)
                    OR (state = 'running' AND lease_until < now())
                )
                RETURNING id
                """
            ),
            {"r": run_id, "began": began},
        ).all()
        produced = conn.execute(
            text("SELECT bool_and(produced) FROM run_stages WHERE run_id = :r"), {"r": run_id}
        ).scalar_one()
        lease_free = run["producer_lease_until"] is None or conn.execute(
            text("SELECT :t < now()"), {"t": run["producer_lease_until"]}
        ).scalar_one()
        restart_producer = not produced and lease_free
    if restart_producer:
        publisher.publish_produce(run_id)
    advance(engine, run_id, publisher, max_in_flight)
    return ResumeResult(run_id, "running", len(requeued), bool(restart_producer))


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
        if run["state"] in ("running", "paused"):
            raise RunStateError(
                f"run {run_id} is {run['state']}; retry works on a finished run (resume or cancel it first)"
            )
        other = conn.execute(
            text("SELECT id FROM runs WHERE data_source = :ds AND id <> :r AND state IN ('running', 'paused') AND NOT dry_run"),
            {"ds": run["data_source"], "r": run_id},
        ).scalar()
        if other is not None:
            raise RunStateError(f"run {other} for data source {run['data_source']} is active; let it finish first")
        pass_no = int(run["pass_no"]) + 1  # type: ignore[call-overload]
        counts = {}
        for stage in STAGES:
            counts[stage] = conn.execute(
                text(
                    """
                    INSERT INTO retry_targets (run_id, pass_no, entity, external_id)
                    SELECT run_id, :p, entity, external_id FROM audit
                    WHERE run_id = :r AND entity = :s AND outcome IN ('error', 'invalid', 'skipped')
                      AND external_id NOT LIKE '(no id: %'
                    """
                ),
                {"r": run_id, "p": pass_no, "s": stage},
            ).rowcount
        if not any(counts.values()):
            return counts
        conn.execute(
            text(
                """
                UPDATE runs SET state = 'running', pass_no = :p, current_stage = 'plans', paused_reason = NULL,
                    finished_at = NULL, resumed_at = now()
                WHERE id = :r
                """
            ),
            {"p": pass_no, "r": run_id},
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


__all__ = ["BatchRef", "RunOptions", "cancel_run", "create_run", "prepare_retry", "resume_run"]
