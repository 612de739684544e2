"""End to end: billing Postgres -> staged Celery batches -> the sandbox, with the audit checked."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from tests.integration.scenarios import CUSTOMERS, INVOICES, PLANS, expected_objects, invoice, ts
from tests.support.services import Database
from tests.support.sources import build_source, mapping_file
from tests.support.stack import SandboxView, Stack


def _stored(view: SandboxView) -> dict[str, dict[str, dict]]:
    return {kind: {obj["id"]: obj for obj in objs} for kind, objs in view.ledger().items()}


def test_golden_path_imports_every_scenario_as_sent(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    # Given a source with the guide's scenarios (new, upgrade, downgrade, cancellation, reactivation, refund)
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    mapping = mapping_file(workdir, source_schema)
    # When the user runs a backfill and waits for it
    result = stack.cli("start", "--mapping", mapping, "--wait", "--json")
    # Then every row was accepted, and GrowPanel holds exactly what the source says
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["state"] == "succeeded"
    for stage, n in (("plans", 3), ("customers", 2), ("invoices", 8)):
        s = doc["stages"][stage]
        assert (s["state"], s["rows"], s["accepted"], s["by_status"]["inserted"], s["pending"]) == ("done", n, n, n, 0)
    assert _stored(sandbox) == expected_objects(sandbox.data_source)
    audit = stack.audit(doc["run_id"])
    assert len(audit) == 13
    assert {row["outcome"] for row in audit.values()} == {"inserted"}
    assert all(row["http_status"] == 200 and row["payload_hash"] and row["answered_at"] for row in audit.values())
    assert sandbox.violations() == []
    # Stages ran in order: no customer was posted before the last plan was answered, and so on.
    posts = [r for r in sandbox.requests() if r["method"] == "POST"]
    kinds = [r["path"].rsplit("/", 1)[1] for r in posts]
    assert kinds == sorted(kinds, key=["plans", "customers", "invoices"].index)


def test_second_identical_run_is_all_unchanged(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    mapping = mapping_file(workdir, source_schema)
    first = stack.cli("start", "--mapping", mapping, "--wait", "--json")
    assert first.code == 0, first.stderr
    second = stack.cli("start", "--mapping", mapping, "--wait", "--json")
    assert second.code == 0, second.stderr
    doc = second.json()
    for stage, n in (("plans", 3), ("customers", 2), ("invoices", 8)):
        assert doc["stages"][stage]["by_status"]["unchanged"] == n
        assert doc["stages"][stage]["by_status"]["inserted"] == 0
    assert {r["outcome"] for r in stack.audit(doc["run_id"]).values()} == {"unchanged"}


def test_mixed_batch_stores_valid_rows_and_reports_every_bad_one(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    # Given one batch mixing valid rows, rows that break documented rules, a duplicated id,
    # an invoice of a rejected customer, and an invoice the API refuses (unknown customer)
    customers = [
        {"id": "c_ok", "name": "Fine", "created_date": ts("2024-01-01"), "country": "us"},
        {"id": "c_noname", "created_date": ts("2024-01-01"), "country": "us"},
        {"id": "c_badcountry", "name": "X", "created_date": ts("2024-01-01"), "country": "zz"},
    ]
    invoices = [
        invoice("i_ok", "c_ok", "subscription", "2024-01-01", 9900, "plan_pro", "2024-02-01"),
        invoice("i_negative", "c_ok", "subscription", "2024-02-01", -1, "plan_pro", "2024-03-01"),
        invoice("i_noplan", "c_ok", "subscription", "2024-03-01", 9900, None, "2024-04-01"),
        invoice("i_badtype", "c_ok", "upgrade", "2024-04-01", 9900, "plan_pro", "2024-05-01"),
        invoice("i_dup", "c_ok", "one-time", "2024-05-01", 100),
        invoice("i_dup", "c_ok", "one-time", "2024-05-02", 200),
        invoice("i_orphan", "c_badcountry", "one-time", "2024-05-01", 100),
        invoice("i_unknown_customer", "c_nowhere", "one-time", "2024-05-01", 100),
        invoice("i_ok2", "c_ok", "one-time", "2024-06-01", 500),
    ]
    build_source(source_db.url, source_schema, PLANS, customers, invoices)
    result = stack.cli("start", "--mapping", mapping_file(workdir, source_schema), "--wait", "--json")
    # Then the run completes with errors (exit 1), the valid rows are stored, every bad row is reported
    assert result.code == 1, result.stderr
    doc = result.json()
    assert doc["state"] == "completed_with_errors"
    inv = doc["stages"]["invoices"]
    assert (inv["rows"], inv["accepted"], inv["invalid"], inv["skipped"], inv["error"]) == (8, 2, 4, 1, 1)
    assert sorted(_stored(sandbox)["invoices"]) == ["i_ok", "i_ok2"]
    errors = stack.cli("errors", str(doc["run_id"]), "--json")
    assert errors.code == 0
    by_id = {(e["entity"], e["id"]): e for e in errors.json()}
    assert by_id[("customers", "c_noname")]["message"] == "name or email is required"
    assert "country" in by_id[("customers", "c_badcountry")]["message"]
    assert by_id[("invoices", "i_negative")]["message"] == "amount_cents must not be negative, got -1"
    assert by_id[("invoices", "i_noplan")]["message"] == "plan_id is required when type is subscription"
    assert "type must be one of" in by_id[("invoices", "i_badtype")]["message"]
    assert by_id[("invoices", "i_dup")]["message"] == "id appears 2 times in the source"
    assert by_id[("invoices", "i_orphan")]["outcome"] == "skipped"
    assert "customer c_badcountry was rejected in this run" in by_id[("invoices", "i_orphan")]["message"]
    assert by_id[("invoices", "i_unknown_customer")] == {
        "entity": "invoices", "id": "i_unknown_customer", "outcome": "error",
        "message": "Customer ID c_nowhere does not exist", "batch": by_id[("invoices", "i_unknown_customer")]["batch"],
    }
    assert all(e["batch"] for e in by_id.values())
    # CSV carries the same rows
    csv = stack.cli("errors", str(doc["run_id"]), "--csv")
    assert csv.stdout.splitlines()[0] == "entity,id,outcome,message,batch"
    assert len(csv.stdout.splitlines()) == 1 + len(by_id)


def test_invoices_stay_in_order_per_customer_across_batches(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    # Given customers with many invoices and batches so small that customers span several of them
    customers = [{"id": f"c{n}", "name": f"C{n}", "created_date": ts("2020-01-01"), "country": "us"} for n in range(8)]
    invoices = []
    for n in range(8):
        count = 3 if n % 2 else 40
        for k in range(count):
            day = ts("2020-01-01").replace(year=2020 + k // 12, month=k % 12 + 1)
            # Ids in reverse date order: only the date may decide the order.
            invoices.append(invoice(f"c{n}-{999 - k}", f"c{n}", "one-time", day.date().isoformat(), 100 + k))
    build_source(source_db.url, source_schema, PLANS, customers, invoices)
    result = stack.cli("start", "--mapping", mapping_file(workdir, source_schema), "--wait", "--json", env={"BATCH_SIZE": "7"})
    assert result.code == 0, result.stderr
    run_id = result.json()["run_id"]
    # Then chained batches exist, each was posted only after the one before it was answered,
    chains = stack.sql(
        """
        SELECT b.id, d.finished_at AS dep_done, (SELECT min(started_at) FROM batch_attempts WHERE batch_id = b.id) AS posted
        FROM batches b JOIN batches d ON d.id = b.depends_on WHERE b.run_id = :r
        """,
        r=run_id,
    )
    assert len(chains) >= 4 * (40 // 7)
    assert all(row["posted"] >= row["dep_done"] for row in chains)
    # and GrowPanel saw every customer's invoices in date order.
    assert sandbox.violations() == []
    assert len(_stored(sandbox)["invoices"]) == len(invoices)


def test_a_chain_goes_on_in_the_slot_that_posted_its_previous_batch(
    make_stack: Callable[..., Stack], sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    # Given a big customer whose invoices take three batches, ten batches of small customers behind it,
    # and one worker slot, so that every small batch is queued before the big customer's second batch
    # becomes ready (at the default MAX_IN_FLIGHT)
    customers = [{"id": f"c{n:02}", "name": f"C{n}", "created_date": ts("2020-01-01"), "country": "us"} for n in range(21)]
    invoices = [invoice(f"big-{k:02}", "c00", "one-time", f"2021-{k + 1:02}-01", 100 + k) for k in range(12)]
    invoices += [invoice(f"small-{n}-{k}", f"c{n:02}", "one-time", f"2021-0{k + 1}-01", 100) for n in range(1, 21) for k in range(2)]
    build_source(source_db.url, source_schema, PLANS, customers, invoices)
    stack = make_stack(BATCH_SIZE="4")
    stack.start_worker(concurrency=1)
    sandbox.faults(latency_ms=50)
    # When the run is posted
    run_id = stack.start_run("--mapping", mapping_file(workdir, source_schema))
    assert stack.wait_for_state(run_id)["state"] == "succeeded"
    # Then the big customer's batches were posted one right after the other: each one, ready only once
    # the one before it was done, was taken by the slot that posted that one instead of waiting behind
    # the ten queued messages,
    batches = stack.sql(
        """
        SELECT b.id, b.depends_on, a.started_at FROM batches b JOIN batch_attempts a ON a.batch_id = b.id
        WHERE b.run_id = :r AND b.stage = 'invoices' ORDER BY a.started_at
        """,
        r=run_id,
    )
    dependents = {b["depends_on"] for b in batches if b["depends_on"] is not None}
    chain = [i for i, b in enumerate(batches) if b["depends_on"] is not None or b["id"] in dependents]
    assert len(batches) == 13 and chain == [0, 1, 2], chain
    # and in date order, as GrowPanel needs.
    assert sandbox.violations() == []


def test_a_slot_takes_the_next_ready_batch_itself_without_a_message(
    make_stack: Callable[..., Stack], sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    # Given stages of 100 batches each, more than the default MAX_IN_FLIGHT (64) queues with a message
    customers = [{"id": f"c{n:03}", "name": f"C{n}", "created_date": ts("2020-01-01"), "country": "us"} for n in range(200)]
    invoices = [invoice(f"i{n:03}", f"c{n:03}", "one-time", "2021-01-01", 100) for n in range(200)]
    build_source(source_db.url, source_schema, PLANS, customers, invoices)
    stack = make_stack(BATCH_SIZE="2")
    worker = stack.start_worker(concurrency=2)
    # When the run is posted
    run_id = stack.start_run("--mapping", mapping_file(workdir, source_schema))
    doc = stack.wait_for_state(run_id)
    # Then every row was posted once, in one attempt per batch,
    assert doc["state"] == "succeeded"
    assert sum(doc["stages"][stage]["accepted"] for stage in ("plans", "customers", "invoices")) == 3 + 200 + 200
    attempts = stack.sql("SELECT count(*) AS n, count(DISTINCT batch_id) AS batches FROM batch_attempts a JOIN batches b ON b.id = a.batch_id WHERE b.run_id = :r", r=run_id)[0]
    assert attempts["n"] == attempts["batches"] == 2 + 100 + 100
    # but fewer messages than batches went out: a slot that finished a batch took a ready one itself,
    # instead of a round trip through the queue per batch (messages went out for the batches queued at
    # a stage's opening, up to MAX_IN_FLIGHT, and for those the producer's checkpoints queued).
    tasks = re.findall(rf"Task post_batch \w+ #\S+ of run {run_id}\[[0-9a-f-]+\] succeeded", worker.log())
    assert 0 < len(tasks) < 2 + 100 + 100, len(tasks)


def test_status_counts_add_up_to_the_source(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    from demo.seed import SeedShape, seed

    counts = seed(source_db.url, source_schema, SeedShape(customers=60, years=2, whales=1, whale_invoices=300))
    result = stack.cli("start", "--mapping", mapping_file(workdir, source_schema), "--wait", "--json")
    assert result.code == 1, result.stderr  # the sample has a few bad rows on purpose
    doc = result.json()
    status = stack.cli("status", str(doc["run_id"]), "--json").json()
    assert status == doc
    for stage in ("plans", "customers", "invoices"):
        s = status["stages"][stage]
        assert s["rows"] == s["accepted"] + s["error"] + s["invalid"] + s["skipped"] + s["pending"]
        assert s["pending"] == 0
    # The sample holds one duplicated invoice id: it is one audit row, so one row less than the source.
    assert status["stages"]["plans"]["rows"] == counts["plans"]
    assert status["stages"]["customers"]["rows"] == counts["customers"]
    assert status["stages"]["invoices"]["rows"] == counts["invoices"] - 1
    audit = stack.sql("SELECT entity, count(*) AS n FROM audit WHERE run_id = :r GROUP BY entity", r=doc["run_id"])
    assert {r["entity"]: r["n"] for r in audit} == {s: status["stages"][s]["rows"] for s in ("plans", "customers", "invoices")}
    assert sandbox.violations() == []
