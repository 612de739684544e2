"""A live source: one that keeps changing while it is read, restarts, and answers its first row late.

The promise under test, from issue 10: every row present when the run starts and still there at the end
gets exactly one outcome; rows added or deleted meanwhile get at most one; nothing is posted twice; no
invoice is sent without its customer ("does not exist" would be our fault); per-customer order and the
stage barrier hold (the sandbox records violations of both).
"""

from __future__ import annotations

import pytest

import signal
import threading
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql

from backfill.settings import Settings
from demo.seed import SeedShape, seed
from devservices.services import ADMIN_URL
from tests.support.services import Database, wait_until
from tests.support.sources import mapping_file
from tests.support.stack import SandboxView, Stack


def _ids(url: str, schema: str) -> dict[str, set[str]]:
    with psycopg.connect(url) as conn:
        return {
            entity: {r[0] for r in conn.execute(sql.SQL("SELECT id FROM {}.{} WHERE id IS NOT NULL").format(sql.Identifier(schema), sql.Identifier(entity)))}
            for entity in ("plans", "customers", "invoices")
        }


def _check_cut(stack: Stack, sandbox: SandboxView, run_id: int, before: dict[str, set[str]], after: dict[str, set[str]],
               added: dict[str, set[str]]) -> dict[tuple[str, str], dict[str, Any]]:
    audit = stack.audit(run_id)
    for entity in ("plans", "customers", "invoices"):
        recorded = {i for (e, i) in audit if e == entity}
        kept = before[entity] & after[entity]
        assert kept <= recorded, f"{entity}: {len(kept - recorded)} rows of the cut without an outcome, e.g. {sorted(kept - recorded)[:3]}"
        unknown = recorded - before[entity] - added[entity]
        assert not unknown, f"{entity}: outcomes for rows never in the source: {sorted(unknown)[:3]}"
        stored = [obj["id"] for obj in sandbox.ledger()[entity]]
        assert len(stored) == len(set(stored)), f"{entity} stored twice"
        # Every row is in exactly one batch as produced (no second copy waiting behind a key collision).
        manifests = stack.sql("SELECT manifest FROM batches WHERE run_id = :r AND stage = :s AND part = ''", r=run_id, s=entity)
        ids = [entry[0] for m in manifests for entry in orjson.loads(m["manifest"])]
        assert len(ids) == len(set(ids)), f"{entity}: a row in two batches"
    messages = [row["message"] or "" for row in audit.values()]
    assert not [m for m in messages if "does not exist" in m], [m for m in messages if "does not exist" in m][:3]
    assert sandbox.violations() == []
    failed = stack.sql("SELECT count(*) AS n FROM batches WHERE run_id = :r AND state = 'failed'", r=run_id)[0]["n"]
    assert failed == 0
    return audit


class _Churn:
    """Inserts that sort first, updates and deletes, in a loop on the source, until stopped."""

    def __init__(self, url: str, schema: str) -> None:
        self.url, self.schema = url, schema
        self.added: dict[str, set[str]] = {"plans": set(), "customers": set(), "invoices": set()}
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _Churn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def round(self, conn: psycopg.Connection[Any]) -> None:
        """One change of each kind (committed)."""
        n = self.rounds = self.rounds + 1
        s = sql.Identifier(self.schema)
        # A new customer whose id sorts before every other, with invoices,
        customer = f"000_new_{n:04d}"
        conn.execute(sql.SQL("INSERT INTO {}.customers (id, name, created_date, country) VALUES (%s, 'New', now(), 'us')").format(s), (customer,))
        self.added["customers"].add(customer)
        for k in range(2):
            invoice = f"000_inv_{n:04d}_{k}"
            conn.execute(
                sql.SQL("INSERT INTO {}.invoices (id, customer_id, type, date, amount_cents, currency, start_date, end_date) "
                        "VALUES (%s, %s, 'one-time', '2020-01-01', 100, 'usd', '2020-01-01', '2020-01-01')").format(s),
                (invoice, customer),
            )
            self.added["invoices"].add(invoice)
        # an early invoice for an existing customer (it sorts first within that customer),
        invoice = f"000_early_{n:04d}"
        conn.execute(
            sql.SQL("INSERT INTO {0}.invoices (id, customer_id, type, date, amount_cents, currency, start_date, end_date) "
                    "SELECT %s, id, 'one-time', '2001-01-01', 5, 'usd', '2001-01-01', '2001-01-01' FROM {0}.customers "
                    "WHERE id NOT LIKE '000%%' ORDER BY md5(id || %s) LIMIT 1").format(s),
            (invoice, str(n)),
        )
        self.added["invoices"].add(invoice)
        # an update of an amount, and a delete of one invoice and one invoice-less row.
        conn.execute(sql.SQL("UPDATE {0}.invoices SET amount_cents = amount_cents + 1 WHERE id = (SELECT id FROM {0}.invoices "
                             "WHERE id NOT LIKE '000%%' ORDER BY md5(id || %s) LIMIT 1)").format(s), (str(n),))
        conn.execute(sql.SQL("DELETE FROM {0}.invoices WHERE id = (SELECT id FROM {0}.invoices WHERE id NOT LIKE '000%%' "
                             "ORDER BY md5(id || %s) DESC LIMIT 1)").format(s), (str(n),))
        conn.commit()

    def _loop(self) -> None:
        with psycopg.connect(self.url) as conn:
            while not self._stop.wait(0.05):
                self.round(conn)


