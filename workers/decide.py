"""Outcomes decided before sending: invalid rows, dependencies rejected earlier, unchanged payloads.

Shared by the worker (just before posting) and by `start --dry-run` (which sends nothing).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from backfill.audit import Outcome, clean_text
from producers.entities import ENTITIES


def payload_hash(entry: list[Any]) -> bytes | None:
    """The manifest's payload hash as bytes."""
    return bytes.fromhex(entry[1]) if entry[1] else None


def local_outcomes(
    conn: Connection, run_id: int, stage: str, data_source: str, entries: list[list[Any]], only_changed: bool
) -> dict[int, Outcome]:
    """Manifest index -> outcome, for the rows of a batch that will not be sent."""
    local: dict[int, Outcome] = {}
    for i, entry in enumerate(entries):
        # `invalid`, or `skipped` by a resumed producer (a row the run cannot send in order).
        if entry[2] is not None:
            local[i] = Outcome(entry[0], entry[2], entry[3])
    if ENTITIES[stage].parents:
        _skip_rejected_dependencies(conn, run_id, entries, local)
    if only_changed:
        _skip_unchanged(conn, run_id, stage, data_source, entries, local)
    return local


def _skip_rejected_dependencies(conn: Connection, run_id: int, entries: list[list[Any]], local: dict[int, Outcome]) -> None:
    """Invoices whose customer or plan was rejected earlier in this run are `skipped`.

    The parents are those of the invoices' spec (`producers.entities`); the manifest carries them at
    positions 4 (customer) and 5 (plan).
    """
    customers = {e[4] for i, e in enumerate(entries) if i not in local and e[4] is not None}
    plans = {e[5] for i, e in enumerate(entries) if i not in local and e[5] is not None}
    if not customers and not plans:
        return
    rejected = conn.execute(
        text(
            """
            SELECT entity, external_id, outcome, message FROM audit
            WHERE run_id = :r AND outcome IN ('error', 'invalid', 'skipped')
              AND ((entity = 'customers' AND external_id = ANY(:c)) OR (entity = 'plans' AND external_id = ANY(:p)))
            """
        ),
        {"r": run_id, "c": list(customers), "p": list(plans)},
    ).all()
    if not rejected:
        return
    why = {(r.entity, r.external_id): f"{r.outcome}: {r.message}" for r in rejected}
    for i, entry in enumerate(entries):
        if i in local:
            continue
        reasons = []
        if ("customers", entry[4]) in why:
            reasons.append(f"customer {entry[4]} was rejected in this run ({why[('customers', entry[4])]})")
        if ("plans", entry[5]) in why:
            reasons.append(f"plan {entry[5]} was rejected in this run ({why[('plans', entry[5])]})")
        if reasons:
            local[i] = Outcome(entry[0], "skipped", clean_text("; ".join(reasons), 2000), payload_hash=payload_hash(entry))


def _skip_unchanged(
    conn: Connection, run_id: int, stage: str, data_source: str, entries: list[list[Any]], local: dict[int, Outcome]
) -> None:
    """--only-changed: rows whose payload hash equals the one last accepted since the last reset."""
    candidates = {e[0]: i for i, e in enumerate(entries) if i not in local and e[1] is not None}
    if not candidates:
        return
    runs = conn.execute(
        text(
            """
            SELECT id FROM runs
            WHERE data_source = :ds AND NOT dry_run AND id < :run
              AND id >= coalesce((SELECT max(id) FROM runs WHERE data_source = :ds AND reset_at IS NOT NULL AND id <= :run), 0)
            """
        ),
        {"ds": data_source, "run": run_id},
    ).scalars().all()
    if not runs:
        return
    rows = conn.execute(
        text(
            """
            SELECT DISTINCT ON (external_id) external_id, payload_hash, run_id FROM audit
            WHERE run_id = ANY(:runs) AND entity = :e AND external_id = ANY(:ids)
              AND outcome IN ('inserted', 'updated', 'unchanged', 'success')
            ORDER BY external_id, run_id DESC
            """
        ),
        {"runs": list(runs), "e": stage, "ids": list(candidates)},
    ).all()
    for row in rows:
        i = candidates[row.external_id]
        if row.payload_hash is not None and bytes(row.payload_hash).hex() == entries[i][1]:
            local[i] = Outcome(
                entries[i][0],
                "unchanged",
                f"skipped locally: payload identical to the one accepted in run {row.run_id}",
                payload_hash=bytes(row.payload_hash),
                local=True,
            )
