"""The batches table's transitions and counters: the one module that writes `batches`.

Every state change of a batch (insert, claim, release, reschedule, split, queue, recover) is a statement
here, using the state names of `models.states`; callers hold the connection and the transaction.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from models.states import STAGES

_COUNTERS = ("rows", "inserted", "updated", "unchanged", "success", "local", "error", "invalid", "skipped", "failed_batches")


def stage_counts(conn: Connection, run_id: int) -> dict[str, dict[str, int]]:
    """Per stage, the outcome counters summed over its batches (never over the audit table)."""
    counts = {stage: dict.fromkeys(_COUNTERS, 0) for stage in STAGES}
    rows = conn.execute(
        text(
            """
            SELECT stage, sum(rows) AS rows, sum(n_inserted) AS inserted, sum(n_updated) AS updated,
                   sum(n_unchanged) AS unchanged, sum(n_success) AS success, sum(n_local) AS local,
                   sum(n_error) AS error, sum(n_invalid) AS invalid, sum(n_skipped) AS skipped,
                   count(*) FILTER (WHERE state = 'failed') AS failed_batches
            FROM batches WHERE run_id = :r GROUP BY stage
            """
        ),
        {"r": run_id},
    ).mappings()
    for row in rows:
        counts[row["stage"]] = {k: int(row[k] or 0) for k in _COUNTERS}
    return counts
