"""`batch RUN SEQ`: which rows one batch carried, what each came back as, and every HTTP attempt."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from backfill.errors import RunStateError
from backfill.manifest import load_manifest
from console.safe_text import visible
from models.states import STAGES, BatchState

_POSITION = re.compile(r"^(\d+)(?:\.([01]+))?$")
# The text view shows this much of a response body; `--json` has all that was kept.
BODY_EXCERPT = 300


def parse_position(value: str) -> tuple[int, str]:
    """`12` -> (12, ''); `12.01` -> (12, '01'), the second half of the first half of batch 12."""
    match = _POSITION.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a batch number: expected SEQ or SEQ.PART, like 12 or 12.01")
    return int(match.group(1)), match.group(2) or ""


def label(seq: int, part: str) -> str:
    """The number an operator types: `12`, or `12.01` for a half of a split batch."""
    return f"{seq}.{part}" if part else str(seq)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def find_batch(conn: Connection, run_id: int, seq: int, part: str, stage: str | None, pass_no: int | None) -> dict[str, Any]:
    """The batch at this position (the latest pass holding it unless `pass_no` is given).

    Raises RunStateError for an unknown run or batch, and ValueError when the position is ambiguous.
    """
    run = conn.execute(text("SELECT id FROM runs WHERE id = :r"), {"r": run_id}).first()
    if run is None:
        raise RunStateError(f"there is no run {run_id}")
    rows = conn.execute(
        text(
            """
            SELECT id, run_id, stage, pass_no, seq, part, state, depends_on, rows, manifest, attempts, throttled,
                   first_try_at, finished_at, last_error, octet_length(payload) AS payload_bytes,
                   n_inserted, n_updated, n_unchanged, n_success, n_local, n_error, n_invalid, n_skipped
            FROM batches
            WHERE run_id = :r AND seq = :seq AND part = :part
              AND (CAST(:stage AS text) IS NULL OR stage = :stage)
              AND (CAST(:pass AS smallint) IS NULL OR pass_no = :pass)
            ORDER BY pass_no DESC
            """
        ),
        {"r": run_id, "seq": seq, "part": part, "stage": stage, "pass": pass_no},
    ).mappings().all()
    where = f"batch {label(seq, part)}" + (f" of stage {stage}" if stage else "") + (f" in pass {pass_no}" if pass_no else "")
    if not rows:
        raise RunStateError(f"run {run_id} has no {where}")
    stages = sorted({r["stage"] for r in rows}, key=STAGES.index)
    if len(stages) > 1:
        raise ValueError(f"run {run_id} has a batch {label(seq, part)} in {', '.join(stages)}: choose one with --stage")
    # A retry pass numbers its batches from 1 again: without --pass, the latest pass is meant.
    return dict(rows[0])


def batch_detail(conn: Connection, run_id: int, seq: int, part: str = "", stage: str | None = None, pass_no: int | None = None) -> dict[str, Any]:
    """The `batch --json` document: state, counters, rows with their outcomes, attempts, halves."""
    batch = find_batch(conn, run_id, seq, part, stage, pass_no)
    pruned_at = conn.execute(text("SELECT pruned_at FROM runs WHERE id = :r"), {"r": run_id}).scalar()
    counts = {k[2:]: batch[k] for k in ("n_inserted", "n_updated", "n_unchanged", "n_success", "n_local", "n_error", "n_invalid", "n_skipped")}
    doc: dict[str, Any] = {
        "run_id": run_id,
        "stage": batch["stage"],
        "pass": batch["pass_no"],
        "batch": label(batch["seq"], batch["part"]),
        "batch_id": batch["id"],
        "state": batch["state"],
        "rows": batch["rows"],
        "counts": counts,
        "attempts_used": batch["attempts"],
        "throttled": batch["throttled"],
        "depends_on": _depends_on(conn, batch["depends_on"]),
        "first_try_at": _iso(batch["first_try_at"]),
        "finished_at": _iso(batch["finished_at"]),
        "last_error": batch["last_error"],
        "payload_bytes": batch["payload_bytes"],
        "halves": _halves(conn, batch),
        "pruned_at": _iso(pruned_at),
        "row_outcomes": _rows(conn, batch) if batch["manifest"] is not None else None,
        "http_attempts": _attempts(conn, batch["id"]),
    }
    return doc


def _depends_on(conn: Connection, batch_id: int | None) -> str | None:
    if batch_id is None:
        return None
    row = conn.execute(text("SELECT seq, part FROM batches WHERE id = :b"), {"b": batch_id}).first()
    return label(row.seq, row.part) if row is not None else None


def _halves(conn: Connection, batch: dict[str, Any]) -> list[dict[str, Any]]:
    """The two batches that replaced this one after a 413 (empty unless it was split)."""
    if batch["state"] != BatchState.SPLIT:
        return []
    rows = conn.execute(
        text(
            """
            SELECT seq, part, state, rows FROM batches
            WHERE run_id = :r AND stage = :s AND pass_no = :p AND seq = :seq AND part IN (:a, :b)
            ORDER BY part
            """
        ),
        {"r": batch["run_id"], "s": batch["stage"], "p": batch["pass_no"], "seq": batch["seq"], "a": batch["part"] + "0", "b": batch["part"] + "1"},
    ).all()
    return [{"batch": label(r.seq, r.part), "state": r.state, "rows": r.rows} for r in rows]


def _rows(conn: Connection, batch: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per manifest row: the answer this batch got for it, or where the row was answered."""
    entries = load_manifest(batch["manifest"])
    ids = [str(e.id) for e in entries]
    final = {
        r.external_id: r
        for r in conn.execute(
            text(
                """
                SELECT a.external_id, a.batch_id, a.outcome, a.message, a.http_status, a.attempts,
                       b.seq, b.part, b.pass_no
                FROM audit a LEFT JOIN batches b ON b.id = a.batch_id
                WHERE a.run_id = :r AND a.entity = :e AND a.external_id = ANY(:ids)
                """
            ),
            {"r": batch["run_id"], "e": batch["stage"], "ids": ids},
        )
    }
    # A later pass (`retry`) moved the row's audit entry; what this batch recorded went to the history.
    earlier = {
        r.external_id: r
        for r in conn.execute(
            text(
                """
                SELECT external_id, outcome, message, http_status FROM audit_history
                WHERE run_id = :r AND entity = :e AND batch_id = :b
                ORDER BY replaced_at
                """
            ),
            {"r": batch["run_id"], "e": batch["stage"], "b": batch["id"]},
        )
    }
    out = []
    for entry, row_id in zip(entries, ids):
        item: dict[str, Any] = {
            "id": row_id,
            "in_payload": entry.sendable,
            "outcome": None,
            "message": None,
            "http_status": None,
            "answered_in": None,
        }
        audit = final.get(row_id)
        if audit is not None and audit.batch_id == batch["id"]:
            item.update(outcome=audit.outcome, message=audit.message, http_status=audit.http_status)
        elif row_id in earlier:
            old = earlier[row_id]
            item.update(outcome=old.outcome, message=old.message, http_status=old.http_status)
            if audit is not None:
                item["later"] = {"pass": audit.pass_no, "batch": label(audit.seq, audit.part), "outcome": audit.outcome}
        elif audit is not None and audit.seq is not None:
            # Answered by a half of this batch (after a 413): the outcome is that half's.
            item.update(outcome=audit.outcome, message=audit.message, http_status=audit.http_status)
            item["answered_in"] = label(audit.seq, audit.part)
        elif entry.outcome is not None:
            # Rejected by the producer; the audit row is written when the batch is recorded.
            item.update(outcome=entry.outcome, message=entry.message)
        item["sent"] = item["http_status"] is not None if item["outcome"] is not None else None
        out.append(item)
    return out


