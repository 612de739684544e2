"""What `status`, `runs` and `errors` report, read from batch counters (never by counting the audit)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from backfill.errors import RunStateError
from backfill.store import stage_counts
from models.states import RUN_FINAL_STATES, STAGES, RunState

LOCAL_UNCHANGED = "unchanged (skipped locally)"
FINAL_RUN_STATES = RUN_FINAL_STATES


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def latest_run_id(conn: Connection) -> int:
    """The most recent run (RunStateError when there is none)."""
    run_id = conn.execute(text("SELECT max(id) FROM runs")).scalar()
    if run_id is None:
        raise RunStateError("there are no runs yet")
    return int(run_id)


def status_document(conn: Connection, run_id: int) -> dict[str, Any]:
    """The `status --json` document of a run."""
    run = conn.execute(text("SELECT * FROM runs WHERE id = :r"), {"r": run_id}).mappings().first()
    if run is None:
        raise RunStateError(f"there is no run {run_id}")
    sums = stage_counts(conn, run_id)
    stages_meta = {
        row.stage: row
        for row in conn.execute(
            text("SELECT stage, produced, rows_read, done_at, summary FROM run_stages WHERE run_id = :r"), {"r": run_id}
        )
    }
    stages: dict[str, Any] = {}
    current = STAGES.index(run["current_stage"])
    for index, stage in enumerate(STAGES):
        n = sums[stage]
        meta = stages_meta.get(stage)
        accepted = n["inserted"] + n["updated"] + n["unchanged"] + n["success"] + n["local"]
        pending = n["rows"] - accepted - n["error"] - n["invalid"] - n["skipped"]
        if meta is not None and meta.done_at is not None:
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
            "produced": bool(meta.produced) if meta is not None else False,
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


def runs_listing(conn: Connection, limit: int = 20) -> list[dict[str, Any]]:
    """Recent runs with their totals, newest first."""
    rows = conn.execute(
        text(
            """
            SELECT r.id, r.data_source, r.state, r.dry_run, r.started_at, r.finished_at, r.pass_no,
                   coalesce(sum(b.rows), 0) AS rows,
                   coalesce(sum(b.n_error + b.n_invalid + b.n_skipped), 0) AS rejected
            FROM (SELECT * FROM runs ORDER BY id DESC LIMIT :n) r
            LEFT JOIN batches b ON b.run_id = r.id
            GROUP BY r.id, r.data_source, r.state, r.dry_run, r.started_at, r.finished_at, r.pass_no
            ORDER BY r.id DESC
            """
        ),
        {"n": limit},
    ).mappings()
    return [dict(r) for r in rows]


ERROR_FIELDS = ("entity", "id", "outcome", "message", "batch")


def iter_errors(conn: Connection, run_id: int) -> Iterator[dict[str, Any]]:
    """Every rejected row of a run (stage order, then id), streamed."""
    if conn.execute(text("SELECT 1 FROM runs WHERE id = :r"), {"r": run_id}).first() is None:
        raise RunStateError(f"there is no run {run_id}")
    result = conn.execution_options(stream_results=True, yield_per=2000).execute(
        text(
            """
            SELECT a.entity, a.external_id, a.outcome, a.message, a.batch_id, b.seq, b.part
            FROM audit a LEFT JOIN batches b ON b.id = a.batch_id
            WHERE a.run_id = :r AND a.outcome IN ('error', 'invalid', 'skipped')
            ORDER BY array_position(ARRAY['plans', 'customers', 'invoices'], a.entity), a.external_id
            """
        ),
        {"r": run_id},
    )
    for row in result:
        batch = f"{row.seq}.{row.part}" if row.part else (str(row.seq) if row.seq is not None else None)
        yield {"entity": row.entity, "id": row.external_id, "outcome": row.outcome, "message": row.message, "batch": batch}


def errors_csv(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    """CSV lines (with a header) for `errors --csv`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ERROR_FIELDS)
    writer.writeheader()
    yield buffer.getvalue()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(row)
        yield buffer.getvalue()
