"""Writing final outcomes: one statement per batch into `audit`, and the batch's counters beside it.

A first-pass batch answered clean and accepted row for row is recorded by `store.record_accepted`, one
statement that finishes the batch under its lease and has PostgreSQL build its audit rows from the
stored manifest. Every other batch goes through `store.finish` + `write_outcomes`.

Pass 1 (a run's first pass) COPYs its rows: nothing can be there yet, since a batch is finalised once,
under its lease. Later passes (`retry`) replace rows: the old row goes to `audit_history`, the old
batch's counters are decremented, and the new row records how many passes the row has seen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from backfill import store
from models.states import ACCEPTED_OUTCOMES

_COUNTER_OF = {
    "inserted": "n_inserted",
    "updated": "n_updated",
    "unchanged": "n_unchanged",
    "success": "n_success",
    "local": "n_local",
    "error": "n_error",
    "invalid": "n_invalid",
    "skipped": "n_skipped",
}
AUDIT_COLUMNS = (
    "run_id",
    "entity",
    "external_id",
    "batch_id",
    "outcome",
    "export_status",
    "message",
    "http_status",
    "attempts",
    "payload_hash",
    "sent_at",
    "answered_at",
    "passes",
    "previous_outcome",
)


@dataclass(slots=True)
class Outcome:
    """The final outcome of one row, before it is written."""

    external_id: str
    outcome: str
    message: str | None = None
    export_status: str | None = None
    payload_hash: bytes | None = None
    http_status: int | None = None
    # Sent rows carry the timing of the exchange that answered them.
    sent: bool = False
    # An `unchanged` decided locally by --only-changed, counted apart from the API's `unchanged`.
    local: bool = False


def clean_text(value: str | None, limit: int = 4000) -> str | None:
    """Text safe to store: no NUL (Postgres text refuses it), bounded length."""
    if value is None:
        return None
    if "\x00" in value:
        value = value.replace("\x00", "\\u0000")
    return value if len(value) <= limit else value[: limit - 15] + " ...(truncated)"


def counters(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """Per-batch counters for these outcomes (every counter present)."""
    tally = Counter("local" if o.local else o.outcome for o in outcomes)
    return {column: tally.get(key, 0) for key, column in _COUNTER_OF.items()}


def status_counters(statuses: Sequence[str]) -> dict[str, int]:
    """`counters` of a batch whose rows were all sent and answered with these (accepted) statuses."""
    tally = Counter(statuses)
    return {column: tally.get(key, 0) for key, column in _COUNTER_OF.items()}


def write_outcomes(
    conn: Connection,
    *,
    run_id: int,
    entity: str,
    batch_id: int,
    pass_no: int,
    outcomes: Sequence[Outcome],
    attempts: int,
    sent_at: datetime | None,
    answered_at: datetime | None,
) -> None:
    """Write the audit rows of one batch (COPY on the first pass, upsert with history afterwards)."""
    if not outcomes:
        return
    if pass_no == 1:
        _copy(conn, run_id, entity, batch_id, outcomes, attempts, sent_at, answered_at)
    else:
        _replace(conn, run_id, entity, batch_id, pass_no, outcomes, attempts, sent_at, answered_at)


def _values(
    run_id: int, entity: str, batch_id: int, o: Outcome, attempts: int, sent_at: datetime | None, answered_at: datetime | None
) -> tuple[Any, ...]:
    return (
        run_id,
        entity,
        o.external_id,
        batch_id,
        o.outcome,
        clean_text(o.export_status, 200),
        clean_text(o.message),
        o.http_status,
        attempts if o.sent else 0,
        o.payload_hash,
        sent_at if o.sent else None,
        answered_at if o.sent else None,
    )


def _copy_text(value: str | None) -> str:
    """A value in COPY's text format (NULL is \\N; backslash, tab, newline and CR escaped)."""
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def _copy(
    conn: Connection,
    run_id: int,
    entity: str,
    batch_id: int,
    outcomes: Sequence[Outcome],
    attempts: int,
    sent_at: datetime | None,
    answered_at: datetime | None,
) -> None:
    # One COPY of pre-formatted text: what is the same for the whole batch is formatted once, and
    # psycopg does not adapt twelve Python values per row (the largest cost of recording a batch).
    raw = conn.connection.driver_connection
    assert raw is not None
    head = f"{run_id}\t{entity}\t"
    batch = f"\t{batch_id}\t"
    sent_attempts, local_attempts = f"\t{attempts}\t", "\t0\t"
    sent_times = f"\t{_copy_text(_iso(sent_at))}\t{_copy_text(_iso(answered_at))}\n"
    local_times = "\t\\N\t\\N\n"
    lines = []
    for o in outcomes:
        # Columns in AUDIT_COLUMNS order: ... http_status, attempts, payload_hash, sent_at, answered_at.
        lines.append(
            head
            + _copy_text(o.external_id)
            + batch
            + o.outcome
            + "\t"
            + ("\\N" if o.export_status is None else _copy_text(clean_text(o.export_status, 200)))
            + "\t"
            + ("\\N" if o.message is None else _copy_text(clean_text(o.message)))
            + "\t"
            + ("\\N" if o.http_status is None else str(o.http_status))
            + (sent_attempts if o.sent else local_attempts)
            + ("\\N" if o.payload_hash is None else "\\\\x" + o.payload_hash.hex())
            + (sent_times if o.sent else local_times)
        )
    columns = ", ".join(AUDIT_COLUMNS[:12])
    with raw.cursor() as cur, cur.copy(f"COPY audit ({columns}) FROM STDIN") as copy:
        copy.write("".join(lines))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _replace(
    conn: Connection,
    run_id: int,
    entity: str,
    batch_id: int,
    pass_no: int,
    outcomes: Sequence[Outcome],
    attempts: int,
    sent_at: datetime | None,
    answered_at: datetime | None,
) -> None:
    ids = [o.external_id for o in outcomes]
    old = conn.execute(
        text(
            """
            INSERT INTO audit_history (run_id, entity, external_id, pass_no, batch_id, outcome, message, http_status, answered_at)
            SELECT a.run_id, a.entity, a.external_id, a.passes, a.batch_id, a.outcome, a.message, a.http_status, a.answered_at
            FROM audit a WHERE a.run_id = :r AND a.entity = :e AND a.external_id = ANY(:ids)
            RETURNING batch_id, outcome, message
            """
        ),
        {"r": run_id, "e": entity, "ids": ids},
    ).all()
    # The replaced rows no longer count in the batches that first recorded them (rows and outcome).
    decrements: Counter[tuple[int, str]] = Counter()
    for row in old:
        key = "local" if row.outcome == "unchanged" and (row.message or "").startswith("skipped locally") else row.outcome
        decrements[(row.batch_id, _COUNTER_OF[key])] += 1
    for (old_batch, column), n in decrements.items():
        store.uncount(conn, old_batch, column, n)
    params = []
    for o in outcomes:
        values = _values(run_id, entity, batch_id, o, attempts, sent_at, answered_at)
        params.append(dict(zip(AUDIT_COLUMNS[:12], values)))
    conn.execute(
        text(
            """
            INSERT INTO audit (run_id, entity, external_id, batch_id, outcome, export_status, message, http_status,
                               attempts, payload_hash, sent_at, answered_at)
            VALUES (:run_id, :entity, :external_id, :batch_id, :outcome, :export_status, :message, :http_status,
                    :attempts, :payload_hash, :sent_at, :answered_at)
            ON CONFLICT (run_id, entity, external_id) DO UPDATE SET
                previous_outcome = audit.outcome, passes = audit.passes + 1,
                batch_id = EXCLUDED.batch_id, outcome = EXCLUDED.outcome, export_status = EXCLUDED.export_status,
                message = EXCLUDED.message, http_status = EXCLUDED.http_status, attempts = EXCLUDED.attempts,
                payload_hash = EXCLUDED.payload_hash, sent_at = EXCLUDED.sent_at, answered_at = EXCLUDED.answered_at
            """
        ),
        params,
    )


def is_accepted(outcome: str) -> bool:
    """Whether GrowPanel holds the row after this outcome."""
    return outcome in ACCEPTED_OUTCOMES
