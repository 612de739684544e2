"""Operator tools with a real worker against the sandbox: dry run, retry, reset, only-changed,
one active run per data source, waiting for GrowPanel's processing, progress display, Flower."""

from __future__ import annotations

import os
import pty
import subprocess
import time
from pathlib import Path

import httpx

from tests.integration.scenarios import CUSTOMERS, INVOICES, PLANS, invoice, ts
from tests.support.services import Database, free_port, wait_until
from tests.support.sources import build_source, execute, mapping_file
from tests.support.stack import SandboxView, Stack, python_cli

BAD_CUSTOMERS = [
    {"id": "c_good", "name": "Good", "created_date": ts("2024-01-01"), "country": "us"},
    {"id": "c_nocountry", "name": "No country", "created_date": ts("2024-01-01"), "country": None},
    {"id": "c_badcountry", "name": "Bad country", "created_date": ts("2024-01-01"), "country": "xx"},
    {"id": "c_gone", "email": "gone@x.test", "created_date": ts("2024-01-01"), "country": "yy"},
]
BAD_INVOICES = [
    invoice("i_good", "c_good", "subscription", "2024-01-01", 9900, "plan_pro", "2024-02-01"),
    invoice("i_of_nocountry", "c_nocountry", "subscription", "2024-01-01", 9900, "plan_pro", "2024-02-01"),
    invoice("i_negative", "c_good", "one-time", "2024-01-05", -10),
]


def _data_posts(view: SandboxView) -> list[dict]:
    return [r for r in view.requests() if r["method"] == "POST" and r["path"].startswith("/data/")]


