"""What `status`, `runs` and `errors` report, read from batch counters (never by counting the audit).

Each function takes either a SQLAlchemy connection or a `console.libpq` one (see `console.query`): the
read-only commands answer without importing SQLAlchemy or pydantic.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from backfill.errors import RunStateError
from console.query import fetch, stream
from console.safe_text import csv_cell, visible
from models.states import RUN_FINAL_STATES, STAGES, RunState

LOCAL_UNCHANGED = "unchanged (skipped locally)"
FINAL_RUN_STATES = RUN_FINAL_STATES
COUNTERS = ("rows", "inserted", "updated", "unchanged", "success", "local", "error", "invalid", "skipped", "failed_batches")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def latest_run_id(conn: Any) -> int:
    """The most recent run (RunStateError when there is none)."""
    run_id = fetch(conn, "SELECT max(id) AS id FROM runs")[0]["id"]
    if run_id is None:
        raise RunStateError("there are no runs yet")
    return int(run_id)


def _stage_counts(conn: Any, run_id: int) -> dict[str, dict[str, int]]:
    # The same sums as backfill.store.stage_counts (which the stage summaries use), without SQLAlchemy.
    counts = {stage: dict.fromkeys(COUNTERS, 0) for stage in STAGES}
    rows = fetch(
        conn,
        """
        SELECT stage, sum(rows) AS rows, sum(n_inserted) AS inserted, sum(n_updated) AS updated,
               sum(n_unchanged) AS unchanged, sum(n_success) AS success, sum(n_local) AS local,
               sum(n_error) AS error, sum(n_invalid) AS invalid, sum(n_skipped) AS skipped,
               count(*) FILTER (WHERE state = 'failed') AS failed_batches
        FROM batches WHERE run_id = %(r)s GROUP BY stage
        """,
        {"r": run_id},
    )
    for row in rows:
        counts[row["stage"]] = {k: int(row[k] or 0) for k in COUNTERS}
    return counts


def status_document(conn: Any, run_id: int) -> dict[str, Any]:
    """The `status --json` document of a run."""
    found = fetch(
        conn,
        """
        SELECT id, state, data_source, started_at, finished_at, dry_run, pass_no, paused_reason, current_stage
        FROM runs WHERE id = %(r)s
        """,
        {"r": run_id},
    )
    if not found:
        raise RunStateError(f"there is no run {run_id}")
    run = found[0]
    sums = _stage_counts(conn, run_id)
    stages_meta = {
        row["stage"]: row
        for row in fetch(conn, "SELECT stage, produced, done_at FROM run_stages WHERE run_id = %(r)s", {"r": run_id})
    }
    stages: dict[str, Any] = {}
    current = STAGES.index(run["current_stage"])
    for index, stage in enumerate(STAGES):
        n = sums[stage]
        meta = stages_meta.get(stage)
        accepted = n["inserted"] + n["updated"] + n["unchanged"] + n["success"] + n["local"]
        pending = n["rows"] - accepted - n["error"] - n["invalid"] - n["skipped"]
        if meta is not None and meta["done_at"] is not None:
            state = "done"
        elif index == current and run["state"] not in FINAL_RUN_STATES:
            state = "running"
        elif index <= current and run["state"] in FINAL_RUN_STATES and run["state"] != RunState.CANCELLED:
            state = "done"
        else:
            state = "waiting"
        doc: dict[str, Any] = {
            "state": state,
            "rows": n["rows"],
            "accepted": accepted,
            "error": n["error"],
            "invalid": n["invalid"],
            "skipped": n["skipped"],
            "pending": pending,
            "by_status": {
                "inserted": n["inserted"],
                "updated": n["updated"],
                "unchanged": n["unchanged"],
                "success": n["success"],
                LOCAL_UNCHANGED: n["local"],
            },
            "produced": bool(meta["produced"]) if meta is not None else False,
            "failed_batches": n["failed_batches"],
        }
        if run["dry_run"]:
            doc["would_send"] = pending
        stages[stage] = doc
    return {
        "run_id": run["id"],
        "state": run["state"],
        "data_source": run["data_source"],
        "started_at": _iso(run["started_at"]),
        "finished_at": _iso(run["finished_at"]),
        "dry_run": run["dry_run"],
        "pass": run["pass_no"],
        "paused_reason": run["paused_reason"],
        "stages": stages,
    }


def outcome_line(doc: dict[str, Any]) -> str:
    """One line of outcome counts over all stages."""
    totals: dict[str, int] = {}
    for stage in STAGES:
        s = doc["stages"][stage]
        for key, value in s["by_status"].items():
            totals[key] = totals.get(key, 0) + value
        for key in ("error", "invalid", "skipped", "pending"):
            totals[key] = totals.get(key, 0) + s[key]
    parts = [f"{k} {v}" for k, v in totals.items() if v]
    return f"run {doc['run_id']} {doc['state']}: " + (", ".join(parts) if parts else "no rows yet")


def status_lines(doc: dict[str, Any]) -> list[str]:
    """The human view of `status`: the run, then one line per stage (stored text shown with `visible`)."""
    flags = " (dry run)" if doc["dry_run"] else ""
    lines = [
        f"run {doc['run_id']}{flags}: {doc['state']}  data source {visible(doc['data_source'])}  pass {doc['pass']}",
        f"started {doc['started_at']}  finished {doc['finished_at'] or '-'}",
    ]
    if doc["paused_reason"]:
        lines.append(f"reason: {visible(doc['paused_reason'])}")
    lines.append(f"{'stage':<10} {'state':<8} {'rows':>10} {'accepted':>10} {'error':>8} {'invalid':>8} {'skipped':>8} {'pending':>10}")
    for stage in STAGES:
        s = doc["stages"][stage]
        lines.append(
            f"{stage:<10} {s['state']:<8} {s['rows']:>10} {s['accepted']:>10} {s['error']:>8} {s['invalid']:>8} "
            f"{s['skipped']:>8} {s['pending']:>10}"
        )
    lines.append(outcome_line(doc))
    return lines


def runs_listing(conn: Any, limit: int = 20) -> list[dict[str, Any]]:
    """Recent runs with their totals, newest first."""
    return fetch(
        conn,
        """
        SELECT r.id, r.data_source, r.state, r.dry_run, r.started_at, r.finished_at, r.pass_no,
               coalesce(sum(b.rows), 0) AS rows,
               coalesce(sum(b.n_error + b.n_invalid + b.n_skipped), 0) AS rejected
        FROM (SELECT id, data_source, state, dry_run, started_at, finished_at, pass_no FROM runs ORDER BY id DESC LIMIT %(n)s) r
        LEFT JOIN batches b ON b.run_id = r.id
        GROUP BY r.id, r.data_source, r.state, r.dry_run, r.started_at, r.finished_at, r.pass_no
        ORDER BY r.id DESC
        """,
        {"n": limit},
    )


ERROR_FIELDS = ("entity", "id", "outcome", "message", "batch")


def pruned_at(conn: Any, run_id: int) -> datetime | None:
    """When the run's per-row detail was pruned (None if never, or no such run)."""
    rows = fetch(conn, "SELECT pruned_at FROM runs WHERE id = %(r)s", {"r": run_id})
    return rows[0]["pruned_at"] if rows else None


