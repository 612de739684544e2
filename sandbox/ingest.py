"""Applying a parsed batch: validate each row, upsert it, feed the order check and progress."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sandbox.dates import parse_instant
from sandbox.state import SandboxState
from sandbox.validation import validate_customer, validate_invoice, validate_plan


def ingest(
    state: SandboxState, kind: str, data_source: str, rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Apply rows in order; return one result per row and the count per export_status."""
    store = state.store
    data = store.source(data_source)
    results: list[dict[str, Any]] = []
    append = results.append
    counts: Counter[str] = Counter()
    if kind == "invoices":
        customers = data.tables["customers"]
        plans = data.tables["plans"]
        order = state.order
        for row in rows:
            obj, error = validate_invoice(row, data_source, customers, plans)
            if obj is None:
                append({"id": row.get("id"), "export_status": "error", "export_error": error})
                counts["error"] += 1
                continue
            status = store.upsert(data, kind, obj)
            date = obj["date"]
            instant = parse_instant(date)
            assert instant is not None  # validated above; a memo hit
            order.record(data_source, status, obj["id"], obj["customer_id"], instant, date)
            append({"id": row["id"], "export_status": status})
            counts[status] += 1
    else:
        validate = validate_plan if kind == "plans" else validate_customer
        for row in rows:
            obj, error = validate(row, data_source)
            if obj is None:
                append({"id": row.get("id"), "export_status": "error", "export_error": error})
                counts["error"] += 1
                continue
            status = store.upsert(data, kind, obj)
            append({"id": row["id"], "export_status": status})
            counts[status] += 1
    failed = counts["error"]
    state.progress.record(data_source, len(rows) - failed, failed)
    return results, dict(counts)
