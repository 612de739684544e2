"""How fast `status` and `errors` answer on a big run, what they read, and which audit indexes the audit's readers use.

`status` is timed three ways: the command a user types (a new Python process: interpreter start,
imports, settings, one connection, the queries), the same process for `--help` (everything but the
queries), and `console.status.status_document` in-process (only the queries); `errors RUN` (text and
`--csv`) as a user types it. Every statement `status_document` sends is captured and EXPLAINed
(ANALYZE) to show the tables it touches.

On its own, `python -m bench.status_check` builds a throwaway state database holding one finished run
of `--audit-rows` audit rows (1,000,000 by default; one in `--rejected-every` rejected) in SQL, in
seconds, and prints the same figures; `--database-url URL --run N` measures an existing run instead.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, event, text

from backfill.manifest import load_manifest
from bench.services import ROOT, run_cli


@dataclass
class Captured:
    """Statements sent through an engine while capturing."""

    statements: list[tuple[str, Any]] = field(default_factory=list)


@contextmanager
def capture(engine: Engine) -> Iterator[Captured]:
    """Record every (statement, parameters) the engine sends inside the block."""
    captured = Captured()

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        captured.statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield captured
    finally:
        event.remove(engine, "before_cursor_execute", before)


@dataclass(frozen=True)
class PlanNode:
    """One node of a plan that reads a table."""

    node: str
    relation: str
    index: str | None
    rows: int
    ms: float


def plan_nodes(plan: dict[str, Any]) -> list[PlanNode]:
    """Every node of an EXPLAIN (FORMAT JSON) plan that reads a table or an index."""
    nodes = []
    stack = [plan]
    while stack:
        node = stack.pop()
        if "Relation Name" in node or "Index Name" in node:
            # A Bitmap Index Scan names its index but not its table (its parent Bitmap Heap Scan does).
            nodes.append(
                PlanNode(
                    node["Node Type"],
                    node.get("Relation Name", ""),
                    node.get("Index Name"),
                    int(node.get("Actual Rows", 0) * node.get("Actual Loops", 1)),
                    float(node.get("Actual Total Time", 0.0)),
                )
            )
        stack.extend(node.get("Plans", []))
    return nodes


def explain(conn: Connection, statement: str, parameters: Any) -> tuple[float, list[PlanNode]]:
    """(execution ms, relation-reading nodes) of one captured statement, run with EXPLAIN ANALYZE."""
    raw = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters).scalar_one()
    data = raw if isinstance(raw, list) else orjson.loads(raw)
    top = data[0]
    return float(top["Execution Time"]), plan_nodes(top["Plan"])


def _median_wall(command: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        command()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@dataclass
class StatusFigures:
    """Timings of `status` and what its queries read."""

    audit_rows: int
    batches: int
    cli_ms: float
    cli_json_ms: float
    errors_ms: float
    errors_csv_ms: float
    rejected: int
    help_ms: float
    python_ms: float
    in_process_ms: float
    statements: list[tuple[str, float, list[PlanNode]]]
    import_top: list[tuple[int, str]]

    @property
    def touches_audit(self) -> bool:
        """Whether any statement of status_document reads the audit table."""
        return any(n.relation == "audit" for _, _, nodes in self.statements for n in nodes) or any(
            re.search(r"\baudit\b", s) for s, _, _ in self.statements
        )


def import_times(env: dict[str, str], run_id: int, top: int = 8) -> list[tuple[int, str]]:
    """The modules whose import (with what they import) costs most in `status RUN` (µs, module)."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "console", "status", str(run_id)],
        env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, check=False,
    )
    rows = []
    for line in completed.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|(\s*)(\S+)", line)
        if match and len(match.group(2)) <= 3:
            rows.append((int(match.group(1)), match.group(3)))
    return sorted(rows, reverse=True)[:top]


