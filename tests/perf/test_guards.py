"""Performance guards: what must not regress silently (issue 5), checked fast and without timings.

- the producer's memory does not grow with the source (a scaled-down version of "flat memory");
- the statements one batch sends to PostgreSQL do not grow with the batch size;
- `status` does not read the audit table;
- `status`, `errors` and `runs` import neither SQLAlchemy nor pydantic nor psycopg (issue 13: 150 ms on a
  big run, of which those imports alone would take ~450 ms on the 2-core machine of BENCHMARKS.md).

The figures themselves (rows/s, µs per row, peaks at 1,000,000 invoices) are in BENCHMARKS.md,
measured by `python -m bench.run`; these guards only catch the regressions that change their order.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from sqlalchemy import event, text

from sandbox.testing import SandboxProcess
from tests.support.imports import top_level_packages
from tests.support.services import PROJECT_ROOT, Database, RedisServer
from tests.support.sources import build_source, mapping_file
from tests.integration.scenarios import ts
from tests.perf.support import WireCounter, importer, migrated_database


@pytest.fixture(scope="module")
def perf_state() -> Iterator[Database]:
    """A state database of these guards alone: no shared worker's sweeper advances their runs."""
    db = migrated_database("perf")
    yield db
    db.drop()


def _produce_in_child(state: Database, source_url: str, mapping: str, data_source: str, batch_size: int) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.perf.producer_child", "--state", state.url, "--source", source_url,
         "--mapping", mapping, "--data-source", data_source, "--batch-size", str(batch_size)],
        cwd=PROJECT_ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return orjson.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_producer_memory_does_not_grow_with_the_source(perf_state: Database, source_db: Database, source_schema: str, workdir: Path) -> None:
    from demo.seed import SeedShape, seed

    # Given two sources, the second ten times the first (whales included), and batches small enough
    # that both fill the producer's buffers (a 2,000-row fetch, 20 batches per checkpoint): only
    # streaming keeps them level.
    small, large = f"{source_schema}_s", f"{source_schema}_l"
    counts_small = seed(source_db.url, small, SeedShape(customers=220, years=4, whales=1, whale_invoices=600))
    counts_large = seed(source_db.url, large, SeedShape(customers=2200, years=4, whales=2, whale_invoices=3000))
    assert counts_large["invoices"] >= 9 * counts_small["invoices"]
    # When each is produced by a producer in a process of its own
    figures = {
        name: _produce_in_child(perf_state, source_db.url, mapping_file(workdir, schema), f"ds_perf_{name}", batch_size=20)
        for name, schema in (("small", small), ("large", large))
    }
    # Then every row was produced, and the large source needed no more memory than the small one
    for name, counts in (("small", counts_small), ("large", counts_large)):
        assert figures[name]["rows"] >= sum(counts.values()) - 1  # one duplicated id is one row
    grew = {name: f["peak_kb"] - f["baseline_kb"] for name, f in figures.items()}
    print("producer peak RSS (KiB):", figures, "growth during production:", grew)
    # 3 MiB: below what a set of the 40,000 more invoice ids costs (~4 MiB), far below an object per row.
    assert grew["large"] <= grew["small"] + 3072, grew
    assert figures["large"]["peak_kb"] <= figures["small"]["peak_kb"] * 1.05, figures


@pytest.fixture
def broker(redis_server: RedisServer) -> str:
    """A Redis database no worker listens to: the batches these guards publish stay there."""
    return redis_server.url(7)


