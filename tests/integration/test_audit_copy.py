"""The audit's COPY writes every value back exactly, whatever characters it holds."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
from sqlalchemy import text

from backfill.audit import Outcome, write_outcomes
from tests.support.stack import Stack


def test_copy_round_trips_tabs_newlines_backslashes_and_unicode(shared_stack: Stack) -> None:
    engine = shared_stack.engine
    with engine.begin() as conn:
        run_id = conn.execute(
            text(
                "INSERT INTO runs (data_source, api_url, state, batch_size, mapping) "
                "VALUES ('ds_copy', 'http://x', 'succeeded', 10, CAST(:m AS jsonb)) RETURNING id"
            ),
            {"m": orjson.dumps({"queries": {}}).decode()},
        ).scalar_one()
    tricky = ["tab\there", "new\nline", "back\\slash\\N", "cr\rx", "\\x41", "עברית 🎉 e\u0301", "plain"]
    outcomes = [
        Outcome(tricky[0], "inserted", None, "inserted", bytes(range(16)), 200, sent=True),
        Outcome(tricky[1], "error", "bad\tvalue\nsecond line \\ end", "error", b"\x00" * 16, 200, sent=True),
        Outcome(tricky[2], "invalid", "name or email is required"),
        Outcome(tricky[3], "skipped", "customer x was rejected", payload_hash=b"\xff" * 16),
        Outcome(tricky[4], "unchanged", "skipped locally: payload identical", payload_hash=b"\x01" * 16, local=True),
        Outcome(tricky[5], "success", "accepted with export_status 'queued'", "queued", b"\x02" * 16, 200, sent=True),
        Outcome(tricky[6], "updated", None, "updated", b"\x03" * 16, 200, sent=True),
    ]
    sent_at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    answered_at = datetime(2026, 1, 2, 3, 4, 6, tzinfo=timezone.utc)
    with engine.begin() as conn:
        write_outcomes(conn, run_id=run_id, entity="customers", batch_id=42, pass_no=1, outcomes=outcomes,
                       attempts=3, sent_at=sent_at, answered_at=answered_at)
    stored = {row["external_id"]: row for row in shared_stack.sql("SELECT * FROM audit WHERE run_id = :r", r=run_id)}
    assert set(stored) == set(tricky)
    for o in outcomes:
        row = stored[o.external_id]
        assert (row["outcome"], row["message"], row["export_status"], row["http_status"]) == (o.outcome, o.message, o.export_status, o.http_status)
        assert row["payload_hash"] == o.payload_hash
        assert row["batch_id"] == 42
        if o.sent:
            assert (row["attempts"], row["sent_at"], row["answered_at"]) == (3, sent_at, answered_at)
        else:
            assert (row["attempts"], row["sent_at"], row["answered_at"]) == (0, None, None)
