"""How fast `status` answers on a big run, what it reads, and which audit indexes the audit's readers use.

`status` is timed three ways: the command a user types (a new Python process: interpreter start,
imports, settings, one connection, the queries), the same process for `--help` (everything but the
queries), and `console.status.status_document` in-process (only the queries). Every statement
`status_document` sends is captured and EXPLAINed (ANALYZE) to show the tables it touches.
"""

from __future__ import annotations

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
        env={**__import__("os").environ, **env}, cwd=ROOT, capture_output=True, text=True, check=False,
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

    def cli(*args: str) -> None:
        result = run_cli(["status", str(run_id), *args], env)
        if result.returncode != 0:
            raise RuntimeError(f"status failed: {result.stderr}")

    run_cli(["status", str(run_id)], env)  # warm the OS caches once
    cli_ms = _median_wall(cli, repeat) * 1000
    cli_json_ms = _median_wall(lambda: cli("--json"), repeat) * 1000
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
        audit_rows, batches, cli_ms, cli_json_ms, help_ms, python_ms, in_process_ms, statements, import_times(env, run_id)
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
