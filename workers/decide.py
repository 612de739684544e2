"""Outcomes decided before sending: invalid rows, dependencies rejected earlier, unchanged payloads.

Shared by the worker (just before posting) and by `start --dry-run` (which sends nothing).
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from backfill.audit import Outcome, clean_text
from backfill.manifest import ManifestEntry
from models.states import ACCEPTED_OUTCOMES, REJECTED_OUTCOMES, sql_list


def payload_hash(entry: ManifestEntry) -> bytes | None:
    """The manifest's payload hash as bytes."""
    return entry.hash_bytes


_REJECTED = sql_list(REJECTED_OUTCOMES)
_ACCEPTED = sql_list(ACCEPTED_OUTCOMES)


def local_outcomes(
    conn: Connection, run_id: int, stage: str, data_source: str, entries: list[ManifestEntry], only_changed: bool
) -> dict[int, Outcome]:
    """Manifest index -> outcome, for the rows of a batch that will not be sent."""
    local: dict[int, Outcome] = {}
    for i, entry in enumerate(entries):
        if entry.outcome == "invalid":
            local[i] = Outcome(entry.id, "invalid", entry.message)
    if stage == "invoices":
        _skip_rejected_dependencies(conn, run_id, entries, local)
    if only_changed:
        _skip_unchanged(conn, run_id, stage, data_source, entries, local)
    return local


def _skip_rejected_dependencies(conn: Connection, run_id: int, entries: list[ManifestEntry], local: dict[int, Outcome]) -> None:
    """Invoices whose customer or plan was rejected earlier in this run are `skipped`."""
    customers = {e.customer_id for i, e in enumerate(entries) if i not in local and e.customer_id is not None}
    plans = {e.plan_id for i, e in enumerate(entries) if i not in local and e.plan_id is not None}
    if not customers and not plans:
        return
    rejected = conn.execute(
        text(
            f"""
            SELECT entity, external_id, outcome, message FROM audit
            WHERE run_id = :r AND outcome IN {_REJECTED}
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
        if ("customers", entry.customer_id) in why:
            reasons.append(f"customer {entry.customer_id} was rejected in this run ({why[('customers', entry.customer_id)]})")
        if ("plans", entry.plan_id) in why:
            reasons.append(f"plan {entry.plan_id} was rejected in this run ({why[('plans', entry.plan_id)]})")
        if reasons:
            local[i] = Outcome(entry.id, "skipped", clean_text("; ".join(reasons), 2000), payload_hash=payload_hash(entry))


def _skip_unchanged(
    conn: Connection, run_id: int, stage: str, data_source: str, entries: list[ManifestEntry], local: dict[int, Outcome]
) -> None:
    """--only-changed: rows whose payload hash equals the one last accepted since the last reset."""
    candidates = {e.id: i for i, e in enumerate(entries) if i not in local and e.sendable}
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
            f"""
            SELECT DISTINCT ON (external_id) external_id, payload_hash, run_id FROM audit
            WHERE run_id = ANY(:runs) AND entity = :e AND external_id = ANY(:ids)
              AND outcome IN {_ACCEPTED}
            ORDER BY external_id, run_id DESC
            """
        ),
        {"runs": list(runs), "e": stage, "ids": list(candidates)},
    ).all()
    for row in rows:
        i = candidates[row.external_id]
        if row.payload_hash is not None and bytes(row.payload_hash).hex() == entries[i].hash:
            local[i] = Outcome(
                entries[i].id,
                "unchanged",
                f"skipped locally: payload identical to the one accepted in run {row.run_id}",
                payload_hash=bytes(row.payload_hash),
                local=True,
            )
