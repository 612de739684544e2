"""`prune`: remove old runs' per-row and per-attempt detail, keep every run's summary.

What goes: audit rows, audit history, retry targets, batch attempts, and each batch's payload and
manifest. What stays: the run, its stages (with their summaries) and every batch with its state and
counters, which is all `status` and `runs` read. Only runs that finished (succeeded,
completed_with_errors, failed, cancelled) before the cutoff are touched, never a running or paused one.

A run may hold millions of audit rows, so everything is deleted in chunks, one short transaction
each, walking the primary key from where the last chunk stopped (no chunk rescans what is gone).
Each chunk first takes a share lock on the run row and checks that it is still finished: a `retry`
or `resume` (which lock the row for update) waits for the chunk, and pruning stops as soon as the run
is active again. `runs.pruned_at` is set before the first chunk (the detail is going away) and again
when it is gone. The audit rows go last, so a run left half-pruned (an interrupted prune) still has
some and is taken up by the next prune; a `retry` pass that finishes later makes the run prunable again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, text

from backfill.runs import mark_pruned
from backfill.store import clear_detail
from console.status import FINAL_RUN_STATES

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Rows per delete: small enough that a chunk holds its locks and WAL for a fraction of a second.
DEFAULT_CHUNK = 10_000
# Batches per chunk when clearing payloads (each may hold a few hundred KB of TOASTed JSON).
BATCH_CHUNK_DIVISOR = 50

# Tables whose rows are keyed by run, walked by (run_id, *key) in primary-key (or index) order.
_KEYED_TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("audit_history", ("entity", "external_id")),
    ("retry_targets", ("pass_no", "entity", "external_id")),
    ("audit", ("entity", "external_id")),
)


def parse_duration(value: str) -> timedelta:
    """`30d`, `12h`, `2w`, `90m`, `45s` -> a timedelta (ValueError otherwise)."""
    match = _DURATION.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a duration: use a number and a unit, like 30d, 12h, 2w, 90m or 45s")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


@dataclass
class RunPruned:
    """What was (or, in a dry run, would be) removed from one run."""

    run_id: int
    state: str
    data_source: str
    finished_at: datetime
    audit: int = 0
    audit_history: int = 0
    retry_targets: int = 0
    batch_attempts: int = 0
    batch_payloads: int = 0
    chunks: int = 0
    stopped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id,
            "state": self.state,
            "data_source": self.data_source,
            "finished_at": self.finished_at.isoformat(),
            "removed": {
                "audit": self.audit,
                "audit_history": self.audit_history,
                "retry_targets": self.retry_targets,
                "batch_attempts": self.batch_attempts,
                "batch_payloads": self.batch_payloads,
            },
            "chunks": self.chunks,
            "stopped": self.stopped,
        }


@dataclass
class PruneReport:
    """The outcome of one `prune`."""

    cutoff: datetime
    dry_run: bool
    runs: list[RunPruned] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        """Rows removed over all runs, by table."""
        keys = ("audit", "audit_history", "retry_targets", "batch_attempts", "batch_payloads")
        return {k: sum(getattr(r, k) for r in self.runs) for k in keys}

    def as_dict(self) -> dict[str, Any]:
        """The `prune --json` document."""
        return {
            "cutoff": self.cutoff.isoformat(),
            "dry_run": self.dry_run,
            "runs": [r.as_dict() for r in self.runs],
            "totals": self.totals(),
        }


def candidates(conn: Connection, older_than: timedelta) -> tuple[datetime, list[RunPruned]]:
    """The cutoff (database clock) and the finished runs before it that still hold detail."""
    cutoff = conn.execute(text("SELECT now() - make_interval(secs => :s)"), {"s": older_than.total_seconds()}).scalar_one()
    rows = conn.execute(
        text(
            """
            SELECT r.id, r.state, r.data_source, r.finished_at FROM runs r
            WHERE r.state = ANY(:final) AND r.finished_at < :cutoff
              AND CASE
                  -- never pruned, or a retry pass finished after the last prune
                  WHEN r.pruned_at IS NULL OR r.pruned_at < r.finished_at THEN true
                  -- the audit goes last: audit rows left mean an interrupted prune (an index probe)
                  WHEN EXISTS (SELECT 1 FROM audit a WHERE a.run_id = r.id) THEN true
                  -- a run with no audit rows at all (cancelled early) may still hold payloads
                  ELSE EXISTS (SELECT 1 FROM batches b WHERE b.run_id = r.id
                               AND (b.payload IS NOT NULL OR b.manifest IS NOT NULL))
              END
            ORDER BY r.id
            """
        ),
        {"final": list(FINAL_RUN_STATES), "cutoff": cutoff},
    ).all()
    return cutoff, [RunPruned(r.id, r.state, r.data_source, r.finished_at) for r in rows]


def prune(
    engine: Engine,
    older_than: timedelta,
    *,
    dry_run: bool = False,
    chunk: int = DEFAULT_CHUNK,
    progress: Callable[[RunPruned], None] | None = None,
) -> PruneReport:
    """Remove (or, with `dry_run`, count) the detail of finished runs older than `older_than`."""
    if chunk < 1:
        raise ValueError("the chunk size must be at least 1")
    with engine.connect() as conn:
        cutoff, runs = candidates(conn, older_than)
    report = PruneReport(cutoff, dry_run)
    for run in runs:
        if dry_run:
            with engine.connect() as conn:
                _count(conn, run)
        else:
            _prune_run(engine, run, cutoff, chunk)
        report.runs.append(run)
        if progress is not None:
            progress(run)
    return report


def _count(conn: Connection, run: RunPruned) -> None:
    for table, _ in _KEYED_TABLES:
        n = conn.execute(text(f"SELECT count(*) FROM {table} WHERE run_id = :r"), {"r": run.run_id}).scalar_one()  # noqa: S608
        setattr(run, table, int(n))
    row = conn.execute(
        text(
            """
            SELECT (SELECT count(*) FROM batch_attempts a JOIN batches b ON b.id = a.batch_id WHERE b.run_id = :r) AS attempts,
                   (SELECT count(*) FROM batches WHERE run_id = :r AND (payload IS NOT NULL OR manifest IS NOT NULL)) AS payloads
            """
        ),
        {"r": run.run_id},
    ).one()
    run.batch_attempts = int(row.attempts)
    run.batch_payloads = int(row.payloads)


def _still_prunable(conn: Connection, run_id: int, cutoff: datetime) -> bool:
    """Share-lock the run row for this chunk and check it is still finished before the cutoff."""
    row = conn.execute(
        text("SELECT state, finished_at FROM runs WHERE id = :r FOR SHARE"), {"r": run_id}
    ).first()
    return row is not None and row.state in FINAL_RUN_STATES and row.finished_at is not None and row.finished_at < cutoff


def _prune_run(engine: Engine, run: RunPruned, cutoff: datetime, chunk: int) -> None:
    # Marked first, so anything that reads the detail (a `retry`) can tell it is going away.
    with engine.begin() as conn:
        if not _still_prunable(conn, run.run_id, cutoff):
            run.stopped = "the run is no longer finished"
            return
        mark_pruned(conn, run.run_id)
    history, targets, audit = _KEYED_TABLES
    for table, key in (history, targets):
        if not _delete_keyed(engine, run, cutoff, table, key, chunk):
            return
    if not _clear_batches(engine, run, cutoff, max(1, chunk // BATCH_CHUNK_DIVISOR)):
        return
    # The audit last: while any audit row is left, `candidates` knows this prune did not finish.
    if not _delete_keyed(engine, run, cutoff, *audit, chunk):
        return
    with engine.begin() as conn:
        if not _still_prunable(conn, run.run_id, cutoff):
            run.stopped = "the run became active while it was being pruned"
            return
        mark_pruned(conn, run.run_id)


def _delete_keyed(engine: Engine, run: RunPruned, cutoff: datetime, table: str, key: tuple[str, ...], chunk: int) -> bool:
    """Delete a run's rows of `table` in key order, `chunk` rows per transaction; False if stopped."""
    columns = ", ".join(key)
    after: tuple[Any, ...] | None = None
    while True:
        with engine.begin() as conn:
            if not _still_prunable(conn, run.run_id, cutoff):
                run.stopped = "the run became active while it was being pruned"
                return False
            params: dict[str, Any] = {"r": run.run_id, "skip": chunk - 1}
            lower = ""
            if after is not None:
                lower = f" AND ({columns}) > ({', '.join(f':a{i}' for i in range(len(key)))})"
                params.update({f"a{i}": v for i, v in enumerate(after)})
            # The chunk's last key, found by walking the index; the range up to it is one delete.
            last = conn.execute(
                text(f"SELECT {columns} FROM {table} WHERE run_id = :r{lower} ORDER BY {columns} OFFSET :skip LIMIT 1"),  # noqa: S608
                params,
            ).first()
            upper = ""
            if last is not None:
                upper = f" AND ({columns}) <= ({', '.join(f':b{i}' for i in range(len(key)))})"
                params.update({f"b{i}": v for i, v in enumerate(last)})
            params.pop("skip")
            deleted = conn.execute(text(f"DELETE FROM {table} WHERE run_id = :r{lower}{upper}"), params).rowcount  # noqa: S608
        setattr(run, table, getattr(run, table) + deleted)
        if deleted:
            run.chunks += 1
        if last is None:
            return True
        after = tuple(last)


