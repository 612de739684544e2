"""What the run report shows, gathered from the state database as one JSON-ready document.

Everything a pruned run still has (run, stages, batch counters and finish times) is read from the
batches; the per-row reasons and per-attempt figures need the detail and are absent once pruned.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, text

from console.reasons import rejected_reasons
from models.states import BatchState as B
from console.status import status_document

# Bucket widths for the throughput chart, in seconds: the smallest that gives at most MAX_BUCKETS
# (a short test run still shows its shape; a week-long backfill gets hours).
BUCKET_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 7 * 86400)
MAX_BUCKETS = 60
REASON_LIMIT = 50
BATCH_LIMIT = 25

_ANSWERED = "n_inserted + n_updated + n_unchanged + n_success + n_local + n_error + n_invalid + n_skipped"
_REJECTED = "n_error + n_invalid + n_skipped"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def report_data(conn: Connection, run_id: int) -> dict[str, Any]:
    """The whole report of one run (RunStateError if there is no such run)."""
    status = status_document(conn, run_id)
    run = conn.execute(text("SELECT * FROM runs WHERE id = :r"), {"r": run_id}).mappings().one()
    pruned = run["pruned_at"] is not None
    generated = conn.execute(text("SELECT now()")).scalar_one()
    return {
        "run": _run_summary(run, status, generated),
        "status": status,
        "pruned": pruned,
        "batches": _batch_counts(conn, run_id),
        "attempts": None if pruned else _attempt_stats(conn, run_id),
        "throughput": throughput(conn, run_id),
        "attempts_per_batch": attempts_histogram(conn, run_id, pruned),
        "reasons": None if pruned else reasons(conn, run_id),
        "retried_batches": retried_batches(conn, run_id),
        "generated_at": generated.isoformat(),
    }


def _run_summary(run: Any, status: dict[str, Any], now: datetime) -> dict[str, Any]:
    end = run["finished_at"] or now
    return {
        "run_id": run["id"],
        "state": run["state"],
        "data_source": run["data_source"],
        "pass": run["pass_no"],
        "dry_run": run["dry_run"],
        "only_changed": run["only_changed"],
        "batch_size": run["batch_size"],
        "created_at": _iso(run["created_at"]),
        "started_at": _iso(run["started_at"]),
        "finished_at": _iso(run["finished_at"]),
        "duration_seconds": round((end - run["started_at"]).total_seconds(), 3),
        "paused_reason": run["paused_reason"],
        "pruned_at": _iso(run["pruned_at"]),
        "mapping_file": run["mapping_file"],
        "rows": sum(s["rows"] for s in status["stages"].values()),
    }


def _batch_counts(conn: Connection, run_id: int) -> dict[str, Any]:
    row = conn.execute(
        text(
            f"""
            SELECT count(*) AS batches,
                   count(*) FILTER (WHERE state = '{B.DONE}') AS done,
                   count(*) FILTER (WHERE state = '{B.FAILED}') AS failed,
                   count(*) FILTER (WHERE state = '{B.SPLIT}') AS split,
                   count(*) FILTER (WHERE state NOT IN ('{B.DONE}', '{B.FAILED}', '{B.SPLIT}')) AS open,
                   count(*) FILTER (WHERE attempts > 1) AS retried,
                   coalesce(sum(throttled), 0) AS throttled
            FROM batches WHERE run_id = :r
            """
        ),
        {"r": run_id},
    ).mappings().one()
    return {k: int(v) for k, v in row.items()}


def _attempt_stats(conn: Connection, run_id: int) -> dict[str, Any]:
    """HTTP attempts of the run: how many, what came back, how long they took."""
    row = conn.execute(
        text(
            """
            SELECT count(*) AS total,
                   count(*) FILTER (WHERE a.http_status = 200 AND a.error IS NULL) AS clean,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY a.latency_ms) AS p50,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY a.latency_ms) AS p95,
                   max(a.latency_ms) AS max, min(a.started_at) AS first, max(a.started_at) AS last
            FROM batch_attempts a JOIN batches b ON b.id = a.batch_id WHERE b.run_id = :r
            """
        ),
        {"r": run_id},
    ).one()
    by_status = conn.execute(
        text(
            """
            SELECT a.http_status, count(*) AS n FROM batch_attempts a JOIN batches b ON b.id = a.batch_id
            WHERE b.run_id = :r GROUP BY a.http_status ORDER BY a.http_status NULLS LAST
            """
        ),
        {"r": run_id},
    ).all()
    return {
        "total": int(row.total),
        "clean": int(row.clean),
        "latency_ms": {
            "p50": _round(row.p50),
            "p95": _round(row.p95),
            "max": _round(row.max),
        },
        "first": _iso(row.first),
        "last": _iso(row.last),
        "by_status": [{"status": r.http_status, "count": int(r.n)} for r in by_status],
    }


def _round(value: float | None) -> float | None:
    return round(float(value), 1) if value is not None else None


def bucket_step(span_seconds: float) -> float:
    """The smallest step of BUCKET_STEPS that cuts `span_seconds` into at most MAX_BUCKETS buckets."""
    for step in BUCKET_STEPS:
        if span_seconds / step < MAX_BUCKETS:
            return float(step)
    return float(BUCKET_STEPS[-1] * math.ceil(span_seconds / BUCKET_STEPS[-1] / MAX_BUCKETS))


def throughput(conn: Connection, run_id: int) -> dict[str, Any]:
    """Rows answered per time bucket, by when their batch was finished (kept by `prune`)."""
    span = conn.execute(
        text(
            f"""
            SELECT min(finished_at) AS first, max(finished_at) AS last FROM batches
            WHERE run_id = :r AND state = '{B.DONE}' AND finished_at IS NOT NULL AND {_ANSWERED} > 0
            """  # noqa: S608 - fixed fragments
        ),
        {"r": run_id},
    ).one()
    if span.first is None:
        return {"step_seconds": 1.0, "buckets": []}
    step = bucket_step((span.last - span.first).total_seconds())
    rows = conn.execute(
        text(
            f"""
            SELECT floor(extract(epoch FROM finished_at)::float8 / CAST(:step AS float8))::bigint AS k,
                   sum({_ANSWERED} - ({_REJECTED})) AS accepted, sum({_REJECTED}) AS rejected, count(*) AS batches
            FROM batches
            WHERE run_id = :r AND state = '{B.DONE}' AND finished_at IS NOT NULL AND {_ANSWERED} > 0
            GROUP BY k ORDER BY k
            """  # noqa: S608 - fixed fragments
        ),
        {"r": run_id, "step": step},
    ).all()
    found = {int(r.k): r for r in rows}
    first, last = min(found), max(found)
    buckets = []
    # Every bucket between the first and the last, empty ones too: the time axis stays linear.
    for k in range(first, last + 1):
        r = found.get(k)
        buckets.append(
            {
                "start": datetime.fromtimestamp(round(k * step, 3), timezone.utc).isoformat(timespec="milliseconds"),
                "accepted": int(r.accepted) if r else 0,
                "rejected": int(r.rejected) if r else 0,
                "batches": int(r.batches) if r else 0,
            }
        )
    return {"step_seconds": step, "buckets": buckets}


def attempts_histogram(conn: Connection, run_id: int, pruned: bool) -> dict[str, Any]:
    """How many batches took 0, 1, 2, ... HTTP attempts (from the batch counters once pruned)."""
    if pruned:
        sql = "SELECT attempts + throttled AS n, count(*) AS batches FROM batches WHERE run_id = :r GROUP BY 1 ORDER BY 1"
        source = "batch counters (attempts + rate limited; the attempt records were pruned)"
    else:
        sql = """
            SELECT n, count(*) AS batches FROM (
                SELECT b.id, count(a.id) AS n FROM batches b LEFT JOIN batch_attempts a ON a.batch_id = b.id
                WHERE b.run_id = :r GROUP BY b.id
            ) per_batch GROUP BY n ORDER BY n
        """
        source = "attempt records"
    counts = {int(r.n): int(r.batches) for r in conn.execute(text(sql), {"r": run_id})}
    # Every count from the smallest to the largest, empty bins too: the axis stays linear.
    bins = [{"attempts": n, "batches": counts.get(n, 0)} for n in range(min(counts), max(counts) + 1)] if counts else []
    return {"source": source, "bins": bins}


def reasons(conn: Connection, run_id: int, limit: int = REASON_LIMIT) -> dict[str, Any]:
    """Rejected rows grouped by reason, most frequent first, with three example ids each."""
    grouped = rejected_reasons(conn, run_id)
    return {
        "groups": len(grouped),
        "shown": [
            {"entity": g.entity, "outcome": g.outcome, "reason": g.reason, "count": g.count, "examples": g.examples}
            for g in grouped[:limit]
        ],
    }


def retried_batches(conn: Connection, run_id: int, limit: int = BATCH_LIMIT) -> dict[str, Any]:
    """Batches that needed more than one attempt, were rate limited or failed: where `batch` is worth a look."""
    where = f"run_id = :r AND (attempts > 1 OR throttled > 0 OR state IN ('{B.FAILED}', '{B.SPLIT}'))"
    total = conn.execute(text(f"SELECT count(*) FROM batches WHERE {where}"), {"r": run_id}).scalar_one()  # noqa: S608
    rows = conn.execute(
        text(
            f"""
            SELECT stage, pass_no, seq, part, state, attempts, throttled, last_error FROM batches WHERE {where}
            ORDER BY (state = '{B.FAILED}') DESC, attempts + throttled DESC, array_position(ARRAY['plans', 'customers', 'invoices'], stage), seq, part
            LIMIT :n
            """  # noqa: S608 - fixed fragments
        ),
        {"r": run_id, "n": limit},
    ).all()
    return {
        "total": int(total),
        "shown": [
            {
                "stage": r.stage,
                "pass": r.pass_no,
                "batch": f"{r.seq}.{r.part}" if r.part else str(r.seq),
                "state": r.state,
                "attempts": r.attempts,
                "throttled": r.throttled,
                "last_error": r.last_error,
            }
            for r in rows
        ],
    }


__all__ = ["attempts_histogram", "bucket_step", "reasons", "report_data", "retried_batches", "throughput"]
