"""`retry` finds its targets by the id the audit holds (the normalised one), whatever the column type."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from tests.support.services import Database
from tests.support.sources import INVOICE_COLUMNS, create_table, execute, mapping_file
from tests.support.stack import SandboxView, Stack


def test_retry_finds_numeric_and_char_ids_as_they_were_sent(
    stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    # Given a numeric plan id (42.00 is sent as "42") and a char(6) customer id (sent with its padding),
    s = sql.Identifier(source_schema)
    with psycopg.connect(source_db.url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}").format(s))
        conn.execute(sql.SQL("CREATE TABLE {}.plans (id numeric(8,2), name text, billing_freq text, currency text)").format(s))
        conn.execute(sql.SQL("CREATE TABLE {}.customers (id char(6), name text, created_date timestamptz, country text)").format(s))
        create_table(conn, source_schema, "invoices", INVOICE_COLUMNS)
        conn.execute(sql.SQL("INSERT INTO {}.plans VALUES (42.00, 'Bad', 'month', 'xxx'), (7, 'Good', 'month', 'usd')").format(s))
        conn.execute(sql.SQL("INSERT INTO {}.customers VALUES ('ab', 'Bad', now(), 'zz'), ('cd', 'Good', now(), 'us')").format(s))
    mapping = mapping_file(workdir, source_schema)
    first = stack.cli("start", "--mapping", mapping, "--wait", "--json")
    assert first.code == 1, first.stderr
    run_id = first.json()["run_id"]
    audit = stack.audit(run_id)
    assert audit[("plans", "42")]["outcome"] == "invalid"
    assert audit[("customers", "ab    ")]["outcome"] == "invalid"
    # When the user fixes both rows and retries
    execute(source_db.url, f"UPDATE {source_schema}.plans SET currency = 'usd'")
    execute(source_db.url, f"UPDATE {source_schema}.customers SET country = 'us'")
    retried = stack.cli("retry", str(run_id), "--wait", "--json")
    # Then both are found (not "no longer in the source") and sent
    assert retried.code == 0, retried.stderr
    assert retried.json()["missing_from_source"] == []
    audit = stack.audit(run_id)
    assert audit[("plans", "42")]["outcome"] == "inserted"
    assert audit[("customers", "ab    ")]["outcome"] == "inserted"
    assert {p["id"] for p in sandbox.ledger()["plans"]} == {"7", "42"}