def _attempts(conn: Connection, batch_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        text(
            """
            SELECT started_at, latency_ms, rows_sent, http_status, error, response_body
            FROM batch_attempts WHERE batch_id = :b ORDER BY started_at, id
            """
        ),
        {"b": batch_id},
    ).all()
    return [
        {
            "n": n,
            "started_at": _iso(r.started_at),
            "latency_ms": r.latency_ms,
            "rows_sent": r.rows_sent,
            "http_status": r.http_status,
            "error": r.error,
            "response_body": r.response_body,
        }
        for n, r in enumerate(rows, 1)
    ]


def excerpt(body: str | None, limit: int = BODY_EXCERPT) -> str:
    """A response body on one line, cut to `limit` characters, control characters shown as escapes."""
    if not body:
        return ""
    flat = visible(" ".join(body.split()))
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def detail_lines(doc: dict[str, Any]) -> list[str]:
    """The human view of `batch`: header, attempts, then one line per row."""
    counts = ", ".join(f"{v} {k}" for k, v in doc["counts"].items() if v)
    lines = [
        f"run {doc['run_id']} {doc['stage']} batch {doc['batch']} (pass {doc['pass']}, id {doc['batch_id']}): {doc['state']}",
        f"rows {doc['rows']}" + (f": {counts}" if counts else "")
        + (f"  depends on {doc['depends_on']}" if doc["depends_on"] else ""),
    ]
    if doc["finished_at"]:
        lines.append(f"first try {doc['first_try_at'] or '-'}  finished {doc['finished_at']}")
    if doc["last_error"]:
        lines.append(f"last error: {visible(doc['last_error'])}")
    if doc["halves"]:
        lines.append("split after HTTP 413 into " + ", ".join(f"{h['batch']} ({h['state']}, {h['rows']} rows)" for h in doc["halves"]))
    if doc["pruned_at"] and doc["row_outcomes"] is None:
        lines.append(
            f"the run's detail was pruned at {doc['pruned_at']}: rows and attempts are gone, "
            f"the counts above are kept (attempts used: {doc['attempts_used']}, rate limited: {doc['throttled']})"
        )
        return lines
    attempts = doc["http_attempts"]
    lines.append(f"{len(attempts)} HTTP attempt{'s' if len(attempts) != 1 else ''}:")
    for a in attempts:
        status = str(a["http_status"]) if a["http_status"] is not None else "---"
        latency = f"{a['latency_ms']:.0f} ms" if a["latency_ms"] is not None else "-"
        lines.append(f"  #{a['n']} {a['started_at']}  HTTP {status}  {latency:>9}  {a['rows_sent']} rows sent")
        if a["error"]:
            lines.append(f"     error: {visible(a['error'])}")
        if a["response_body"]:
            lines.append(f"     body: {excerpt(a['response_body'])}")
    rows = doc["row_outcomes"] or []
    lines.append(f"{len(rows)} row{'s' if len(rows) != 1 else ''}:")
    for r in rows:
        where = ""
        if r["answered_in"]:
            where = f"  (answered in {r['answered_in']})"
        elif r.get("later"):
            where = f"  (pass {r['later']['pass']}, batch {r['later']['batch']}: {r['later']['outcome']})"
        sent = "sent" if r["sent"] else ("local" if r["sent"] is False else "-")
        lines.append(f"  {visible(r['id']):<24} {r['outcome'] or 'pending':<9} {sent:<5} {visible(r['message'])}{where}")
    return lines