def _statement_source(url: str, schema: str) -> None:
    customers = [
        {"id": f"c{n:04d}", "name": f"C{n}", "created_date": ts("2020-01-01"), "country": "us"} for n in range(120)
    ]
    invoices = []
    for n in range(120):
        # One long customer (a chain of batches at every size), the others with one to three invoices.
        count = 510 if n == 0 else 1 + n % 3
        for k in range(count):
            day = ts("2020-01-01").replace(year=2020 + k // 12, month=k % 12 + 1)
            invoices.append(
                {"id": f"i{n:04d}-{k:03d}", "customer_id": f"c{n:04d}", "type": "one-time", "date": day,
                 "amount_cents": 100, "currency": "usd", "start_date": day, "end_date": day}
            )
    plans = [{"id": "p1", "name": "P", "billing_freq": "month", "billing_freq_count": 1, "currency": "usd"}]
    build_source(url, schema, plans, customers, invoices)


def test_statements_per_batch_do_not_grow_with_the_batch_size(
    perf_state: Database, source_db: Database, source_schema: str, workdir: Path,
    sandbox_process: SandboxProcess, data_source: tuple[str, str], broker: str,
) -> None:
    # Given a source whose stages take many batches of 10 rows and several of 500
    _statement_source(source_db.url, source_schema)
    mapping = mapping_file(workdir, source_schema)
    ds, key = data_source
    per_size = {}
    for batch_size in (10, 500):
        with importer(perf_state.url, source_db.url, sandbox_process.url, broker, {ds: key}) as imp:
            run_id = imp.start(ds, mapping, batch_size)
            imp.produce(run_id, ds)
            counter = WireCounter(imp.engine)
            # When every batch is posted and recorded by process_batch, counting what reaches PostgreSQL
            per_size[batch_size] = imp.post_all(run_id, counter.take)
            with imp.engine.connect() as conn:
                state, audit = conn.execute(
                    text("SELECT r.state, (SELECT count(*) FROM audit a WHERE a.run_id = r.id) FROM runs r WHERE r.id = :r"),
                    {"r": run_id},
                ).one()
        assert state == "succeeded"
        assert audit == sum(rows for _, rows, _ in per_size[batch_size])
    # Then a batch of 500 rows sends exactly the statements a batch of 10 sends (one COPY for the
    # audit, fixed claim/record/dispatch steps): for each stage, the same counts, whatever the size.
    counts = {size: _by_stage(batches) for size, batches in per_size.items()}
    print("statements per batch, by stage:", {size: {s: sorted(set(v)) for s, v in c.items()} for size, c in counts.items()})
    for stage in ("plans", "customers", "invoices"):
        small, large = counts[10][stage], counts[500][stage]
        assert min(small) >= 5, "the counter saw no statements: is the libpq trace working?"
        assert set(large) <= set(small), (stage, sorted(set(small)), sorted(set(large)))
        assert max(large) == max(small), (stage, sorted(set(small)), sorted(set(large)))


def _by_stage(batches: list[tuple[str, int, int]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for stage, _rows, statements in batches:
        out[stage].append(statements)
    return out


def test_status_does_not_read_the_audit_table(
    perf_state: Database, source_db: Database, source_schema: str, workdir: Path,
    sandbox_process: SandboxProcess, data_source: tuple[str, str], broker: str,
) -> None:
    from console.status import iter_errors, status_document
    from tests.integration.scenarios import CUSTOMERS, INVOICES, PLANS

    # Given a finished run with audit rows, some of them rejected
    bad = {"id": "c_bad", "name": "Nowhere", "created_date": ts("2024-01-01"), "country": "zz"}
    build_source(source_db.url, source_schema, PLANS, [*CUSTOMERS, bad], INVOICES)
    ds, key = data_source
    with importer(perf_state.url, source_db.url, sandbox_process.url, broker, {ds: key}) as imp:
        run_id = imp.start(ds, mapping_file(workdir, source_schema), 4)
        imp.produce(run_id, ds)
        imp.post_all(run_id)
        engine = imp.engine
        # When status_document (what `status` shows) runs, with every statement it sends recorded
        sent: list[tuple[str, object]] = []

        def record(conn: object, cursor: object, statement: str, parameters: object, context: object, many: bool) -> None:
            sent.append((statement, parameters))

        with engine.connect() as conn:
            # PostgreSQL's own count of scans of audit, before and after, inside one transaction
            before = _audit_scans(conn)
            event.listen(engine, "before_cursor_execute", record)
            try:
                doc = status_document(conn, run_id)
            finally:
                event.remove(engine, "before_cursor_execute", record)
            status_scans = _audit_scans(conn) - before
        with engine.connect() as conn:
            before = _audit_scans(conn)
            rejected = list(iter_errors(conn, run_id))
            errors_scans = _audit_scans(conn) - before
        with engine.connect() as conn:
            plans = [
                conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).scalar_one()  # type: ignore[arg-type]
                for statement, parameters in sent
            ]
    # Then it counted every row from the batch counters alone:
    assert doc["state"] == "completed_with_errors"
    assert sum(s["rows"] for s in doc["stages"].values()) == 3 + 3 + 8
    assert doc["stages"]["customers"]["invalid"] == 1
    # no statement names the audit table, no plan reads it, and PostgreSQL counted no scan of it,
    assert sent, "no statement was recorded"
    assert not [s for s, _ in sent if re.search(r"\baudit\b", s, re.IGNORECASE)]
    assert "audit" not in _relations(plans)
    assert status_scans == 0
    # while reading the rejected rows (as `errors` does) is seen by the same probe.
    assert [r["id"] for r in rejected] == ["c_bad"]
    assert errors_scans > 0
    # And the commands a user types answer from the same run without loading the heavy libraries.
    # `--help` too: it lists every command, the sandbox's among them, without importing them.
    for args, shows in ((["status", str(run_id)], "customers"), (["errors", str(run_id)], "c_bad"), (["errors", str(run_id), "--csv"], "c_bad"), (["runs"], str(run_id)), (["--help"], "sandbox")):
        loaded = _modules_loaded_by(perf_state.url, args)
        assert shows in loaded.stdout, (args, loaded.stdout, loaded.stderr)
        heavy = sorted(HEAVY & loaded.top_level)
        assert not heavy, f"`{' '.join(args)}` imported {heavy}"


# What `status`/`errors`/`runs`/`--help` must never import: each costs 50-200 ms to load.
HEAVY = {"sqlalchemy", "pydantic", "pydantic_core", "pydantic_settings", "psycopg", "psycopg_binary", "celery", "kombu", "rich",
         "httpx", "starlette", "uvicorn"}


@dataclass
class _Loaded:
    stdout: str
    stderr: str
    top_level: set[str]


def _modules_loaded_by(database_url: str, args: list[str]) -> _Loaded:
    """Run `growpanel-backfill ARGS` with `-X importtime` and collect the top-level packages it imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "console", *args],
        env={**os.environ, "DATABASE_URL": database_url}, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    names = top_level_packages(done.stderr)
    messages = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("import time:"))
    return _Loaded(done.stdout, messages, names)


def _audit_scans(conn: object) -> int:
    """Scans of the audit table this backend has not yet reported (they grow within a transaction)."""
    return int(
        conn.execute(  # type: ignore[attr-defined]
            text("SELECT coalesce(sum(seq_scan + idx_scan), 0) FROM pg_stat_xact_user_tables WHERE relname = 'audit'")
        ).scalar_one()
    )


def _relations(plans: list[object]) -> set[str]:
    """Every relation named anywhere in some EXPLAIN (FORMAT JSON) documents."""
    found: set[str] = set()
    stack: list[object] = list(plans)
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "Relation Name" in node:
                found.add(node["Relation Name"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found