def measure_status(engine: Engine, env: dict[str, str], run_id: int, repeat: int = 7) -> StatusFigures:
    """Time `status RUN` (CLI and in-process) and EXPLAIN what it runs."""
    from console.status import status_document

    with engine.connect() as conn:
        audit_rows = int(conn.execute(text("SELECT count(*) FROM audit WHERE run_id = :r"), {"r": run_id}).scalar_one())
        batches = int(conn.execute(text("SELECT count(*) FROM batches WHERE run_id = :r"), {"r": run_id}).scalar_one())

        rejected = int(
            conn.execute(
                text("SELECT count(*) FROM audit WHERE run_id = :r AND outcome IN ('error', 'invalid', 'skipped')"), {"r": run_id}
            ).scalar_one()
        )

    def cli(command: str, *args: str) -> None:
        result = run_cli([command, str(run_id), *args], env)
        if result.returncode != 0:
            raise RuntimeError(f"{command} failed: {result.stderr}")

    run_cli(["status", str(run_id)], env)  # warm the OS caches once
    cli_ms = _median_wall(lambda: cli("status"), repeat) * 1000
    cli_json_ms = _median_wall(lambda: cli("status", "--json"), repeat) * 1000
    errors_ms = _median_wall(lambda: cli("errors"), repeat) * 1000
    errors_csv_ms = _median_wall(lambda: cli("errors", "--csv"), repeat) * 1000
    help_ms = _median_wall(lambda: run_cli(["--help"], env), repeat) * 1000
    python_ms = _median_wall(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), repeat) * 1000

    def in_process() -> None:
        with engine.connect() as conn:
            status_document(conn, run_id)

    in_process()
    in_process_ms = _median_wall(in_process, max(repeat, 21)) * 1000
    with capture(engine) as captured, engine.connect() as conn:
        status_document(conn, run_id)
    statements = []
    with engine.connect() as conn:
        for statement, parameters in captured.statements:
            ms, nodes = explain(conn, statement, parameters)
            statements.append((" ".join(statement.split())[:160], ms, nodes))
    return StatusFigures(
        audit_rows, batches, cli_ms, cli_json_ms, errors_ms, errors_csv_ms, rejected, help_ms, python_ms, in_process_ms,
        statements, import_times(env, run_id),
    )


@dataclass(frozen=True)
class IndexUse:
    """One reader of the audit table and how its query reads it."""

    reader: str
    ms: float
    nodes: list[PlanNode]


