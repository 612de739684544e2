"""`batch RUN SEQ`: which rows a batch sent and what came back, attempt by attempt, with a real worker.

`eventful_run` (also used by the prune and report tests) makes a run in which some batches needed
retries and some rows were rejected, locally and by the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.scenarios import PLANS, invoice, ts
from tests.support.services import Database
from tests.support.sources import build_source, mapping_file
from tests.support.stack import SandboxView, Stack, cleared_faults

# With error_rate 0.01 and this seed, the sandbox's fault generator fails the 1st (500) and the 3rd (502)
# request to /data/invoices, and no other before the 148th: exactly two 5xx in a run that makes a few
# dozen invoice requests, so batches are retried and none can run out of attempts.
FAULT_SEED = 8038
EXPECTED_FAILURES = [500, 502]
SANDBOX_FAULT = "Internal error (sandbox fault)"


def eventful_source(source_db: Database, schema: str) -> None:
    """12 good customers with 3 invoices each, plus rows rejected locally (invalid, skipped) and by the API."""
    customers: list[dict[str, Any]] = [
        {"id": f"c{n:02d}", "name": f"Customer {n}", "created_date": ts("2024-01-01"), "country": "us"} for n in range(12)
    ]
    customers += [
        {"id": "c_noname", "created_date": ts("2024-01-01"), "country": "us"},
        {"id": "c_badcountry", "name": "X", "created_date": ts("2024-01-01"), "country": "zz"},
    ]
    invoices = [
        invoice(f"i{n:02d}_{k}", f"c{n:02d}", "one-time", f"2024-0{k + 2}-01", 1000 + k) for n in range(12) for k in range(3)
    ]
    invoices += [
        invoice("i_negative", "c00", "one-time", "2024-06-01", -1),
        invoice("i_orphan", "c_badcountry", "one-time", "2024-05-01", 100),
        invoice("i_unknown", "c_nowhere", "one-time", "2024-05-01", 100),
    ]
    build_source(source_db.url, schema, PLANS, customers, invoices)


def eventful_run(stack: Stack, sandbox: SandboxView, source_db: Database, schema: str, workdir: Path) -> int:
    """A finished run (completed_with_errors) with two 5xx answers retried and rejected rows of every kind."""
    eventful_source(source_db, schema)
    with cleared_faults(sandbox):
        sandbox.faults(error_rate=0.01, seed=FAULT_SEED, paths=["/data/invoices"])
        result = stack.cli("start", "--mapping", mapping_file(workdir, schema), "--wait", "--json", env={"BATCH_SIZE": "5"})
    assert result.code == 1, result.stderr
    doc = result.json()
    assert doc["state"] == "completed_with_errors"
    faulted = [r["status"] for r in sandbox.requests() if r["fault"] == "error"]
    assert sorted(faulted) == EXPECTED_FAILURES, "the sandbox's seeded fault schedule changed: pick a new FAULT_SEED"
    return int(doc["run_id"])


def _attempt_statuses(stack: Stack, batch_id: int) -> list[int | None]:
    rows = stack.sql("SELECT http_status FROM batch_attempts WHERE batch_id = :b ORDER BY started_at, id", b=batch_id)
    return [r["http_status"] for r in rows]


def test_batch_shows_every_attempt_with_the_body_of_failed_ones_and_each_rows_answer(
    stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    # Given a run in which two invoice requests got a 5xx and were retried
    run_id = eventful_run(stack, sandbox, source_db, source_schema, workdir)
    retried = stack.sql(
        """
        SELECT DISTINCT b.id, b.seq, b.part FROM batch_attempts a JOIN batches b ON b.id = a.batch_id
        WHERE b.run_id = :r AND a.http_status >= 500 ORDER BY b.seq
        """,
        r=run_id,
    )
    assert retried
    seen_failures = []
    for row in retried:
        # When the operator asks for that batch
        result = stack.cli("batch", str(run_id), str(row["seq"]), "--stage", "invoices", "--json")
        assert result.code == 0, result.stderr
        doc = result.json()
        # Then it shows every attempt, the failed ones with what the API answered, the last a clean 200
        statuses = [a["http_status"] for a in doc["http_attempts"]]
        assert statuses == _attempt_statuses(stack, row["id"])
        assert statuses[-1] == 200 and all(s >= 500 for s in statuses[:-1]) and len(statuses) >= 2
        for attempt in doc["http_attempts"][:-1]:
            assert SANDBOX_FAULT in attempt["response_body"]
            assert attempt["error"].startswith(f"HTTP {attempt['http_status']}")
            assert attempt["latency_ms"] is not None and attempt["started_at"]
            seen_failures.append(attempt["http_status"])
        assert doc["http_attempts"][-1]["response_body"] is None
        assert (doc["state"], doc["attempts_used"]) == ("done", len(statuses))
        # and every row of the batch with the outcome the audit recorded for it
        audit = stack.sql("SELECT external_id, outcome FROM audit WHERE batch_id = :b", b=row["id"])
        assert {r["id"]: r["outcome"] for r in doc["row_outcomes"]} == {a["external_id"]: a["outcome"] for a in audit}
        sent = [r for r in doc["row_outcomes"] if r["sent"]]
        assert len(sent) == doc["http_attempts"][-1]["rows_sent"] > 0
        # The text view says the same in lines a person reads.
        text = stack.cli("batch", str(run_id), str(row["seq"]), "--stage", "invoices")
        assert text.code == 0, text.stderr
        assert f"HTTP {statuses[0]}" in text.stdout and SANDBOX_FAULT in text.stdout and "HTTP 200" in text.stdout
        assert all(r["id"] in text.stdout for r in doc["row_outcomes"])
    assert sorted(seen_failures) == EXPECTED_FAILURES


def test_batch_shows_rejected_rows_with_their_reasons(
    stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    run_id = eventful_run(stack, sandbox, source_db, source_schema, workdir)
    errors = stack.cli("errors", str(run_id), "--json")
    where = {e["id"]: e["batch"] for e in errors.json()}

    def row_of(entity: str, row_id: str) -> dict[str, Any]:
        result = stack.cli("batch", str(run_id), where[row_id], "--stage", entity, "--json")
        assert result.code == 0, result.stderr
        return next(r for r in result.json()["row_outcomes"] if r["id"] == row_id)

    # Refused by the API inside a 200: sent, and the API's message kept
    unknown = row_of("invoices", "i_unknown")
    assert (unknown["outcome"], unknown["message"], unknown["sent"], unknown["http_status"]) == (
        "error", "Customer ID c_nowhere does not exist", True, 200)
    # Refused by the producer's checks: never in the payload
    negative = row_of("invoices", "i_negative")
    assert (negative["outcome"], negative["in_payload"], negative["sent"]) == ("invalid", False, False)
    assert negative["message"] == "amount_cents must not be negative, got -1"
    # Held back because its customer was rejected: in the payload as produced, not sent
    orphan = row_of("invoices", "i_orphan")
    assert (orphan["outcome"], orphan["sent"]) == ("skipped", False)
    assert "customer c_badcountry was rejected in this run" in orphan["message"]
    noname = row_of("customers", "c_noname")
    assert (noname["outcome"], noname["message"]) == ("invalid", "name or email is required")


def test_batch_finds_a_half_of_a_split_batch_by_seq_dot_part(
    stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    # Given an API that takes at most 3 rows per request and a batch of 8 customers: 8 -> 4 + 4 -> 2 + 2 + 2 + 2
    customers = [{"id": f"c{n}", "name": f"C{n}", "created_date": ts("2024-01-01"), "country": "us"} for n in range(8)]
    build_source(source_db.url, source_schema, PLANS, customers, [])
    with cleared_faults(sandbox):
        sandbox.faults(max_batch=3)
        result = stack.cli("start", "--mapping", mapping_file(workdir, source_schema), "--wait", "--json", env={"BATCH_SIZE": "8"})
    assert result.code == 0, result.stderr
    run_id = result.json()["run_id"]
    # When the operator asks for batch 1.01 (only customers has halves, so no --stage is needed)
    half = stack.cli("batch", str(run_id), "1.01", "--json")
    assert half.code == 0, half.stderr
    doc = half.json()
    # Then it is the second quarter of customers batch 1, answered by one clean 200
    assert (doc["stage"], doc["batch"], doc["state"], doc["rows"]) == ("customers", "1.01", "done", 2)
    quarter = stack.sql("SELECT id FROM batches WHERE run_id = :r AND stage = 'customers' AND seq = 1 AND part = '01'", r=run_id)
    audit = stack.sql("SELECT external_id FROM audit WHERE batch_id = :b", b=quarter[0]["id"])
    assert sorted(r["id"] for r in doc["row_outcomes"]) == sorted(a["external_id"] for a in audit)
    assert [r["outcome"] for r in doc["row_outcomes"]] == ["inserted", "inserted"]
    assert [(a["http_status"], a["rows_sent"], a["response_body"]) for a in doc["http_attempts"]] == [(200, 2, None)]
    # The whole batch was split after a 413 whose body says why; its rows were answered by the quarters.
    whole = stack.cli("batch", str(run_id), "1", "--stage", "customers", "--json").json()
    assert whole["state"] == "split"
    assert [h["batch"] for h in whole["halves"]] == ["1.0", "1.1"]
    [attempt] = whole["http_attempts"]
    assert attempt["http_status"] == 413 and "exceeds the maximum of 3 rows" in attempt["response_body"]
    answered = {r["id"]: r["answered_in"] for r in whole["row_outcomes"]}
    assert sorted(answered) == [f"c{n}" for n in range(8)]
    assert set(answered.values()) == {"1.00", "1.01", "1.10", "1.11"}
    assert {i for i, where in answered.items() if where == "1.01"} == {r["id"] for r in doc["row_outcomes"]}


def test_batch_refuses_unknown_or_ambiguous_positions(
    stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    build_source(source_db.url, source_schema, PLANS, [{"id": "c1", "name": "C", "created_date": ts("2024-01-01"), "country": "us"}], [])
    result = stack.cli("start", "--mapping", mapping_file(workdir, source_schema), "--wait", "--json")
    assert result.code == 0, result.stderr
    run_id = str(result.json()["run_id"])
    ambiguous = stack.cli("batch", run_id, "1")
    assert ambiguous.code == 2 and "plans, customers" in ambiguous.stderr and "--stage" in ambiguous.stderr
    missing = stack.cli("batch", run_id, "7", "--stage", "plans")
    assert missing.code == 4 and f"run {run_id} has no batch 7 of stage plans" in missing.stderr
    malformed = stack.cli("batch", run_id, "1.2")
    assert malformed.code == 2 and "SEQ or SEQ.PART" in malformed.stderr
    no_run = stack.cli("batch", "999999", "1")
    assert no_run.code == 4 and "there is no run 999999" in no_run.stderr