def test_dry_run_reports_what_the_real_run_records_and_sends_nothing(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    build_source(source_db.url, source_schema, PLANS, BAD_CUSTOMERS, BAD_INVOICES)
    mapping = mapping_file(workdir, source_schema)
    dry = stack.cli("start", "--mapping", mapping, "--dry-run")
    assert dry.code == 0, dry.stderr
    assert _data_posts(sandbox) == []
    out = dry.stdout
    assert "customers: 4 rows, 1 would be sent, 3 invalid, 0 skipped" in out
    assert "invoices: 3 rows, 1 would be sent, 1 invalid, 1 skipped" in out
    assert "country must be an ISO 3166-1 alpha-2 country code  (e.g. c_badcountry, c_gone)" in out
    dry_run_id = stack.sql("SELECT max(id) AS id FROM runs WHERE dry_run")[0]["id"]
    dry_rejected = {(e, i): r["outcome"] for (e, i), r in stack.audit(dry_run_id).items()}
    real = stack.cli("start", "--mapping", mapping, "--wait", "--json")
    assert real.code == 1
    real_rejected = {(e, i): r["outcome"] for (e, i), r in stack.audit(real.json()["run_id"]).items() if r["outcome"] in ("invalid", "skipped")}
    assert dry_rejected == real_rejected
    assert stack.cli("status", str(dry_run_id), "--json").json()["dry_run"] is True


def test_retry_sends_only_the_fixed_rows_and_keeps_history(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    build_source(source_db.url, source_schema, PLANS, BAD_CUSTOMERS, BAD_INVOICES)
    # A `%` in a query must survive the retry pass, which reads the source by id.
    mapping = mapping_file(
        workdir, source_schema, customers=f"SELECT * FROM {source_schema}.customers WHERE coalesce(email, '') NOT LIKE '%@blocked.test'"
    )
    first = stack.cli("start", "--mapping", mapping, "--wait", "--json")
    assert first.code == 1
    run_id = first.json()["run_id"]
    posts_before = len(_data_posts(sandbox))
    # The user fixes two rows, and one bad row disappears from the source
    execute(source_db.url, f"UPDATE {source_schema}.customers SET country = 'de' WHERE id IN ('c_nocountry', 'c_badcountry')")
    execute(source_db.url, f"DELETE FROM {source_schema}.customers WHERE id = 'c_gone'")
    retried = stack.cli("retry", str(run_id), "--wait", "--json")
    assert retried.code == 1, retried.stderr  # i_negative is still invalid
    doc = retried.json()
    assert doc["missing_from_source"] == [{"entity": "customers", "id": "c_gone"}]
    audit = stack.audit(run_id)
    assert audit[("customers", "c_nocountry")]["outcome"] == "inserted"
    assert audit[("customers", "c_badcountry")]["outcome"] == "inserted"
    assert audit[("invoices", "i_of_nocountry")]["outcome"] == "inserted"  # was skipped with its customer
    assert audit[("customers", "c_nocountry")]["passes"] == 2
    assert audit[("customers", "c_nocountry")]["previous_outcome"] == "invalid"
    assert audit[("invoices", "i_of_nocountry")]["previous_outcome"] == "skipped"
    assert audit[("customers", "c_gone")]["outcome"] == "invalid"  # not guessed at
    assert audit[("customers", "c_good")]["passes"] == 1  # accepted rows are not sent again
    history = stack.sql("SELECT external_id, outcome FROM audit_history WHERE run_id = :r ORDER BY external_id", r=run_id)
    assert {(h["external_id"], h["outcome"]) for h in history} >= {("c_nocountry", "invalid"), ("c_badcountry", "invalid"), ("i_of_nocountry", "skipped")}
    # Only the retried rows went out
    new_posts = _data_posts(sandbox)[posts_before:]
    assert sum(p["rows"] for p in new_posts) == 2 + 1  # 2 customers + 1 invoice; i_negative stays local
    # Status reflects the new outcomes, and counts still add up
    customers = doc["stages"]["customers"]
    assert (customers["rows"], customers["accepted"], customers["invalid"]) == (4, 3, 1)


def test_reset_data_source_empties_it_before_the_run(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    mapping = mapping_file(workdir, source_schema)
    assert stack.cli("start", "--mapping", mapping, "--wait").code == 0
    # Something in GrowPanel that the source does not have
    stray = {"id": "stray", "name": "Stray", "created_date": "2020-01-01", "country": "us", "data_source": sandbox.data_source}
    assert sandbox.api("POST", "/data/customers", json=[stray]).status_code == 200
    refused = stack.cli("start", "--mapping", mapping, "--reset-data-source")
    assert refused.code == 3 and "--yes" in refused.stderr
    result = stack.cli("start", "--mapping", mapping, "--reset-data-source", "--yes", "--wait", "--json")
    assert result.code == 0, result.stderr
    assert "resetting data source" in result.stderr
    ids = {obj["id"] for obj in sandbox.ledger()["customers"]}
    assert ids == {"cust_123", "cust_456"}
    assert {r["outcome"] for r in stack.audit(result.json()["run_id"]).values()} == {"inserted"}


def test_only_changed_sends_nothing_unchanged_and_then_only_what_changed(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    mapping = mapping_file(workdir, source_schema)
    assert stack.cli("start", "--mapping", mapping, "--wait").code == 0
    posts = len(_data_posts(sandbox))
    second = stack.cli("start", "--mapping", mapping, "--only-changed", "--wait", "--json")
    assert second.code == 0, second.stderr
    assert len(_data_posts(sandbox)) == posts
    doc = second.json()
    assert all(doc["stages"][s]["by_status"]["unchanged (skipped locally)"] == doc["stages"][s]["rows"] for s in ("plans", "customers", "invoices"))
    audit = stack.audit(doc["run_id"])
    assert {r["outcome"] for r in audit.values()} == {"unchanged"}
    assert all(r["message"].startswith("skipped locally") for r in audit.values())
    execute(source_db.url, f"UPDATE {source_schema}.customers SET name = 'Acme Corp' WHERE id = 'cust_123'")
    execute(source_db.url, f"UPDATE {source_schema}.invoices SET amount_cents = 10900 WHERE id = 'inv_005'")
    third = stack.cli("start", "--mapping", mapping, "--only-changed", "--wait", "--json")
    assert third.code == 0, third.stderr
    new_posts = _data_posts(sandbox)[posts:]
    assert [(p["path"], p["rows"]) for p in new_posts] == [("/data/customers", 1), ("/data/invoices", 1)]
    changed = {k: r["outcome"] for k, r in stack.audit(third.json()["run_id"]).items() if r["outcome"] != "unchanged"}
    assert changed == {("customers", "cust_123"): "updated", ("invoices", "inv_005"): "updated"}


def test_one_active_run_per_data_source(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    mapping = mapping_file(workdir, source_schema)
    sandbox.faults(latency_ms=800)
    run_id = stack.start_run("--mapping", mapping)
    second = stack.cli("start", "--mapping", mapping)
    assert second.code == 4
    assert f"run {run_id} for data source {sandbox.data_source} is running" in second.stderr
    assert f"growpanel-backfill resume {run_id}" in second.stderr and f"growpanel-backfill cancel {run_id}" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    # Another data source runs side by side
    other = stack.start_run("--mapping", mapping, env={"GROWPANEL_DATA_SOURCE_ID": "ds_120", "GROWPANEL_API_KEY": "key_ds_120"})
    assert other != run_id
    sandbox.faults(latency_ms=0)
    stack.wait_for_state(run_id)
    stack.wait_for_state(other)


def test_wait_processing_polls_growpanel_until_done(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    result = stack.cli("start", "--mapping", mapping_file(workdir, source_schema), "--wait-processing", "--json")
    assert result.code == 0, result.stderr
    # It polled until GrowPanel said done, and says so
    assert result.stderr.strip().splitlines()[-1].startswith("GrowPanel processing: done")
    processing = result.json()["growpanel_processing"]
    assert processing["phase"] == "done"
    assert processing["processed_count"] >= 13


def test_progress_shows_bars_on_a_terminal_and_lines_elsewhere(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    run = stack.cli("start", "--mapping", mapping_file(workdir, source_schema), "--wait", "--json")
    assert run.code == 0
    run_id = run.json()["run_id"]
    # Not a terminal: plain lines, one per stage state and one of outcome counts
    assert "plans 3/3 done | customers 2/2 done | invoices 8/8 done" in run.stderr
    assert "inserted 13" in run.stderr
    # A terminal: one bar per stage with rows done / rows, rows/s and an ETA
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [*python_cli(), "status", str(run_id), "--watch"], env={**os.environ, **stack.env, "COLUMNS": "120"},
        stdin=secondary, stdout=secondary, stderr=secondary, cwd=workdir,
    )
    os.close(secondary)
    output = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    process.wait(30)
    os.close(primary)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-2000:]
    for stage, n in (("plans", 3), ("customers", 2), ("invoices", 8)):
        assert f"{n}/{n}" in text and stage in text
    assert "rows/s" in text and "ETA" in text and "━" in text


def test_flower_shows_batches_by_name_with_ids_only(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    port = free_port()
    flower = subprocess.Popen(
        [*python_cli(), "flower", "--port", str(port)],
        env={**os.environ, **stack.env, "FLOWER_BASIC_AUTH": "ops:secret"},
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{url}/healthcheck"), 60, message="Flower to start")
        assert httpx.get(f"{url}/api/tasks").status_code == 401  # basic auth on
        # Flower lists workers it has heard events from: once ours is there, task events are flowing.
        wait_until(lambda: _dashboard_workers(url), 60, interval=0.5, message="Flower to receive worker events")
        build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
        run = stack.cli("start", "--mapping", mapping_file(workdir, source_schema), "--wait", "--json")
        run_id = run.json()["run_id"]

        seen: list[dict] = []

        def tasks() -> dict:
            found = httpx.get(f"{url}/api/tasks", auth=("ops", "secret"), timeout=10).json()
            seen[:] = [found]
            names = {t.get("name") for t in found.values()}
            return found if f"post_batch invoices #1 of run {run_id}" in names else {}

        try:
            found = wait_until(tasks, 60, interval=0.5, message="Flower to show the run's tasks")
        except AssertionError:
            raise AssertionError(f"Flower shows {[(t.get('name'), t.get('state')) for t in seen[0].values()] if seen else None}") from None
        ours = [t for t in found.values() if t.get("name", "").endswith(f"of run {run_id}")]
        assert {t["name"] for t in ours} >= {f"post_batch plans #1 of run {run_id}", f"post_batch customers #1 of run {run_id}"}
        for task in ours:
            assert "Acme" not in str(task) and "billing@acme.test" not in str(task)
            assert task["args"].startswith("[") and f", {run_id}, " in task["args"]
        metrics = httpx.get(f"{url}/metrics", timeout=10)
        assert metrics.status_code == 200 and "flower_events_total" in metrics.text
    finally:
        os.killpg(flower.pid, 15)
        flower.wait(15)


def _dashboard_workers(url: str) -> list:
    response = httpx.get(f"{url}/workers?json=1", auth=("ops", "secret"), timeout=5)
    return response.json().get("data", []) if response.status_code == 200 else []


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
