"""Guards of issue 13's recording path: a clean batch is recorded in one statement, built by PostgreSQL.

A first-pass batch whose every row was sent and answered with a plain accepted status is finished, given
its audit rows and its attempt by one statement (`backfill.store.record_accepted`); any other batch
takes the general path (`store.finish` + the audit COPY). Counted on the wire (libpq's trace), no timings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from sandbox.testing import SandboxProcess
from tests.integration.scenarios import ts
from tests.perf.support import WireCounter, importer, migrated_database
from tests.support.services import Database, RedisServer
from tests.support.sources import build_source, mapping_file

# Statements of a clean batch that does not end its stage: the pool's pre-ping, the claim (BEGIN,
# UPDATE ... RETURNING, COMMIT), the record (BEGIN, one statement, COMMIT) and advance (BEGIN, the run's
# lock, the stage with its in-flight count, the queueing UPDATE, COMMIT). Before issue 13 it was 15: the
# record was the UPDATE, the COPY and the attempt's INSERT, and advance counted in a statement of its own.
STEADY = 12
# Invoices add the rejected-parent lookup (BEGIN, SELECT, COMMIT) and, in a chain, one more probe; the
# batch that ends a stage adds the barrier (probes, closing and opening stages).
STEADY_WITH_PARENTS = STEADY + 4
STAGE_END = STEADY_WITH_PARENTS + 6


@pytest.fixture
def broker(redis_server: RedisServer) -> str:
    """A Redis database no worker listens to: the batches these guards publish stay there."""
    return redis_server.url(6)


def _source(url: str, schema: str, bad_invoice: bool) -> int:
    customers = [{"id": f"c{n:03d}", "name": f"C{n}", "created_date": ts("2020-01-01"), "country": "us"} for n in range(60)]
    invoices = []
    for n in range(60):
        # One customer long enough for a chain of batches, the others with one to three invoices.
        for k in range(120 if n == 0 else 1 + n % 3):
            day = ts("2020-01-01").replace(year=2020 + k // 12, month=k % 12 + 1)
            invoices.append({"id": f"i{n:03d}-{k:03d}", "customer_id": f"c{n:03d}", "type": "one-time", "date": day,
                             "amount_cents": 100, "currency": "usd", "start_date": day, "end_date": day})
    if bad_invoice:
        invoices[-1]["amount_cents"] = -1
    plans = [{"id": "p1", "name": "P", "billing_freq": "month", "billing_freq_count": 1, "currency": "usd"}]
    build_source(url, schema, plans, customers, invoices)
    return len(plans) + len(customers) + len(invoices)


def _post(
    source_db: Database, schema: str, workdir: Path, sandbox: SandboxProcess, ds: str, key: str, broker: str,
    serve_seconds: float = 0.0, **settings: Any,
) -> tuple[list[tuple[str, int, int]], bytes, list[Any], list[Any], str]:
    """Produce and post the run, one `process_batch` call at a time: (stage, rows, statements) per call,
    the wire trace, the audit, the batches and the run's state."""
    state = migrated_database("perfrec")
    try:
        with importer(state.url, source_db.url, sandbox.url, broker, {ds: key}, serve_seconds, **settings) as imp:
            run_id = imp.start(ds, mapping_file(workdir, schema), 25)
            imp.produce(run_id, ds)
            counter = WireCounter(imp.engine)
            batches = imp.post_all(run_id, counter.take)
            trace = counter.trace()
            with imp.engine.connect() as conn:
                audit = conn.execute(
                    text(
                        "SELECT batch_id, external_id, outcome, export_status, message, http_status, attempts, "
                        "encode(payload_hash, 'hex') AS hash, sent_at, answered_at FROM audit WHERE run_id = :r"
                    ),
                    {"r": run_id},
                ).all()
                stored = conn.execute(
                    text(
                        "SELECT b.id, b.manifest, b.rows, b.n_inserted + b.n_updated + b.n_unchanged + b.n_success AS accepted, "
                        "b.n_invalid, (SELECT count(*) FROM batch_attempts a WHERE a.batch_id = b.id) AS attempts "
                        "FROM batches b WHERE b.run_id = :r"
                    ),
                    {"r": run_id},
                ).all()
                run_state = conn.execute(text("SELECT state FROM runs WHERE id = :r"), {"r": run_id}).scalar_one()
        return batches, trace, audit, stored, run_state
    finally:
        state.drop()