def audit_indexes(engine: Engine) -> list[tuple[str, str, int]]:
    """(name, definition, bytes) of every index on the audit table."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                """
                SELECT i.indexname, i.indexdef, pg_relation_size(c.oid) AS size
                FROM pg_indexes i JOIN pg_class c ON c.relname = i.indexname
                WHERE i.tablename = 'audit' ORDER BY i.indexname
                """
            )
        ).all()
    return [(r.indexname, r.indexdef, int(r.size)) for r in rows]


def audit_readers(engine: Engine, run_id: int, data_source: str) -> list[IndexUse]:
    """EXPLAIN ANALYZE the audit queries of `errors`, the dependency skip and --only-changed, on this run."""
    from console.status import iter_errors
    from workers.decide import local_outcomes

    with engine.connect() as conn:
        manifest = conn.execute(
            text("SELECT manifest FROM batches WHERE run_id = :r AND stage = 'invoices' ORDER BY seq DESC LIMIT 1"),
            {"r": run_id},
        ).scalar_one()
    entries = load_manifest(manifest)
    readers: list[tuple[str, Callable[[Connection], Any]]] = [
        ("errors RUN (every rejected row)", lambda c: list(iter_errors(c, run_id))),
        ("invoice batch: skip rows of rejected customers/plans", lambda c: local_outcomes(c, run_id, "invoices", data_source, entries, False)),
        # The next run of the same data source with --only-changed compares hashes with this run's audit.
        ("--only-changed: hashes accepted in earlier runs", lambda c: local_outcomes(c, run_id + 1, "invoices", data_source, entries, True)),
    ]
    uses = []
    for name, call in readers:
        with capture(engine) as captured, engine.connect() as conn:
            call(conn)
        with engine.connect() as conn:
            for statement, parameters in captured.statements:
                if not re.search(r"\baudit\b", statement):
                    continue
                ms, nodes = explain(conn, statement, parameters)
                uses.append(IndexUse(name, ms, [n for n in nodes if n.relation in ("audit", "") and (n.relation or n.index)]))
    return uses


def seed_run(engine: Engine, audit_rows: int, rejected_every: int, batch_size: int = 500) -> int:
    """One finished run of `audit_rows` invoices in batches of `batch_size`, written in SQL; returns its id."""
    with engine.begin() as conn:
        run_id = int(
            conn.execute(
                text(
                    """
                    INSERT INTO runs (data_source, api_url, state, batch_size, mapping, current_stage, finished_at)
                    VALUES ('ds_status_check', 'http://sandbox.invalid', 'completed_with_errors', :b, '{}'::jsonb, 'invoices', now())
                    RETURNING id
                    """
                ),
                {"b": batch_size},
            ).scalar_one()
        )
        conn.execute(
            text("INSERT INTO run_stages (run_id, stage, produced, done_at) SELECT :r, s, true, now() FROM unnest(ARRAY['plans', 'customers', 'invoices']) s"),
            {"r": run_id},
        )
        conn.execute(
            text(
                """
                INSERT INTO batches (run_id, stage, seq, rows, state, n_inserted, n_error)
                SELECT :r, 'invoices', g, least(:b, :n - (g - 1) * :b), 'done',
                       least(:b, :n - (g - 1) * :b) - n_bad, n_bad
                FROM generate_series(1, (:n + :b - 1) / :b) g,
                     LATERAL (SELECT count(*)::int AS n_bad FROM generate_series((g - 1) * :b + 1, least(g * :b, :n)) i WHERE i % :e = 0) bad
                """
            ),
            {"r": run_id, "n": audit_rows, "b": batch_size, "e": rejected_every},
        )
        conn.execute(
            text(
                """
                INSERT INTO audit (run_id, entity, external_id, batch_id, outcome, message, http_status)
                SELECT :r, 'invoices', 'inv_' || lpad(g::text, 8, '0'), first_batch + (g - 1) / :b,
                       CASE WHEN g % :e = 0 THEN 'error' ELSE 'inserted' END,
                       CASE WHEN g % :e = 0 THEN 'HTTP 422: amount_cents must be positive' END, 200
                FROM generate_series(1, :n) g,
                     (SELECT min(id) AS first_batch FROM batches WHERE run_id = :r) f
                """
            ),
            {"r": run_id, "n": audit_rows, "b": batch_size, "e": rejected_every},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE runs, run_stages, batches, audit"))
    return run_id


def report_lines(figures: StatusFigures) -> list[str]:
    """The figures as the lines `python -m bench.status_check` prints."""
    lines = [
        f"{figures.audit_rows:,} audit rows in {figures.batches:,} batches, {figures.rejected:,} rejected",
        f"  status RUN: median {figures.cli_ms:.0f} ms (--json {figures.cli_json_ms:.0f} ms)",
        f"  errors RUN: median {figures.errors_ms:.0f} ms (--csv {figures.errors_csv_ms:.0f} ms)",
        f"  --help: {figures.help_ms:.0f} ms; python -c pass: {figures.python_ms:.0f} ms; status_document in-process: {figures.in_process_ms:.1f} ms",
        "  slowest imports of `status` (µs, cumulative): " + ", ".join(f"{m} {us:,}" for us, m in figures.import_top),
    ]
    for statement, ms, nodes in figures.statements:
        read = ", ".join(n.node + (f" on {n.relation}" if n.relation else "") for n in nodes)
        lines.append(f"    {ms:7.2f} ms  {read}  <- {statement[:90]}")
    return lines


def main() -> None:
    """`python -m bench.status_check`: status and errors on a synthetic (or given) big run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audit-rows", type=int, default=1_000_000)
    parser.add_argument("--rejected-every", type=int, default=500, help="one audit row in N is rejected (2,000 of 1M by default)")
    parser.add_argument("--repeat", type=int, default=21, help="runs of each command; the median is shown")
    parser.add_argument("--database-url", help="an existing, migrated state database (default: a throwaway one)")
    parser.add_argument("--run", type=int, help="with --database-url: the run to measure")
    args = parser.parse_args()
    from devservices import Database
    from models.db import make_engine

    db = None
    url = args.database_url
    if url is None:
        db = Database("status", prefix="gpbench")
        url = db.url
        migrated = run_cli(["migrate"], {"DATABASE_URL": url})
        if migrated.returncode != 0:
            db.drop()
            raise SystemExit(migrated.stderr)
    engine = make_engine(url, pool_size=2)
    try:
        run_id = args.run if args.run is not None else seed_run(engine, args.audit_rows, args.rejected_every)
        for line in report_lines(measure_status(engine, {"DATABASE_URL": url}, run_id, args.repeat)):
            print(line)
    finally:
        engine.dispose()
        if db is not None:
            db.drop()


if __name__ == "__main__":
    main()
