"""Recovery promises at the DEFAULT settings: a killed worker, a request slower than its lease, a worker
whose clock is wrong, and production that never takes a posting slot.

These tests use the settings a user gets from the README (LEASE_SECONDS=90, SWEEP_INTERVAL=15,
QUEUE_TIMEOUT=600...), not the fast test policies, where the promise is stated for the defaults.
"""

from __future__ import annotations

import pytest

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import redis

from demo.seed import SeedShape, seed
from tests.integration.promise import check_promise
from backfill.settings import Settings
from tests.support.services import Database, wait_until
from tests.support.sources import mapping_file
from tests.support.stack import SandboxView, Stack

# The defaults (backfill.settings, the README's table) of every timing the tests' FAST policies shorten.
_SHORTENED = ("retry_backoff", "retry_jitter", "lease_seconds", "producer_lease_seconds", "sweep_interval", "queue_timeout",
              "http_timeout", "http_connect_timeout", "batch_time_budget", "max_countdown")


def _default(name: str) -> str:
    value = Settings.model_fields[name].get_default(call_default_factory=True)
    return ",".join(f"{v:g}" for v in value) if isinstance(value, list) else f"{value:g}"


DEFAULTS = {name.upper(): _default(name) for name in _SHORTENED}
SHAPE = SeedShape(customers=60, years=2, whales=1, whale_invoices=200, bad_rows=True)


def _held_messages(broker_url: str) -> list[int]:
    """Batch ids of the `post_batch` messages delivered to a worker and not acknowledged (kombu's
    Redis transport keeps them in the `unacked` hash until the worker acks them)."""
    client = redis.Redis.from_url(broker_url)
    try:
        ids = []
        for raw in client.hvals("unacked"):
            message = orjson.loads(raw)[0]
            if message["headers"]["task"] == "post_batch":
                ids.append(int(orjson.loads(base64.b64decode(message["body"]))[0][0]))
        return ids
    finally:
        client.close()