def _clear_batches(engine: Engine, run: RunPruned, cutoff: datetime, per_chunk: int) -> bool:
    """Delete the batches' attempts and NULL their payload and manifest, `per_chunk` batches at a time."""
    with engine.connect() as conn:
        ids = list(conn.execute(text("SELECT id FROM batches WHERE run_id = :r ORDER BY id"), {"r": run.run_id}).scalars())
    for start in range(0, len(ids), per_chunk):
        part = ids[start : start + per_chunk]
        with engine.begin() as conn:
            if not _still_prunable(conn, run.run_id, cutoff):
                run.stopped = "the run became active while it was being pruned"
                return False
            attempts, cleared = clear_detail(conn, part)
        run.batch_attempts += attempts
        run.batch_payloads += cleared
        if attempts or cleared:
            run.chunks += 1
    return True


def report_lines(report: PruneReport) -> list[str]:
    """The human summary of a prune."""
    verb = "would remove" if report.dry_run else "removed"
    lines = []
    for run in report.runs:
        lines.append(
            f"run {run.run_id} ({run.state}, data source {run.data_source}, finished {run.finished_at:%Y-%m-%d %H:%M}): "
            f"{verb} {run.audit} audit rows, {run.audit_history} history rows, {run.retry_targets} retry targets, "
            f"{run.batch_attempts} attempts, the payloads of {run.batch_payloads} batches"
            + (f" -- stopped: {run.stopped}" if run.stopped else "")
        )
    t = report.totals()
    lines.append(
        f"{len(report.runs)} run{'s' if len(report.runs) != 1 else ''} finished before {report.cutoff:%Y-%m-%d %H:%M:%S %Z}: "
        f"{verb} {t['audit']} audit rows, {t['audit_history']} history rows, {t['retry_targets']} retry targets, "
        f"{t['batch_attempts']} attempts, {t['batch_payloads']} batch payloads"
        + ("" if report.dry_run else "; run summaries kept")
    )
    return lines
