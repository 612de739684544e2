"""Every fault of a long backfill, with real worker processes against the sandbox's fault injection.

Each test ends by checking the promise (tests/integration/promise.py): every source row has exactly one
final outcome, GrowPanel holds every accepted row once, and no customer's invoices arrived out of order.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import orjson
import redis

from demo.seed import SeedShape, seed
from backfill.settings import load_settings
from tests.integration.promise import check_promise
from tests.support.services import Database, RedisServer, WebhookReceiver, wait_until
from tests.support.sources import mapping_file
from tests.support.stack import SandboxView, Stack, python_cli
from workers.celery_app import app, use_settings

SMALL = SeedShape(customers=40, years=2, whales=1, whale_invoices=200, bad_rows=True)
MANY_RETRIES = ",".join(["0.02"] * 14)


def _seeded(source_db: Database, schema: str, workdir: Path, shape: SeedShape = SMALL) -> str:
    seed(source_db.url, schema, shape)
    return mapping_file(workdir, schema)


def test_5xx_and_lost_responses_are_retried_to_one_outcome_per_row(make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    stack: Stack = make_stack(RETRY_BACKOFF=MANY_RETRIES)
    stack.start_worker(concurrency=8)
    mapping = _seeded(source_db, source_schema, workdir)
    # Given an API that fails 30 % of requests before applying them and loses 10 % of answers after applying
    sandbox.faults(error_rate=0.3, lost_rate=0.1, lost_mode="either", seed=11)
    result = stack.cli("start", "--mapping", mapping, "--wait", "--json")
    sandbox.faults(error_rate=0, lost_rate=0)
    # Then the run completes (the sample's bad rows make it exit 1), and the promise holds
    assert result.code == 1, result.stderr
    run_id = result.json()["run_id"]
    audit = check_promise(stack, sandbox, run_id, source_db.url, source_schema)
    retried = stack.sql("SELECT count(*) AS n FROM batches WHERE run_id = :r AND attempts > 1", r=run_id)[0]["n"]
    assert retried > 0
    statuses = {r["http_status"] for r in stack.sql("SELECT DISTINCT http_status FROM batch_attempts a JOIN batches b ON b.id = a.batch_id WHERE b.run_id = :r", r=run_id)}
    assert statuses & {500, 502, 503}
    # A lost answer was retried: the API had applied the batch, and the final answer says so.
    assert any(row["outcome"] == "unchanged" for row in audit.values())
    assert all(row["attempts"] >= 1 for row in audit.values() if row["http_status"])


def test_429_waits_retry_after_without_using_attempts(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    mapping = _seeded(source_db, source_schema, workdir, SeedShape(customers=12, years=1, whales=0, bad_rows=False))
    sandbox.faults(throttle_rate=0.5, throttle_retry_after=1)
    result = stack.cli("start", "--mapping", mapping, "--wait", "--json", env={"BATCH_SIZE": "20"})
    sandbox.faults(throttle_rate=0)
    assert result.code == 0, result.stderr
    run_id = result.json()["run_id"]
    check_promise(stack, sandbox, run_id, source_db.url, source_schema)
    batches = stack.sql("SELECT id, attempts, throttled FROM batches WHERE run_id = :r", r=run_id)
    assert any(b["throttled"] > 0 for b in batches)
    # Being rate limited is not failing: every batch succeeded on its first non-429 answer.
    assert all(b["attempts"] == 1 for b in batches)
    # Each throttled batch waited at least Retry-After before its next request.
    attempts = stack.sql(
        "SELECT a.batch_id, a.started_at, a.http_status FROM batch_attempts a JOIN batches b ON b.id = a.batch_id "
        "WHERE b.run_id = :r ORDER BY a.batch_id, a.started_at",
        r=run_id,
    )
    gaps = [
        (later["started_at"] - earlier["started_at"]).total_seconds()
        for earlier, later in zip(attempts, attempts[1:])
        if earlier["batch_id"] == later["batch_id"] and earlier["http_status"] == 429
    ]
    assert gaps and min(gaps) >= 0.95


def test_rate_limiting_past_the_time_budget_pauses_the_run(make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    stack: Stack = make_stack(BATCH_TIME_BUDGET="2")
    stack.start_worker(concurrency=4)
    mapping = _seeded(source_db, source_schema, workdir, SeedShape(customers=5, years=1, whales=0, bad_rows=False))
    sandbox.faults(throttle_rate=1.0, throttle_retry_after=1)
    result = stack.cli("start", "--mapping", mapping, "--wait", "--json")
    sandbox.faults(throttle_rate=0)
    assert result.code == 2
    doc = result.json()
    assert doc["state"] == "paused"
    assert "time budget of 2 s spent" in doc["paused_reason"]
    assert doc["stages"]["customers"]["state"] == "waiting"
    assert doc["stages"]["customers"]["accepted"] == 0


def test_413_splits_batches_in_halves_until_they_fit(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    mapping = _seeded(source_db, source_schema, workdir, SeedShape(customers=45, years=1, whales=0, bad_rows=False))
    sandbox.faults(max_batch=12)
    result = stack.cli("start", "--mapping", mapping, "--wait", "--json", env={"BATCH_SIZE": "45"})
    sandbox.faults(max_batch=1000)
    assert result.code == 0, result.stderr
    run_id = result.json()["run_id"]
    check_promise(stack, sandbox, run_id, source_db.url, source_schema)
    batches = stack.sql("SELECT seq, part, state, rows FROM batches WHERE run_id = :r AND stage = 'customers' ORDER BY seq, part", r=run_id)
    # 45 customers in one batch: 413, halves of 22/23: 413 again, quarters of 11/12 fit.
    assert [(b["part"], b["state"]) for b in batches] == [
        ("", "split"), ("0", "split"), ("00", "done"), ("01", "done"), ("1", "split"), ("10", "done"), ("11", "done")
    ]
    assert sum(b["rows"] for b in batches if b["state"] == "done") == 45
    posts = [r for r in sandbox.requests() if r["path"] == "/data/customers"]
    assert [r["status"] for r in posts].count(413) == 3
    assert sorted(r["rows"] for r in posts if r["status"] == 200) == [11, 11, 11, 12]


def test_a_refused_key_pauses_the_run_at_once_and_resume_finishes_it(make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    hook = WebhookReceiver()
    try:
        stack: Stack = make_stack(ALERT_WEBHOOK_URL=hook.url)
        ds = sandbox.data_source
        # Given workers holding a wrong key for this data source
        bad = stack.start_worker(concurrency=4, GROWPANEL_API_KEY="not-the-key", GROWPANEL_API_KEYS=f"{ds}=not-the-key")
        mapping = _seeded(source_db, source_schema, workdir)
        result = stack.cli("start", "--mapping", mapping, "--wait", "--json")
        # Then the run pauses on the first answer, says why, and marks no row
        assert result.code == 2
        doc = result.json()
        assert doc["state"] == "paused"
        assert "HTTP 401" in doc["paused_reason"] and "key" in doc["paused_reason"].lower()
        assert "not-the-key" not in result.stdout + result.stderr + bad.log()
        assert stack.sql("SELECT count(*) AS n FROM audit WHERE run_id = :r AND outcome <> 'invalid'", r=doc["run_id"])[0]["n"] == 0
        assert len([r for r in sandbox.requests() if r["status"] == 401]) <= 4
        wait_until(lambda: hook.received, 10, message="the alert webhook")
        assert hook.received[0]["run_id"] == doc["run_id"] and "401" in hook.received[0]["error"]
        assert "ERROR" in bad.log() and f"run {doc['run_id']} paused" in bad.log()
        # When the key is fixed and the run resumed
        bad.stop()
        stack.start_worker(concurrency=4)
        resumed = stack.cli("resume", str(doc["run_id"]), "--wait", "--json")
        assert resumed.code == 1, resumed.stderr
        check_promise(stack, sandbox, doc["run_id"], source_db.url, source_schema)
    finally:
        hook.close()


def test_an_outage_longer_than_the_retries_pauses_then_resume_completes(make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    hook = WebhookReceiver()
    try:
        stack: Stack = make_stack(RETRY_BACKOFF="0.05,0.1,0.2", ALERT_WEBHOOK_URL=hook.url)
        worker = stack.start_worker(concurrency=4)
        mapping = _seeded(source_db, source_schema, workdir)
        sandbox.faults(outage=True)
        result = stack.cli("start", "--mapping", mapping, "--wait", "--json")
        assert result.code == 2
        doc = result.json()
        run_id = doc["run_id"]
        assert doc["state"] == "paused" and "gave up after 4 attempts" in doc["paused_reason"]
        # Nothing was marked done that was not answered, and no later stage started.
        assert stack.sql("SELECT count(*) AS n FROM batches WHERE run_id = :r AND state = 'done'", r=run_id)[0]["n"] == 0
        assert stack.sql("SELECT count(*) AS n FROM batches WHERE run_id = :r AND stage <> 'plans' AND state <> 'pending'", r=run_id)[0]["n"] == 0
        assert stack.sql("SELECT count(*) AS n FROM audit WHERE run_id = :r", r=run_id)[0]["n"] == 0
        failed = stack.sql("SELECT seq, last_error FROM batches WHERE run_id = :r AND state = 'failed'", r=run_id)
        assert failed and "HTTP 503" in failed[0]["last_error"]
        alert_line = f"run {run_id} paused (stage plans, batch plans #{failed[0]['seq']} of run {run_id}"
        assert alert_line in worker.log()
        wait_until(lambda: hook.received, 10, message="the alert webhook")
        assert hook.received[0]["stage"] == "plans" and hook.received[0]["batch"] == f"plans #{failed[0]['seq']} of run {run_id}"
        # After the API is back, resume completes the run
        sandbox.faults(outage=False)
        resumed = stack.cli("resume", str(run_id), "--wait", "--json")
        assert resumed.code == 1, resumed.stderr
        check_promise(stack, sandbox, run_id, source_db.url, source_schema)
    finally:
        hook.close()


def test_a_worker_killed_mid_batch_is_finished_by_another(make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    stack: Stack = make_stack()
    victim = stack.start_worker(concurrency=4)
    mapping = _seeded(source_db, source_schema, workdir)
    sandbox.faults(latency_ms=400)
    run_id = stack.start_run("--mapping", mapping)
    # When the worker is SIGKILLed while it holds batches
    owner = wait_until(
        lambda: stack.sql("SELECT lease_owner FROM batches WHERE run_id = :r AND state = 'running' LIMIT 1", r=run_id),
        30,
        message="a batch being posted",
    )[0]["lease_owner"]
    held = {r["id"] for r in stack.sql("SELECT id FROM batches WHERE run_id = :r AND state = 'running'", r=run_id)}
    victim.kill(signal.SIGKILL)
    sandbox.faults(latency_ms=0)
    stack.start_worker(concurrency=4)
    # Then another worker finishes them, and every row still has exactly one outcome
    doc = stack.wait_for_state(run_id, timeout=90)
    assert doc["state"] == "completed_with_errors"
    check_promise(stack, sandbox, run_id, source_db.url, source_schema)
    finished = stack.sql("SELECT id, deliveries, state FROM batches WHERE id = ANY(:ids)", ids=list(held))
    assert all(b["state"] == "done" for b in finished)
    assert any(b["deliveries"] >= 1 for b in finished), f"the sweeper did not re-queue {owner}'s batches"


def test_redis_restarted_empty_then_resume_completes(make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    redis = RedisServer()
    redis.start()
    try:
        stack: Stack = make_stack(redis=redis)
        stack.start_worker(concurrency=4)
        mapping = _seeded(source_db, source_schema, workdir)
        sandbox.faults(latency_ms=300)
        run_id = stack.start_run("--mapping", mapping)
        wait_until(
            lambda: stack.sql("SELECT 1 FROM batches WHERE run_id = :r AND stage = 'invoices' AND state = 'done' LIMIT 1", r=run_id),
            60,
            message="invoices being posted",
        )
        # When Redis restarts empty in the middle of the run (queued messages are gone)
        redis.stop()
        redis.start()
        sandbox.faults(latency_ms=0)
        resumed = stack.cli("resume", str(run_id))
        assert resumed.code == 0, resumed.stderr
        assert "batches queued again" in resumed.stdout
        doc = stack.wait_for_state(run_id, timeout=90)
        assert doc["state"] == "completed_with_errors"
        check_promise(stack, sandbox, run_id, source_db.url, source_schema)
    finally:
        redis.cleanup()


def test_lost_messages_are_requeued_by_the_periodic_check_without_resume(make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    redis = RedisServer()
    redis.start()
    try:
        stack: Stack = make_stack(redis=redis, QUEUE_TIMEOUT="3")
        stack.start_worker(concurrency=4)
        mapping = _seeded(source_db, source_schema, workdir)
        sandbox.faults(latency_ms=300)
        run_id = stack.start_run("--mapping", mapping)
        # Messages really waiting in Redis (not only prefetched by the worker) are about to be lost.
        broker = redis.client()
        wait_until(
            lambda: stack.sql("SELECT 1 FROM batches WHERE run_id = :r AND stage = 'invoices' AND state = 'queued' LIMIT 1", r=run_id)
            and broker.llen("growpanel.batches") > 0,
            60,
            interval=0.01,
            message="invoice batches waiting in the queue",
        )
        broker.flushall()
        sandbox.faults(latency_ms=0)
        doc = stack.wait_for_state(run_id, timeout=90)
        assert doc["state"] == "completed_with_errors"
        check_promise(stack, sandbox, run_id, source_db.url, source_schema)
        assert "sweep recovered" in stack.logs()
    finally:
        redis.cleanup()


def test_a_producer_killed_mid_stage_resumes_without_duplicating_batches(make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    stack: Stack = make_stack(BATCH_SIZE="20")
    victim = stack.start_worker(concurrency=2)
    mapping = _seeded(source_db, source_schema, workdir, SeedShape(customers=400, years=3, whales=2, whale_invoices=900, bad_rows=True))
    sandbox.faults(latency_ms=50)
    run_id = stack.start_run("--mapping", mapping)
    # When the worker running the producer dies while the invoices stage is half read
    wait_until(
        lambda: stack.sql("SELECT 1 FROM run_stages WHERE run_id = :r AND stage = 'invoices' AND rows_read > 0 AND NOT produced", r=run_id),
        60,
        interval=0.01,
        message="the producer in the middle of the invoices",
    )
    victim.kill(signal.SIGKILL)
    read_before = stack.sql("SELECT rows_read FROM run_stages WHERE run_id = :r AND stage = 'invoices'", r=run_id)[0]["rows_read"]
    sandbox.faults(latency_ms=0)
    stack.start_worker(concurrency=8)
    resumed = stack.cli("resume", str(run_id))
    assert resumed.code == 0, resumed.stderr
    doc = stack.wait_for_state(run_id, timeout=120)
    assert doc["state"] == "completed_with_errors"
    # Then the producer continued after its last checkpoint: positions are unique and contiguous,
    # every invoice is in exactly one batch, and the promise holds.
    assert 0 < read_before < doc["stages"]["invoices"]["rows"]
    seqs = [r["seq"] for r in stack.sql("SELECT seq FROM batches WHERE run_id = :r AND stage = 'invoices' AND part = '' ORDER BY seq", r=run_id)]
    assert seqs == list(range(1, len(seqs) + 1))
    manifests = stack.sql("SELECT manifest FROM batches WHERE run_id = :r AND stage = 'invoices' AND part = ''", r=run_id)
    ids = [entry[0] for m in manifests for entry in orjson.loads(m["manifest"])]
    assert len(ids) == len(set(ids)) == doc["stages"]["invoices"]["rows"]
    check_promise(stack, sandbox, run_id, source_db.url, source_schema)


def test_two_resumes_at_once_queue_each_batch_once(make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    stack: Stack = make_stack(RETRY_BACKOFF="0.05", MAX_IN_FLIGHT="16")
    worker = stack.start_worker(concurrency=4)
    mapping = _seeded(source_db, source_schema, workdir)
    # A run paused by an outage, with no worker running: the queue is what the resumes publish
    sandbox.faults(outage=True)
    run_id = stack.start_run("--mapping", mapping)
    stack.wait_for_state(run_id, states=("paused",), timeout=60)
    worker.stop()
    sandbox.faults(outage=False)
    client = redis.Redis.from_url(stack.env["CELERY_BROKER_URL"])
    client.delete("growpanel.batches", "growpanel.produce")
    calls = [
        subprocess.Popen([*python_cli(), "resume", str(run_id)], env={**os.environ, **stack.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [c.communicate(timeout=60) for c in calls]
    assert all(c.returncode == 0 for c in calls), outputs
    messages = [orjson.loads(m) for m in client.lrange("growpanel.batches", 0, -1)]
    batch_ids = [orjson.loads(base64.b64decode(m["body"]))[0][0] for m in messages]
    assert batch_ids, "the resumes queued nothing"
    assert len(batch_ids) == len(set(batch_ids)), "a batch was queued twice"
    queued = {r["id"] for r in stack.sql("SELECT id FROM batches WHERE run_id = :r AND state = 'queued'", r=run_id)}
    assert set(batch_ids) == queued
    # And a message for a batch that is already done is not posted again
    stack.start_worker(concurrency=4)
    doc = stack.wait_for_state(run_id, timeout=90)
    assert doc["state"] == "completed_with_errors"
    done = stack.sql("SELECT id, run_id, stage, seq FROM batches WHERE run_id = :r AND state = 'done' AND stage = 'plans' LIMIT 1", r=run_id)[0]
    posts_before = len(sandbox.requests())
    use_settings(load_settings(celery_broker_url=stack.env["CELERY_BROKER_URL"], database_url=stack.env["DATABASE_URL"]))
    app.send_task("post_batch", args=[done["id"], done["run_id"], done["stage"], done["seq"], ""], queue="growpanel.batches")
    wait_until(lambda: "'duplicate'" in stack.logs(), 20, message="the duplicate to be dropped")
    assert len(sandbox.requests()) == posts_before
    check_promise(stack, sandbox, run_id, source_db.url, source_schema)


def test_cancel_stops_queueing_and_resume_picks_it_up(make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    stack: Stack = make_stack(MAX_IN_FLIGHT="2", BATCH_SIZE="20")
    stack.start_worker(concurrency=4)
    mapping = _seeded(source_db, source_schema, workdir)
    sandbox.faults(latency_ms=400)
    run_id = stack.start_run("--mapping", mapping)
    wait_until(lambda: stack.sql("SELECT 1 FROM batches WHERE run_id = :r AND stage = 'invoices' AND state = 'done' LIMIT 1", r=run_id), 60, message="invoices posted")
    cancelled = stack.cli("cancel", str(run_id))
    assert cancelled.code == 0, cancelled.stderr
    # In-flight batches finish; nothing new is queued or posted after that.
    wait_until(lambda: not stack.sql("SELECT 1 FROM batches WHERE run_id = :r AND state IN ('running', 'queued', 'retry_wait')", r=run_id), 30, message="in-flight batches to finish")
    assert stack.status(run_id)["state"] == "cancelled"
    posted = len(sandbox.requests())
    time.sleep(1.5)  # a quiet period: a cancelled run must stay quiet (nothing to poll for)
    assert len(sandbox.requests()) == posted
    assert stack.status(run_id)["stages"]["invoices"]["pending"] > 0
    # `retry` of a cancelled run is refused (a retry pass reads only the rejected rows: the rows this
    # run never read would never be read), with one line and the state-mismatch exit code
    refused = stack.cli("retry", str(run_id))
    assert refused.code == 4, refused.stderr
    assert refused.stderr.strip().count("\n") == 0 and "retry works only on a succeeded or completed_with_errors run" in refused.stderr
    assert stack.status(run_id)["state"] == "cancelled"
    assert not stack.sql("SELECT 1 FROM retry_targets WHERE run_id = :r", r=run_id)
    sandbox.faults(latency_ms=0)
    resumed = stack.cli("resume", str(run_id), "--wait")
    assert resumed.code == 1, resumed.stderr
    check_promise(stack, sandbox, run_id, source_db.url, source_schema)


def test_max_rps_is_one_budget_shared_by_every_worker(make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    # Given two worker processes and an API that allows 8 requests per second per key
    stack: Stack = make_stack(GROWPANEL_MAX_RPS="8", BATCH_SIZE="20")
    stack.start_worker(concurrency=4)
    stack.start_worker(concurrency=4)
    mapping = _seeded(source_db, source_schema, workdir, SeedShape(customers=80, years=1, whales=0, bad_rows=False))
    sandbox.faults(rate_limit=8)
    result = stack.cli("start", "--mapping", mapping, "--wait", "--json")
    sandbox.faults(rate_limit=None)
    assert result.code == 0, result.stderr
    # Then the fleet together stayed under it: no 429, and no second with more than 8 requests
    posts = [r for r in sandbox.requests() if r["path"].startswith("/data/")]
    assert len(posts) >= 20
    assert all(r["status"] == 200 for r in posts), [r["status"] for r in posts if r["status"] != 200]
    times = sorted(datetime.fromisoformat(r["arrived_at"].replace("Z", "+00:00")).timestamp() for r in posts)
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 9  # 8 per second, plus one for where a window's edge falls
    # and both workers took part (the budget was shared, not one worker doing all the work)
    assert all("Task post_batch" in w.log() and "succeeded in" in w.log() for w in stack.workers)
