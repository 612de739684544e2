"""Outcomes decided before sending: invalid rows, dependencies rejected earlier, unchanged payloads.

Shared by the worker (just before posting) and by `start --dry-run` (which sends nothing).
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from sqlalchemy import Connection, text

from backfill.audit import Outcome, clean_text
from backfill.manifest import ManifestEntry
from models.states import ACCEPTED_OUTCOMES, REJECTED_OUTCOMES, sql_list
from producers.entities import ENTITIES


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
        # `invalid`, or `skipped` by a resumed producer (a row the run cannot send in order).
        if entry.outcome is not None:
            local[i] = Outcome(entry.id, entry.outcome, entry.message)
    if ENTITIES[stage].parents:
        _skip_rejected_dependencies(conn, run_id, stage, entries, local)
    if only_changed:
        _skip_unchanged(conn, run_id, stage, data_source, entries, local)
    return local


def _skip_rejected_dependencies(
    conn: Connection, run_id: int, stage: str, entries: list[ManifestEntry], local: dict[int, Outcome]
) -> None:
    """Rows whose parent (an invoice's customer or plan, from the entity's spec) was rejected earlier in this run are `skipped`."""
    parents = ENTITIES[stage].parents
    # Without local outcomes (the common case) every entry counts: one C-level pass per parent column.
    rows = entries if not local else [e for i, e in enumerate(entries) if i not in local]
    wanted = {}
    for column, parent in parents:
        ids = set(map(attrgetter(column), rows))
        ids.discard(None)
        wanted[parent] = list(ids)
    if not any(wanted.values()):
        return
    entities = list(wanted)
    clauses = " OR ".join(f"(entity = :e{n} AND external_id = ANY(:i{n}))" for n in range(len(entities)))
    params: dict[str, Any] = {"r": run_id}
    for n, parent in enumerate(entities):
        params[f"e{n}"], params[f"i{n}"] = parent, wanted[parent]
    rejected = conn.execute(
        text(
            "SELECT entity, external_id, outcome, message FROM audit "  # noqa: S608 - placeholders only
            f"WHERE run_id = :r AND outcome IN {_REJECTED} AND ({clauses})"
        ),
        params,
    ).all()
    if not rejected:
        return
    why = {(r.entity, r.external_id): f"{r.outcome}: {r.message}" for r in rejected}
    for i, entry in enumerate(entries):
        if i in local:
            continue
        reasons = [
            f"{ENTITIES[parent].singular} {getattr(entry, column)} was rejected in this run ({why[(parent, getattr(entry, column))]})"
            for column, parent in parents
            if (parent, getattr(entry, column)) in why
        ]
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
