"""The fault-tolerance promise, checked after a run: one final outcome per source row, every accepted
row held once by GrowPanel, per-customer order intact."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.support.stack import SandboxView, Stack

FINAL = {"inserted", "updated", "unchanged", "success", "error", "invalid", "skipped"}
ACCEPTED = {"inserted", "updated", "unchanged", "success"}


def source_ids(source_url: str, schema: str) -> dict[str, set[str]]:
    """Distinct ids per entity in the source schema."""
    out = {}
    with psycopg.connect(source_url) as conn:
        for entity in ("plans", "customers", "invoices"):
            out[entity] = {r[0] for r in conn.execute(f"SELECT DISTINCT id FROM {schema}.{entity} WHERE id IS NOT NULL")}  # noqa: S608
    return out


def check_promise(stack: Stack, sandbox: SandboxView, run_id: int, source_url: str, schema: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Assert the promise; return the audit for further checks."""
    audit = stack.audit(run_id)
    ids = source_ids(source_url, schema)
    for entity, expected in ids.items():
        recorded = {i for (e, i) in audit if e == entity}
        assert recorded == expected, f"{entity}: {len(expected - recorded)} rows without an outcome, {len(recorded - expected)} unexpected"
    assert {row["outcome"] for row in audit.values()} <= FINAL
    ledger = sandbox.ledger()
    for entity in ("plans", "customers", "invoices"):
        stored = [obj["id"] for obj in ledger[entity]]
        assert len(stored) == len(set(stored)), f"{entity} stored twice"
        accepted = {i for (e, i), row in audit.items() if e == entity and row["outcome"] in ACCEPTED}
        assert accepted <= set(stored), f"{entity}: accepted but not in GrowPanel: {sorted(accepted - set(stored))[:5]}"
        rejected = {i for (e, i), row in audit.items() if e == entity and row["outcome"] not in ACCEPTED}
        assert not (rejected & set(stored)), f"{entity}: rejected yet stored: {sorted(rejected & set(stored))[:5]}"
    assert sandbox.violations() == []
    return audit