def test_a_clean_batch_is_recorded_in_one_statement_from_its_manifest(
    source_db: Database, source_schema: str, workdir: Path, sandbox_process: SandboxProcess,
    data_source: tuple[str, str], broker: str,
) -> None:
    # Given a clean source (every row valid) in batches of 25, a long customer's invoices in a chain
    rows = _source(source_db.url, source_schema, bad_invoice=False)
    ds, key = data_source
    # When every batch is posted and recorded by process_batch
    batches, trace, audit, stored, run_state = _post(source_db, source_schema, workdir, sandbox_process, ds, key, broker)
    assert run_state == "succeeded"
    # Then no batch used the COPY path: each was finished, audited and its attempt written by one
    # statement, and no batch sent more than the clean path's fixed statements
    assert b"COPY audit" not in trace
    assert trace.count(b"WITH fin AS") == len(batches) == len(stored)
    last = {stage: i for i, (stage, _, _) in enumerate(batches)}
    for i, (stage, _, statements) in enumerate(batches):
        bound = STAGE_END if last[stage] == i else STEADY if stage == "customers" else STEADY_WITH_PARENTS
        assert statements <= bound, (i, batches)
    # And the audit holds exactly the manifest's rows, once each, with the hash the producer computed
    assert len(audit) == rows
    by_batch: dict[int, set[tuple[str, str]]] = {}
    for a in audit:
        assert a.outcome == a.export_status and a.outcome in ("inserted", "updated", "unchanged", "success")
        assert a.message is None and a.http_status == 200 and a.attempts == 1
        assert a.sent_at is not None and a.answered_at is not None and a.sent_at <= a.answered_at
        by_batch.setdefault(a.batch_id, set()).add((a.external_id, a.hash))
    for b in stored:
        manifest = {(e[0], e[1]) for e in orjson.loads(b.manifest)}
        assert by_batch[b.id] == manifest
        assert b.accepted == b.rows == len(manifest) and b.attempts == 1


def test_a_batch_with_a_local_outcome_takes_the_general_path(
    source_db: Database, source_schema: str, workdir: Path, sandbox_process: SandboxProcess,
    data_source: tuple[str, str], broker: str,
) -> None:
    # Given a source whose last invoice is invalid (a negative amount)
    rows = _source(source_db.url, source_schema, bad_invoice=True)
    ds, key = data_source
    # When every batch is posted
    batches, trace, audit, stored, run_state = _post(source_db, source_schema, workdir, sandbox_process, ds, key, broker)
    assert run_state == "completed_with_errors"
    # Then exactly the batch holding it was recorded with the COPY, every other batch in one statement
    assert trace.count(b"COPY audit") == 1
    assert trace.count(b"WITH fin AS") == len(batches) - 1
    # And nothing was lost: one audit row per source row, the invalid one among them
    assert len(audit) == rows
    assert [a.external_id for a in audit if a.outcome == "invalid"] == [f"i059-{2:03d}"]
    assert sum(b.n_invalid for b in stored) == 1


def test_a_batch_a_slot_takes_itself_saves_the_claim_round_trips(
    source_db: Database, source_schema: str, workdir: Path, sandbox_process: SandboxProcess,
    data_source: tuple[str, str], broker: str,
) -> None:
    # Given a clean source in batches of 25 and a dispatch window of 2, so that most batches are pending
    # when a slot finishes one
    rows = _source(source_db.url, source_schema, bad_invoice=False)
    ds, key = data_source
    # When every batch is posted, one per message, then with the slot taking the next ones itself
    one = _post(source_db, source_schema, workdir, sandbox_process, ds, key, broker, 0.0, max_in_flight=2)
    served = _post(source_db, source_schema, workdir, sandbox_process, ds, key, broker, 10.0, max_in_flight=2)
    # Then the same batches were posted and audited, most of them taken by the slot that had just finished one,
    for calls, _trace, audit, stored, run_state in (one, served):
        assert run_state == "succeeded" and len(audit) == rows
    batches = len(one[3])
    assert len(one[0]) == batches == len(served[3])
    taken = batches - len(served[0])
    assert taken >= batches // 2, (batches, len(served[0]))
    # and each of those saved the pool's pre-ping and the claim's transaction (BEGIN, UPDATE, COMMIT) for one
    # UPDATE inside the advance that the finished batch ran anyway.
    statements = [sum(n for _, _, n in calls) for calls in (one[0], served[0])]
    assert statements[1] <= statements[0] - 3 * taken, (statements, taken)