def iter_errors(conn: Any, run_id: int) -> Iterator[dict[str, Any]]:
    """Every rejected row of a run (stage order, then id), streamed."""
    if not fetch(conn, "SELECT 1 AS found FROM runs WHERE id = %(r)s", {"r": run_id}):
        raise RunStateError(f"there is no run {run_id}")
    rows = stream(
        conn,
        """
        SELECT a.entity, a.external_id, a.outcome, a.message, b.seq, b.part
        FROM audit a LEFT JOIN batches b ON b.id = a.batch_id
        WHERE a.run_id = %(r)s AND a.outcome IN ('error', 'invalid', 'skipped')
        ORDER BY array_position(ARRAY['plans', 'customers', 'invoices'], a.entity), a.external_id
        """,
        {"r": run_id},
    )
    for row in rows:
        seq, part = row["seq"], row["part"]
        batch = f"{seq}.{part}" if part else (str(seq) if seq is not None else None)
        yield {"entity": row["entity"], "id": row["external_id"], "outcome": row["outcome"], "message": row["message"], "batch": batch}


def error_line(row: dict[str, Any]) -> str:
    """One rejected row in the text view of `errors` (id and message shown with `visible`)."""
    return f"{row['entity']:<10} {visible(row['id']):<24} {row['outcome']:<8} batch {row['batch'] or '-':<6} {visible(row['message'])}\n"


def errors_csv(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    """CSV lines (with a header) for `errors --csv`; every cell safe to open in a spreadsheet (`csv_cell`)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ERROR_FIELDS)
    writer.writeheader()
    yield buffer.getvalue()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow({k: csv_cell(v) for k, v in row.items()})
        yield buffer.getvalue()