@pytest.mark.slow
def test_a_killed_worker_holding_prefetched_messages_is_recovered_within_lease_plus_sweep(
    make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    # Given a fleet of two workers at the default settings, and an API slow enough that the first
    # worker holds every slot's batch (and retry countdowns) when it dies
    stack: Stack = make_stack(**DEFAULTS)
    seed(source_db.url, source_schema, SHAPE)
    mapping = mapping_file(workdir, source_schema)
    victim = stack.start_worker(concurrency=4)
    # Slow answers keep its four slots busy; 5xx answers leave it holding retry messages (countdowns
    # it received and has not run yet) besides the batches it is posting.
    sandbox.faults(latency_ms=1500, error_rate=0.4)
    run_id = stack.start_run("--mapping", mapping)
    broker = stack.env["CELERY_BROKER_URL"]
    # Queued batches the victim held while all its slots were busy: prefetched with no slot to run them.
    # Killed, it would leave them to QUEUE_TIMEOUT (600 s); worker_disable_prefetch keeps this at zero.
    prefetched: set[int] = set()

    def holding() -> tuple[list[int], set[int]] | None:
        held = _held_messages(broker)
        states = {r["id"]: r["state"] for r in stack.sql("SELECT id, state FROM batches WHERE run_id = :r", r=run_id)}
        running = {i for i, state in states.items() if state == "running"}
        if len(running) >= 4:
            prefetched.update(i for i in held if states.get(i) == "queued")
        # Every slot is busy: four batches running (the victim is the only worker, so they are its
        # leases) and four task messages it has not acknowledged. A running batch need not be its
        # slot's message: after one batch the slot takes the next ready one itself, with no message.
        return (held, running) if len(running) >= 4 and len(set(held)) >= 4 else None

    held, running = wait_until(holding, 90, interval=0.2, message="the victim to hold a batch in every slot")
    survivor = stack.start_worker(concurrency=4)
    # When it is killed with SIGKILL
    killed_at = time.monotonic()
    victim.kill(signal.SIGKILL)
    sandbox.faults(latency_ms=0, error_rate=0)
    # Then the run finishes within LEASE_SECONDS + SWEEP_INTERVAL (+ the time to post what is left)
    doc = stack.wait_for_state(run_id, timeout=90 + 15 + 60)
    recovery = time.monotonic() - killed_at
    print(f"\nrecovery after kill -9: {recovery:.1f} s; messages held at the kill: {len(held)}, batches running: {len(running)}")
    assert doc["state"] == "completed_with_errors"
    assert recovery <= 90 + 15 + 20, f"the run took {recovery:.0f} s to finish after the kill"
    assert not prefetched, f"the victim held queued batches it had no slot for: {sorted(prefetched)}"
    check_promise(stack, sandbox, run_id, source_db.url, source_schema)
    assert survivor.process.poll() is None


@pytest.mark.slow
def test_a_request_slower_than_its_lease_is_posted_once_and_in_order(
    make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    # Given leases of 2 s, a sweeper every 0.5 s, two workers, and an API that answers after 3 s
    # (httpx's timeout is per read, so nothing times out), with a customer whose invoices need a
    # chain of batches
    stack: Stack = make_stack(LEASE_SECONDS="2", HTTP_TIMEOUT="30")
    seed(source_db.url, source_schema, SeedShape(customers=12, years=1, whales=1, whale_invoices=160, bad_rows=False))
    mapping = mapping_file(workdir, source_schema)
    stack.start_worker(concurrency=4)
    stack.start_worker(concurrency=4)
    sandbox.faults(latency_ms=3000)
    # When the run goes through
    run_id = stack.start_run("--mapping", mapping)
    doc = stack.wait_for_state(run_id, timeout=150)
    sandbox.faults(latency_ms=0)
    # Then no batch was handed to a second worker while its request was in flight: one request per
    # batch, never a re-queue, and the chain of the big customer arrived in order
    assert doc["state"] == "succeeded"
    batches = stack.sql("SELECT id, stage, attempts, deliveries FROM batches WHERE run_id = :r", r=run_id)
    assert {(b["attempts"], b["deliveries"]) for b in batches} == {(1, 0)}
    requests = [r for r in sandbox.requests() if r["method"] == "POST"]
    assert len(requests) == len(batches), f"{len(requests)} requests for {len(batches)} batches"
    slow = stack.sql("SELECT min(a.latency_ms) AS ms FROM batch_attempts a JOIN batches b ON b.id = a.batch_id WHERE b.run_id = :r", r=run_id)
    assert slow[0]["ms"] > 2000, "the requests did not outlive the lease: the test proves nothing"
    assert stack.sql("SELECT count(*) AS n FROM batches WHERE run_id = :r AND depends_on IS NOT NULL", r=run_id)[0]["n"] >= 2
    check_promise(stack, sandbox, run_id, source_db.url, source_schema)


def _faketime_library() -> str:
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1")) + sorted(Path("/usr/lib").glob("faketime/libfaketimeMT.so.1"))
    assert found, "libfaketime is required for the clock test: apt-get install faketime"
    return str(found[0])


def test_a_worker_whose_clock_runs_15_minutes_fast_retries_within_the_default_time_budget(
    make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    # Given the default time budget (900 s) and a worker whose clock runs 15 minutes fast (libfaketime)
    stack: Stack = make_stack(BATCH_TIME_BUDGET="900")
    seed(source_db.url, source_schema, SeedShape(customers=30, years=1, whales=1, whale_invoices=120, bad_rows=False))
    mapping = mapping_file(workdir, source_schema)
    fast_clock = {"LD_PRELOAD": _faketime_library(), "FAKETIME": "+15m", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    probe = subprocess.run(
        [sys.executable, "-c", "import time; print(time.time())"], env={**os.environ, **fast_clock}, capture_output=True, text=True, check=True
    )
    assert 880 < float(probe.stdout) - time.time() < 920, "the worker's clock is not offset: the test proves nothing"
    stack.start_worker(concurrency=4, **fast_clock)
    # When every other answer is a 5xx
    sandbox.faults(error_rate=0.5)
    run_id = stack.start_run("--mapping", mapping)
    # Then the batches are retried (the budget is measured on the database's clock), and the run ends
    doc = stack.wait_for_state(run_id, timeout=120)
    sandbox.faults(error_rate=0)
    assert doc["state"] == "succeeded"
    retried = stack.sql("SELECT count(*) AS n FROM batches WHERE run_id = :r AND attempts > 1", r=run_id)[0]["n"]
    assert retried > 0, "no batch was retried: the test proves nothing"
    check_promise(stack, sandbox, run_id, source_db.url, source_schema)


def test_a_query_slower_than_the_producer_lease_is_read_by_one_producer(
    make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    # Given a producer lease of 4 s and a customers query that takes 7 s to return its first row
    stack: Stack = make_stack()
    assert stack.env["PRODUCER_LEASE_SECONDS"] == "4"
    seed(source_db.url, source_schema, SeedShape(customers=20, years=1, whales=0, whale_invoices=0, bad_rows=False))
    slow = f"WITH slow AS (SELECT pg_sleep(7)) SELECT c.* FROM {source_schema}.customers c CROSS JOIN slow"
    mapping = mapping_file(workdir, source_schema, customers=slow)
    worker = stack.start_worker(concurrency=2)
    # When the run goes through, with the sweeper looking for dead producers every 0.5 s
    run_id = stack.start_run("--mapping", mapping)
    doc = stack.wait_for_state(run_id, timeout=90)
    # Then the lease was kept alive by time: one producer read the source, nobody started a second
    assert doc["state"] == "succeeded"
    log = worker.log()
    assert log.count("'started'") == 1, "a second producer was started for a live one"
    assert "'producers': 1" not in log
    check_promise(stack, sandbox, run_id, source_db.url, source_schema)


def test_a_worker_shutting_down_hands_its_producer_over_at_a_checkpoint(
    make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    # Given a producer lease of 60 s, and a worker producing a run whose customers query takes 6 s
    stack: Stack = make_stack(PRODUCER_LEASE_SECONDS="60")
    seed(source_db.url, source_schema, SeedShape(customers=20, years=1, whales=0, whale_invoices=0, bad_rows=False))
    slow = f"WITH slow AS (SELECT pg_sleep(6)) SELECT c.* FROM {source_schema}.customers c CROSS JOIN slow"
    mapping = mapping_file(workdir, source_schema, customers=slow)
    leaving = stack.start_worker(concurrency=2)
    run_id = stack.start_run("--mapping", mapping)
    wait_until(
        lambda: stack.sql("SELECT 1 FROM run_stages WHERE run_id = :r AND stage = 'plans' AND produced", r=run_id),
        30,
        message="the producer to be reading customers",
    )
    staying = stack.start_worker(concurrency=2)
    # When it is asked to stop (a deploy's SIGTERM) while its producer waits for the source
    stopped_at = time.monotonic()
    os.killpg(leaving.process.pid, signal.SIGTERM)
    leaving.process.wait(30)
    # Then the producer stopped at its next checkpoint and another worker took production over at
    # once, not after the 60 s lease
    doc = stack.wait_for_state(run_id, timeout=45)
    assert doc["state"] == "succeeded"
    assert time.monotonic() - stopped_at < 40
    assert "handed over" in leaving.log()
    assert "'started'" in staying.log()
    check_promise(stack, sandbox, run_id, source_db.url, source_schema)
