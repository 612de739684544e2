"""Configuration as a user meets it: one-line errors with exit 3, the default mapping, independence."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.integration.scenarios import CUSTOMERS, INVOICES, PLANS
from tests.support.services import PROJECT_ROOT, Database
from tests.support.sources import build_source, mapping_file
from tests.support.stack import SandboxView, Stack


def _one_line_exit_3(result) -> str:  # type: ignore[no-untyped-def]
    assert result.code == 3, (result.code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        # The line of libpq's message that names the server, not its hint ("Is the server running ...?").
        ("DATABASE_URL", "postgresql://127.0.0.1:1/nowhere", 'DATABASE_URL: cannot use the state database: connection failed: connection to server at "127.0.0.1", port 1 failed'),
        ("DATABASE_URL", "mysql://x/y", "DATABASE_URL is malformed"),
        ("SOURCE_DATABASE_URL", "postgresql://127.0.0.1:5432/no_such_database_gpbt", "SOURCE_DATABASE_URL: cannot connect"),
        ("CELERY_BROKER_URL", "redis://127.0.0.1:1/0", "CELERY_BROKER_URL: the broker does not answer"),
        ("CELERY_BROKER_URL", "amqp://x", "CELERY_BROKER_URL is malformed"),
        ("BATCH_SIZE", "5000", "BATCH_SIZE is malformed"),
        ("BATCH_SIZE", "many", "BATCH_SIZE is malformed"),
        ("GROWPANEL_API_URL", "ftp://x", "GROWPANEL_API_URL is malformed"),
        ("GROWPANEL_API_KEY", "", "GROWPANEL_API_KEY is not set"),
        ("RETRY_BACKOFF", "1,x", "RETRY_BACKOFF is malformed"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(stack: Stack, source_db: Database, source_schema: str, workdir: Path, variable: str, value: str, expected: str) -> None:
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    result = stack.cli("start", "--mapping", mapping_file(workdir, source_schema), env={variable: value})
    assert expected in _one_line_exit_3(result)


def test_a_missing_setting_is_named(stack: Stack) -> None:
    result = stack.cli("status", env={"DATABASE_URL": ""})
    assert _one_line_exit_3(result) == "growpanel-backfill: DATABASE_URL is not set"


@pytest.mark.parametrize(
    ("queries", "expected"),
    [
        ({"plans": "SELECT * FROM {schema}.no_such_table"}, 'plans query failed: relation "{schema}.no_such_table" does not exist'),
        ({"customers": "SELECT id, name, created_at, country FROM {schema}.customers"}, "customers query failed"),
        ({"customers": "SELECT id, name, created_date AS created_at, country FROM {schema}.customers"},
         "customers query returns a column `created_at` that is not a customer field; allowed: id, name, email, created_date"),
        ({"invoices": "SELECT id, customer_id, type, date, currency, start_date, end_date FROM {schema}.invoices"},
         "invoices query has no column `amount_cents` or `amount`, which is required"),
        ({"plans": "INSERT INTO {schema}.plans (id) VALUES ('x') RETURNING *"}, "plans query writes to the source"),
        ({"plans": "WITH gone AS (DELETE FROM {schema}.plans RETURNING *) SELECT * FROM gone"}, "plans query writes to the source"),
    ],
)
def test_a_bad_mapping_stops_before_anything_is_sent(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path, queries: dict[str, str], expected: str) -> None:
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    mapping = mapping_file(workdir, source_schema, **{k: v.format(schema=source_schema) for k, v in queries.items()})
    line = _one_line_exit_3(stack.cli("start", "--mapping", mapping))
    assert expected.format(schema=source_schema) in line
    assert sandbox.requests() == []
    # The source is untouched (the writing queries did not write)
    import psycopg

    with psycopg.connect(source_db.url) as conn:
        assert conn.execute(f"SELECT count(*) FROM {source_schema}.plans").fetchone()[0] == len(PLANS)  # noqa: S608


def test_a_malformed_mapping_file_is_one_line(stack: Stack, workdir: Path) -> None:
    bad = workdir / "bad.toml"
    bad.write_text("[plans]\nquery = 'SELECT 1'\n[subscriptions]\nquery = 'x'\n")
    assert "unknown section [subscriptions]" in _one_line_exit_3(stack.cli("start", "--mapping", str(bad)))
    bad.write_text("[plans\n")
    assert "is not valid TOML" in _one_line_exit_3(stack.cli("start", "--mapping", str(bad)))
    assert "does not exist" in _one_line_exit_3(stack.cli("start", "--mapping", str(workdir / "nope.toml")))


def test_the_default_mapping_reads_plans_customers_invoices(make_stack, sandbox: SandboxView, source_db: Database, source_schema: str) -> None:
    # Given tables named plans/customers/invoices on the source's search_path, and no mapping file
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    stack: Stack = make_stack(SOURCE_DATABASE_URL=f"{source_db.url}?options=-csearch_path%3D{source_schema}")
    stack.start_worker(concurrency=4)
    result = stack.cli("start", "--wait", "--json")
    assert result.code == 0, result.stderr
    assert {k: v["rows"] for k, v in result.json()["stages"].items()} == {"plans": 3, "customers": 2, "invoices": 8}
    assert len(sandbox.ledger()["invoices"]) == 8


def test_workers_refuse_a_source_other_than_the_one_start_checked(make_stack, source_db: Database, source_schema: str) -> None:
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    stack: Stack = make_stack(SOURCE_DATABASE_URL=f"{source_db.url}?options=-csearch_path%3D{source_schema}")
    stack.start_worker(concurrency=2, SOURCE_DATABASE_URL=source_db.url)
    result = stack.cli("start", "--wait", "--json")
    assert result.code == 2
    reason = result.json()["paused_reason"]
    assert "SOURCE_DATABASE_URL" in reason and f"search_path {source_schema}" in reason


def test_the_sandbox_imports_nothing_of_the_importer() -> None:
    importer = {"models", "backfill", "producers", "workers", "console", "demo", "migrations", "devservices"}
    for path in (PROJECT_ROOT / "sandbox").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in importer, f"{path.relative_to(PROJECT_ROOT)} imports {name}"