@pytest.mark.slow
def test_a_changing_source_and_a_killed_producer_give_every_row_of_the_cut_one_outcome(
    make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    # Given a source that keeps changing from the moment the run starts
    stack: Stack = make_stack(BATCH_SIZE="20")
    victim = stack.start_worker(concurrency=2)
    seed(source_db.url, source_schema, SeedShape(customers=400, years=3, whales=2, whale_invoices=900, bad_rows=False))
    mapping = mapping_file(workdir, source_schema)
    before = _ids(source_db.url, source_schema)
    sandbox.faults(latency_ms=50)
    with _Churn(source_db.url, source_schema) as churn:
        run_id = stack.start_run("--mapping", mapping)
        # When the worker running the producer dies while the invoices stage is half read
        wait_until(
            lambda: stack.sql("SELECT 1 FROM run_stages WHERE run_id = :r AND stage = 'invoices' AND rows_read > 0 AND NOT produced", r=run_id),
            90,
            interval=0.01,
            message="the producer in the middle of the invoices",
        )
        victim.kill(signal.SIGKILL)
        # and the source changes more before the run is resumed,
        rounds = churn.rounds
        wait_until(lambda: churn.rounds >= rounds + 5, 30, message="more changes to the source")
        sandbox.faults(latency_ms=0)
        stack.start_worker(concurrency=8)
        resumed = stack.cli("resume", str(run_id))
        assert resumed.code == 0, resumed.stderr
        doc = stack.wait_for_state(run_id, timeout=240)
    after = _ids(source_db.url, source_schema)
    # Then every row of the cut has exactly one outcome, nothing is doubled or refused for a missing customer,
    assert doc["state"] in ("succeeded", "completed_with_errors"), doc
    audit = _check_cut(stack, sandbox, run_id, before, after, churn.added)
    # and the rows added while the producer was away are skipped with the reason, not sent out of order.
    skipped = {i: row["message"] for (e, i), row in audit.items() if row["outcome"] == "skipped"}
    assert all(i.startswith("000_") for i in skipped), sorted(skipped)[:5]
    assert all("after the run" in m for m in skipped.values()), list(skipped.values())[:3]
    assert "resumes in a new snapshot" in stack.logs()


@pytest.mark.slow
def test_a_first_row_slower_than_the_producer_lease_starts_one_producer(
    make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    # Given the default producer lease and an invoices query whose first row comes after a longer wait
    lease = Settings.model_fields["producer_lease_seconds"].default
    stack: Stack = make_stack(PRODUCER_LEASE_SECONDS=str(lease))
    stack.start_worker(concurrency=4)
    stack.start_worker(concurrency=4)
    seed(source_db.url, source_schema, SeedShape(customers=20, years=1, whales=0, whale_invoices=0, bad_rows=False))
    invoices = f"WITH slow AS (SELECT pg_sleep({lease + 10})) SELECT i.* FROM {source_schema}.invoices i, slow"
    run_id = stack.start_run("--mapping", mapping_file(workdir, source_schema, invoices=invoices))
    # When the run finishes
    doc = stack.wait_for_state(run_id, timeout=lease + 120)
    # Then it did, with one producer taking the run once (the sweeper never started a second one),
    assert doc["state"] == "succeeded", doc
    assert stack.logs().count(f"took run {run_id}") == 1, stack.logs()[-3000:]
    _check_cut(stack, sandbox, run_id, _ids(source_db.url, source_schema), _ids(source_db.url, source_schema),
               {"plans": set(), "customers": set(), "invoices": set()})


def test_the_source_restarted_mid_stage_is_read_again_without_a_human(
    make_stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    # Given a run reading a source big enough to be caught mid-stream
    stack: Stack = make_stack(BATCH_SIZE="50")
    stack.start_worker(concurrency=4)
    seed(source_db.url, source_schema, SeedShape(customers=600, years=3, whales=2, whale_invoices=2000, bad_rows=False))
    ids = _ids(source_db.url, source_schema)
    run_id = stack.start_run("--mapping", mapping_file(workdir, source_schema))
    wait_until(
        lambda: stack.sql("SELECT 1 FROM run_stages WHERE run_id = :r AND stage = 'invoices' AND rows_read > 0 AND NOT produced", r=run_id),
        90,
        interval=0.005,
        message="the producer in the middle of the invoices",
    )
    # When the source drops the producer's connection (as a restart or failover does)
    with psycopg.connect(source_db.url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'growpanel-backfill source' AND datname = current_database()"
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    # Then the run finishes by itself, never paused, every row once.
    doc = stack.wait_for_state(run_id, timeout=240)
    assert doc["state"] == "succeeded", doc
    assert stack.sql("SELECT paused_reason FROM runs WHERE id = :r", r=run_id)[0]["paused_reason"] is None
    assert "reading again in" in stack.logs()
    _check_cut(stack, sandbox, run_id, ids, ids, {"plans": set(), "customers": set(), "invoices": set()})


@pytest.mark.slow
def test_a_source_away_longer_than_the_retries_pauses_the_run_with_the_reason(
    make_stack, sandbox: SandboxView, workdir: Path
) -> None:
    # Given a source of its own (so it can refuse every connection) and a run reading its invoices
    own = Database("source_down")
    try:
        seed(own.url, "billing_down", SeedShape(customers=20, years=1, whales=0, whale_invoices=0, bad_rows=False))
        stack: Stack = make_stack(SOURCE_DATABASE_URL=own.url)
        stack.start_worker(concurrency=4)
        invoices = "WITH slow AS (SELECT pg_sleep(5)) SELECT i.* FROM billing_down.invoices i, slow"
        run_id = stack.start_run("--mapping", mapping_file(workdir, "billing_down", invoices=invoices))
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            wait_until(
                # A server-side cursor shows its FETCH, not its query: the producer waits in pg_sleep for its first row.
                lambda: admin.execute("SELECT 1 FROM pg_stat_activity WHERE datname = %s AND wait_event = 'PgSleep' "
                                      "AND query LIKE '%%gp_invoices%%' AND application_name = 'growpanel-backfill source'",
                                      (own.name,)).fetchone(),
                60, message="the invoices query running",
            )
            # When the source goes away for longer than the retries last (at their defaults, about two minutes)
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(own.name)))
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (own.name,))
            doc = stack.wait_for_state(run_id, ("paused",), timeout=240)
            # Then the run pauses with the reason,
            assert "cannot connect to the source database" in doc["paused_reason"], doc["paused_reason"]
            assert stack.logs().count("reading again in") == 7
            # and once the source is back, `resume` finishes it.
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(own.name)))
        resumed = stack.cli("resume", str(run_id))
        assert resumed.code == 0, resumed.stderr
        assert stack.wait_for_state(run_id, timeout=120)["state"] == "succeeded"
        ids = _ids(own.url, "billing_down")
        _check_cut(stack, sandbox, run_id, ids, ids, {"plans": set(), "customers": set(), "invoices": set()})
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(own.name)))
        own.drop()
