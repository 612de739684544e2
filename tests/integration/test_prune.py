"""`prune --older-than`: old runs lose their per-row and per-attempt detail and keep their summary."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tests.integration.scenarios import PLANS
from tests.integration.test_batch_detail import eventful_run, eventful_source
from tests.support.services import Database, wait_until
from tests.support.sources import mapping_file
from tests.support.stack import SandboxView, Stack, cleared_faults

DETAIL_SQL = {
    "audit": "SELECT count(*) AS n FROM audit WHERE run_id = :r",
    "audit_history": "SELECT count(*) AS n FROM audit_history WHERE run_id = :r",
    "retry_targets": "SELECT count(*) AS n FROM retry_targets WHERE run_id = :r",
    "batch_attempts": "SELECT count(*) AS n FROM batch_attempts a JOIN batches b ON b.id = a.batch_id WHERE b.run_id = :r",
    "batch_payloads": "SELECT count(*) AS n FROM batches WHERE run_id = :r AND (payload IS NOT NULL OR manifest IS NOT NULL)",
}
SUMMARY_SQL = """
    SELECT id, stage, pass_no, seq, part, state, rows, attempts, throttled, finished_at, n_inserted, n_updated,
           n_unchanged, n_success, n_local, n_error, n_invalid, n_skipped
    FROM batches WHERE run_id = :r ORDER BY id
"""


def detail(stack: Stack, run_id: int) -> dict[str, int]:
    """How many rows of each kind of detail a run holds."""
    return {name: stack.sql(sql, r=run_id)[0]["n"] for name, sql in DETAIL_SQL.items()}


def summary(stack: Stack, run_id: int) -> dict[str, Any]:
    """Everything `prune` promises to keep: status, the `runs` line, stage summaries, batch counters."""
    status = stack.cli("status", str(run_id), "--json")
    listing = stack.cli("runs", "--limit", "1000")
    assert status.code == 0 and listing.code == 0, status.stderr + listing.stderr
    return {
        "status": status.json(),
        "runs_line": next(line for line in listing.stdout.splitlines() if line.split()[0] == str(run_id)),
        "stages": stack.sql("SELECT stage, done_at, summary FROM run_stages WHERE run_id = :r ORDER BY stage", r=run_id),
        "batches": stack.sql(SUMMARY_SQL, r=run_id),
    }


def age(stack: Stack, run_id: int, days: int) -> None:
    """Move a run `days` into the past, as if the operator's clock had moved on."""
    stack.sql(
        """
        UPDATE runs SET created_at = created_at - make_interval(days => :d), started_at = started_at - make_interval(days => :d),
                        finished_at = finished_at - make_interval(days => :d)
        WHERE id = :r
        """,
        r=run_id,
        d=days,
    )


def _ours(doc: dict[str, Any], run_id: int) -> dict[str, Any] | None:
    return next((r for r in doc["runs"] if r["run_id"] == run_id), None)


def test_prune_removes_an_old_runs_detail_in_chunks_and_keeps_its_summary(
    stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    # Given a run with every kind of detail (retried batches, rejected rows, a retry pass), finished 40 days ago
    old = eventful_run(stack, sandbox, source_db, source_schema, workdir)
    retried = stack.cli("retry", str(old), "--wait", "--json")
    assert retried.code == 1, retried.stderr
    age(stack, old, 40)
    # and a recent run of the same data source
    recent_result = stack.cli("start", "--mapping", mapping_file(workdir, source_schema), "--wait", "--json", env={"BATCH_SIZE": "5"})
    assert recent_result.code == 1, recent_result.stderr
    recent = recent_result.json()["run_id"]
    before = detail(stack, old)
    assert all(before.values()), before
    recent_before = detail(stack, recent)
    kept = summary(stack, old)

    # When the operator first asks what would go
    dry = stack.cli("prune", "--older-than", "30d", "--dry-run", "--json")
    assert dry.code == 0, dry.stderr
    assert _ours(dry.json(), old)["removed"] == before  # type: ignore[index]
    assert _ours(dry.json(), recent) is None
    assert detail(stack, old) == before

    # and then prunes, in chunks of 7 rows
    result = stack.cli("prune", "--older-than", "30d", "--chunk-size", "7", "--json")
    assert result.code == 0, result.stderr
    report = _ours(result.json(), old)
    assert report is not None and report["stopped"] is None
    # Then it reports what it removed, which is all the run's detail, removed over many small transactions,
    assert report["removed"] == before
    assert report["chunks"] >= math.ceil(before["audit"] / 7) + math.ceil(before["audit_history"] / 7)
    assert detail(stack, old) == dict.fromkeys(DETAIL_SQL, 0)
    # keeps what status and runs show, the stages' summaries and every batch's counters,
    assert summary(stack, old) == kept
    assert stack.sql("SELECT pruned_at IS NOT NULL AS pruned FROM runs WHERE id = :r", r=old)[0]["pruned"]
    # and leaves the recent run alone.
    assert detail(stack, recent) == recent_before
    assert _ours(result.json(), recent) is None
    # The text form says the same; a second prune finds nothing left to remove.
    again = stack.cli("prune", "--older-than", "30d")
    assert again.code == 0, again.stderr
    assert f"run {old} " not in again.stdout and "run summaries kept" in again.stdout


def test_prune_never_touches_a_paused_run_however_old(
    stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    # Given a run paused by an outage (its plans batch used up every retry), started 60 days ago
    eventful_source(source_db, source_schema)
    with cleared_faults(sandbox):
        sandbox.faults(outage=True, paths=["/data/plans"])
        run_id = stack.start_run("--mapping", mapping_file(workdir, source_schema))
        wait_until(lambda: stack.status(run_id)["state"] == "paused", 60, message="the run to pause")
    age(stack, run_id, 60)
    before = detail(stack, run_id)
    assert before["batch_attempts"] >= 1 and before["batch_payloads"] >= 1
    # When prune removes everything older than a day
    result = stack.cli("prune", "--older-than", "1d", "--json")
    assert result.code == 0, result.stderr
    # Then the paused run is not among the pruned runs and keeps all its detail,
    assert _ours(result.json(), run_id) is None
    assert detail(stack, run_id) == before
    # so resuming it later still sends every row.
    resumed = stack.cli("resume", str(run_id))
    assert resumed.code == 0, resumed.stderr
    plans = stack.wait_for_state(run_id, ("completed_with_errors",))["stages"]["plans"]
    assert plans["accepted"] == len(PLANS) and plans["pending"] == 0


def test_prune_refuses_a_malformed_duration(stack: Stack) -> None:
    bad = stack.cli("prune", "--older-than", "30x")
    assert bad.code == 2 and "like 30d, 12h, 2w" in bad.stderr
    missing = stack.cli("prune")
    assert missing.code == 2 and "--older-than" in missing.stderr
