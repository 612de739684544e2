"""Guard: production never takes a posting slot (issue 13). A worker started with `--concurrency N`
keeps N requests in flight while a producer runs in it; a `--queues growpanel.produce` worker still
produces on its own."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from tests.support.services import Database, wait_until
from tests.support.sources import build_source, mapping_file
from tests.support.stack import SandboxView, Stack

SLEEP = 8  # seconds the customers query takes to return its first row


def _max_in_flight(requests: list[dict]) -> int:
    """Most requests the sandbox was serving at one instant."""
    edges = []
    for r in requests:
        start = datetime.fromisoformat(r["arrived_at"])
        edges += [(start, 1), (start + timedelta(milliseconds=r["duration_ms"]), -1)]
    level = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        level += step
        peak = max(peak, level)
    return peak


def test_a_worker_keeps_every_slot_posting_while_it_produces(
    make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    # Given one worker with two slots, plans enough for a dozen batches, and a customers query that
    # keeps the producer busy (in the same worker) for the whole plans stage
    plans = [{"id": f"p{n}", "name": f"Plan {n}", "billing_freq": "month", "billing_freq_count": 1, "currency": "USD"} for n in range(600)]
    customers = [{"id": "c1", "name": "One", "email": "one@example.com", "created_date": "2024-01-01T00:00:00Z"}]
    build_source(source_db.url, source_schema, plans=plans, customers=customers)
    mapping = mapping_file(
        workdir,
        source_schema,
        customers=f"SELECT c.* FROM {source_schema}.customers c CROSS JOIN (SELECT pg_sleep({SLEEP})) AS slow",
    )
    stack: Stack = make_stack(PRODUCER_LEASE_SECONDS="60")
    stack.start_worker(concurrency=2)
    sandbox.faults(latency_ms=700)
    # When the run starts
    run_id = stack.start_run("--mapping", mapping)
    wait_until(
        lambda: stack.sql("SELECT 1 FROM run_stages WHERE run_id = :r AND stage = 'customers' AND produced", r=run_id),
        SLEEP + 30,
        message="the customers stage to be produced",
    )
    produced_at = stack.sql("SELECT produced_at FROM run_stages WHERE run_id = :r AND stage = 'customers'", r=run_id)[0]["produced_at"]
    plan_requests = [r for r in sandbox.requests() if r["path"] == "/data/plans"]
    sandbox.faults(latency_ms=0)
    stack.wait_for_state(run_id, timeout=60)
    # Then while the producer was still reading, both slots were posting plans
    assert len(plan_requests) >= 10
    ends = [datetime.fromisoformat(r["arrived_at"]) + timedelta(milliseconds=r["duration_ms"]) for r in plan_requests]
    assert max(ends) < produced_at, "the plans stage outlasted the producer: the test proves nothing"
    assert _max_in_flight(plan_requests) == 2, "the producer took one of the worker's two posting slots"


def test_a_producer_only_worker_produces_and_a_batches_only_worker_posts(
    make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    plans = [{"id": f"p{n}", "name": f"Plan {n}", "billing_freq": "month", "billing_freq_count": 1, "currency": "USD"} for n in range(120)]
    build_source(source_db.url, source_schema, plans=plans)
    stack: Stack = make_stack()
    producer = stack.start_worker(concurrency=1, queues="growpanel.produce")
    poster = stack.start_worker(concurrency=2, queues="growpanel.batches")
    run_id = stack.start_run("--mapping", mapping_file(workdir, source_schema))
    doc = stack.wait_for_state(run_id, timeout=60)
    assert doc["state"] == "succeeded"
    # (Celery logs "Task <name> ... received" for every message a worker takes)
    assert "Task produce" in producer.log() and "Task post_batch" not in producer.log()
    assert "Task post_batch" in poster.log() and "Task produce" not in poster.log()
