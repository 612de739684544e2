"""The mapping checks `start` runs before anything is queued (`producers.mapping`).

Column checks are pure; the query checks run against a real PostgreSQL through the same read-only
source connection as the importer, and the command line is run as a user would (exit code 3, one line,
no traceback). Writing queries must fail and must never write: every test checks the tables after.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from backfill.errors import ConfigError
from producers.entities import ENTITIES
from producers.mapping import Mapping, check_columns, check_mapping
from producers.statement import single_statement
from producers.source import SourceReadError, StageReader, source_connection
from tests.support.services import Database
from tests.support.sources import build_source, mapping_file
from tests.support.stack import Stack

PLAN_COLUMNS = ["id", "name", "billing_freq", "currency"]
CUSTOMER_COLUMNS = ["id", "name", "created_date", "country"]
INVOICE_COLUMNS = ["id", "customer_id", "type", "date", "amount_cents", "currency", "start_date", "end_date"]


@pytest.mark.parametrize(
    ("stage", "columns", "message"),
    [
        (
            "plans",
            [*PLAN_COLUMNS, "price"],
            "plans query returns a column `price` that is not a plan field; allowed: "
            "id, external_id, name, billing_freq, billing_freq_count, currency, product_name",
        ),
        (
            "customers",
            ["id", "Name", "created_date", "country"],
            "customers query returns a column `Name` that is not a customer field; allowed: "
            "id, name, email, created_date, country, state, trial_started, custom_variables",
        ),
        (
            "invoices",
            [*INVOICE_COLUMNS, "mrr"],
            "invoices query returns a column `mrr` that is not a invoice field; allowed: "
            "id, customer_id, plan_id, type, date, amount_cents, amount, currency, start_date, end_date, "
            "payment_date, quantity, proration, discount",
        ),
        (
            "customers",
            [*CUSTOMER_COLUMNS, "data_source"],
            "customers query returns a column `data_source`: the importer sets it from GROWPANEL_DATA_SOURCE_ID, "
            "remove it from the query",
        ),
        ("plans", ["id", "name", "name", "billing_freq", "currency"], "plans query returns the column `name` twice"),
        ("plans", ["id", "name", "billing_freq"], "plans query has no column `currency`, which is required"),
        ("customers", ["id", "created_date", "country"], "customers query has no column `name` or `email`, which is required"),
        ("customers", ["name", "created_date", "country"], "customers query has no column `id`, which is required"),
        (
            "invoices",
            [c for c in INVOICE_COLUMNS if c != "amount_cents"],
            "invoices query has no column `amount_cents` or `amount`, which is required",
        ),
        ("invoices", [c for c in INVOICE_COLUMNS if c != "end_date"], "invoices query has no column `end_date`, which is required"),
    ],
)
def test_column_checks_name_the_column(stage: str, columns: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_columns(stage, columns)
    assert str(caught.value) == message


def test_every_field_and_each_alternative_passes_the_column_check() -> None:
    for stage, fields in ((s, e.fields) for s, e in ENTITIES.items()):
        check_columns(stage, list(fields))
    check_columns("plans", PLAN_COLUMNS)
    check_columns("customers", ["id", "email", "created_date", "country"])
    check_columns("invoices", [c if c != "amount_cents" else "amount" for c in INVOICE_COLUMNS])


# --- Queries against a real source ----------------------------------------------------------------

_schemas = itertools.count(1)


@pytest.fixture
def source(source_db: Database) -> Iterator[tuple[str, str]]:
    """(url, schema): a throwaway schema with one plan, one customer, one invoice, a log table and writer functions."""
    schema = f"mapchk_{next(_schemas)}"
    build_source(
        source_db.url,
        schema,
        plans=[{"id": "p1", "name": "Pro", "billing_freq": "month", "currency": "usd"}],
        customers=[{"id": "c1", "name": "Acme", "created_date": "2024-01-01T00:00:00+00:00", "country": "us"}],
        invoices=[],
    )
    with psycopg.connect(source_db.url, autocommit=True) as conn:
        s = sql.Identifier(schema)
        conn.execute(sql.SQL("CREATE TABLE {}.log (n int)").format(s))
        conn.execute(
            sql.SQL("CREATE FUNCTION {}.log_volatile() RETURNS int LANGUAGE plpgsql VOLATILE AS "
                    "$$ BEGIN INSERT INTO {}.log VALUES (1); RETURN 1; END $$").format(s, s)
        )
        conn.execute(
            sql.SQL("CREATE FUNCTION {}.log_immutable() RETURNS int LANGUAGE sql IMMUTABLE AS "
                    "'INSERT INTO {}.log VALUES (2) RETURNING n'").format(s, s)
        )
    yield source_db.url, schema
    with psycopg.connect(source_db.url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def _snapshot(url: str, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the schema's tables, to prove a check wrote nothing."""
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(sql.SQL("SELECT * FROM {}.{} ORDER BY 1").format(sql.Identifier(schema), sql.Identifier(table))).fetchall()
            for table in ("plans", "customers", "invoices", "log")
        }


def _mapping(schema: str, **queries: str) -> Mapping:
    base = {stage: f"SELECT * FROM {schema}.{stage}" for stage in ("plans", "customers", "invoices")}
    return Mapping(queries={**base, **{k: q.format(s=schema) for k, q in queries.items()}})


WRITING_QUERIES = {
    "insert-returning": (
        "INSERT INTO {s}.plans VALUES ('p2', 'Evil', 'month', 1, 'usd') RETURNING *",
        "plans query writes to the source (INSERT, UPDATE or DELETE); the source is only ever read",
    ),
    "delete-cte": (
        "WITH gone AS (DELETE FROM {s}.plans RETURNING *) SELECT * FROM gone",
        "plans query writes to the source (INSERT, UPDATE or DELETE); the source is only ever read",
    ),
    "update-cte-unused": (
        "WITH changed AS (UPDATE {s}.customers SET name = 'Evil' RETURNING id) SELECT * FROM {s}.plans",
        "plans query writes to the source (INSERT, UPDATE or DELETE); the source is only ever read",
    ),
    "select-for-update": (
        "SELECT * FROM {s}.plans FOR UPDATE",
        "plans query tries to write to the source, which is read only: "
        "cannot execute SELECT FOR UPDATE in a read-only transaction",
    ),
    "immutable-writer": (
        "SELECT * FROM {s}.plans WHERE {s}.log_immutable() = 2",
        "plans query failed: INSERT is not allowed in a non-volatile function",
    ),
}


@pytest.mark.parametrize("case", list(WRITING_QUERIES))
def test_a_writing_query_fails_the_check_and_writes_nothing(source: tuple[str, str], case: str) -> None:
    url, schema = source
    query, message = WRITING_QUERIES[case]
    before = _snapshot(url, schema)
    with source_connection(url) as conn, pytest.raises(ConfigError) as caught:
        check_mapping(conn, _mapping(schema, plans=query))
    assert str(caught.value) == message
    assert _snapshot(url, schema) == before


def test_a_function_that_writes_is_stopped_when_the_producer_reads(source: tuple[str, str]) -> None:
    # A volatile function runs only when rows are read: the check (which reads none) passes,
    url, schema = source
    query = "SELECT p.*, {s}.log_volatile() AS product_name FROM {s}.plans p".format(s=schema)
    before = _snapshot(url, schema)
    with source_connection(url) as conn:
        columns = check_mapping(conn, _mapping(schema, plans=query))
    assert columns["plans"] == ["id", "name", "billing_freq", "billing_freq_count", "currency", "product_name"]
    # and the read-only transaction stops the write when the producer reads,
    with source_connection(url) as conn, pytest.raises(SourceReadError) as caught:
        list(StageReader(conn, "plans", query, 10).chunks())
    assert str(caught.value) == (
        "reading plans from the source failed: the query tries to write to the source, which is read only "
        "(cannot execute INSERT in a read-only transaction)"
    )
    # even when the query first tries to lift it.
    lifted = "SELECT set_config('transaction_read_only', 'off', true) AS lift, p.*, {s}.log_volatile() AS n FROM {s}.plans p"
    with source_connection(url) as conn, pytest.raises(SourceReadError) as caught:
        list(StageReader(conn, "plans", lifted.format(s=schema), 10).chunks())
    assert str(caught.value) == "reading plans from the source failed: transaction read-write mode must be set before any query"
    assert _snapshot(url, schema) == before


def test_a_query_the_importer_cannot_order_fails_the_check(source: tuple[str, str]) -> None:
    # `json` has no equality operator: duplicates (PARTITION BY id) cannot be found; better said at start.
    url, schema = source
    with source_connection(url) as conn, pytest.raises(ConfigError) as caught:
        check_mapping(conn, _mapping(schema, plans="SELECT to_json(id) AS id, name, billing_freq, currency FROM {s}.plans"))
    assert str(caught.value) == (
        "plans query cannot be read in the importer's order (it groups and sorts rows by `id`): "
        "could not identify an equality operator for type json"
    )
    with source_connection(url) as conn, pytest.raises(ConfigError) as caught:
        check_mapping(
            conn,
            _mapping(schema, invoices="SELECT id, customer_id, type, to_json(date) AS date, amount_cents, currency, "
                                      "start_date, end_date FROM {s}.invoices"),
        )
    assert str(caught.value) == (
        "invoices query cannot be read in the importer's order (it groups and sorts rows by `id`, `customer_id` and "
        "`date`): could not identify an ordering operator for type json"
    )


def test_check_returns_the_columns_of_a_good_mapping(source: tuple[str, str]) -> None:
    url, schema = source
    with source_connection(url) as conn:
        columns = check_mapping(conn, _mapping(schema))
    assert columns["plans"] == ["id", "name", "billing_freq", "billing_freq_count", "currency"]
    assert columns["invoices"][:3] == ["id", "customer_id", "plan_id"]


# --- Through the command line ---------------------------------------------------------------------


def _runs_of(stack: Stack) -> int:
    return int(stack.sql("SELECT count(*) AS n FROM runs WHERE data_source = :ds", ds=stack.env["GROWPANEL_DATA_SOURCE_ID"])[0]["n"])


@pytest.mark.parametrize(
    ("queries", "message"),
    [
        (
            {"plans": "INSERT INTO {s}.plans VALUES ('p2', 'Evil', 'month', 1, 'usd') RETURNING *"},
            "plans query writes to the source (INSERT, UPDATE or DELETE); the source is only ever read",
        ),
        (
            {"customers": "WITH gone AS (DELETE FROM {s}.customers RETURNING *) SELECT * FROM gone"},
            "customers query writes to the source (INSERT, UPDATE or DELETE); the source is only ever read",
        ),
        (
            {"plans": "SELECT id, name, billing_freq, currency, 10 AS price FROM {s}.plans"},
            "plans query returns a column `price` that is not a plan field; allowed: "
            "id, external_id, name, billing_freq, billing_freq_count, currency, product_name",
        ),
        (
            {"invoices": "SELECT id, customer_id, type, date, currency, start_date, end_date FROM {s}.invoices"},
            "invoices query has no column `amount_cents` or `amount`, which is required",
        ),
        (
            {"customers": "SELECT *, 'ds_other' AS data_source FROM {s}.customers"},
            "customers query returns a column `data_source`: the importer sets it from GROWPANEL_DATA_SOURCE_ID, "
            "remove it from the query",
        ),
        ({"plans": "SELEC * FROM {s}.plans"}, 'plans query failed: syntax error at or near "SELEC"'),
    ],
    ids=["insert-returning", "writable-cte", "unknown-column", "missing-column", "data-source-column", "syntax"],
)
def test_start_refuses_a_bad_mapping_with_exit_3_and_one_line(
    stack: Stack, source: tuple[str, str], workdir: Path, queries: dict[str, str], message: str
) -> None:
    url, schema = source
    before = _snapshot(url, schema)
    mapping = mapping_file(workdir, schema, name=f"bad-{abs(hash(message))}.toml", **{k: q.format(s=schema) for k, q in queries.items()})
    result = stack.cli("start", "--mapping", mapping)
    assert result.code == 3, result.stderr
    assert result.stderr == f"growpanel-backfill: {message}\n"
    assert result.stdout == ""
    assert _runs_of(stack) == 0
    assert _snapshot(url, schema) == before


# --- One statement, any valid SELECT --------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "kept"),
    [
        ("SELECT 1;", "SELECT 1 "),
        ("SELECT 1; -- done\n", "SELECT 1  -- done\n"),
        ("SELECT 1 /* a; b */ ;  /* c */", "SELECT 1 /* a; b */    /* c */"),
        ("SELECT ';' AS x, \"a;b\" FROM t -- ;x\n", "SELECT ';' AS x, \"a;b\" FROM t -- ;x\n"),
        ("SELECT $$;$$, $tag$ ; $$ $tag$, E'\\';' AS y;", "SELECT $$;$$, $tag$ ; $$ $tag$, E'\\';' AS y "),
        ("SELECT 1 /* nested /* ; */ still */;", "SELECT 1 /* nested /* ; */ still */ "),
    ],
)
def test_a_final_semicolon_and_comments_are_kept_out_of_the_subquery(query: str, kept: str) -> None:
    assert single_statement("plans", query) == kept


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM plans; COMMIT; CREATE TABLE public.x(); SELECT 1",
        "SELECT 1; SELECT 2;",
        "SELECT * FROM plans) AS q; DROP TABLE plans; SELECT * FROM (SELECT 1",
        "SELECT 1 -- comment\n; DELETE FROM plans",
    ],
)
def test_a_second_statement_is_refused_naming_the_entity(query: str) -> None:
    with pytest.raises(ConfigError) as caught:
        single_statement("customers", query)
    assert str(caught.value).startswith("customers query holds more than one SQL statement")
    assert "\n" not in str(caught.value)


SIDE_EFFECTS = {
    "commit-then-create": "SELECT * FROM {s}.plans; COMMIT; CREATE TABLE {s}.evil (); SELECT 1",
    "escape-the-subquery": "SELECT * FROM {s}.plans) AS q; COMMIT; CREATE TABLE {s}.evil (); SELECT * FROM (SELECT 1",
    "commit-then-insert": "SELECT * FROM {s}.plans; COMMIT; INSERT INTO {s}.log VALUES (9); SELECT * FROM {s}.plans",
}


def _evil_exists(url: str, schema: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.evil",)).fetchone() == (True,)


@pytest.mark.parametrize("case", list(SIDE_EFFECTS))
def test_several_statements_never_run_even_past_the_file_check(source: tuple[str, str], case: str) -> None:
    # The server refuses them too (extended protocol), for the check, the producer and verify alike.
    from console.verify.errors import CheckIncomplete
    from console.verify.source import source_rows
    from producers.normalize import PayloadOptions

    url, schema = source
    query = SIDE_EFFECTS[case].format(s=schema)
    before = _snapshot(url, schema)
    with source_connection(url) as conn, pytest.raises(ConfigError) as caught:
        check_mapping(conn, _mapping(schema, plans=query))
    assert str(caught.value).startswith("plans query "), caught.value
    with source_connection(url) as conn, pytest.raises(SourceReadError):
        list(StageReader(conn, "plans", query, 10).chunks())
    with source_connection(url) as conn, pytest.raises(CheckIncomplete):
        list(source_rows(conn, "plans", query, PayloadOptions(data_source="ds")))
    assert not _evil_exists(url, schema)
    assert _snapshot(url, schema) == before


VALID_SELECTS = {
    "trailing-line-comment": "SELECT * FROM {s}.plans -- every plan",
    "comments-everywhere": "/* plans */ SELECT id, -- the key\n name, billing_freq /* freq */, currency FROM {s}.plans -- end",
    "trailing-semicolon-and-comment": "SELECT * FROM {s}.plans; -- done\n/* really */",
    "cte": "WITH p AS (SELECT * FROM {s}.plans) SELECT * FROM p",
    "union-all": "SELECT * FROM {s}.plans WHERE id = 'p1' UNION ALL SELECT 'p9', 'Nine', 'year', 1, 'eur'",
    "window-function": "SELECT id, name, billing_freq, currency, row_number() OVER (ORDER BY id)::int AS billing_freq_count FROM {s}.plans",
    "uuid-and-enum-casts": "SELECT 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS id, name, 'month'::{s}.freq AS billing_freq, "
                           "currency FROM {s}.plans",
}


@pytest.mark.parametrize("case", list(VALID_SELECTS))
def test_any_valid_single_select_is_a_mapping_query(source: tuple[str, str], workdir: Path, case: str) -> None:
    from producers.mapping import load_mapping
    from producers.normalize import PayloadOptions, RowBuilder

    url, schema = source
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TYPE {}.freq AS ENUM ('month', 'year')").format(sql.Identifier(schema)))
    # Read from a mapping file, exactly as `start` does,
    mapping = load_mapping(mapping_file(workdir, schema, name=f"ok-{case}.toml", plans=VALID_SELECTS[case].format(s=schema)))
    with source_connection(url) as conn:
        assert "id" in check_mapping(conn, mapping)["plans"]
        reader = StageReader(conn, "plans", mapping.queries["plans"], 10)
        builder = RowBuilder("plans", reader.columns, reader.type_names, PayloadOptions(data_source="ds"))
        built = [builder.build(row) for chunk in reader.chunks() for row in chunk]
    # every row comes through, and converts to a plan that can be sent.
    assert built and all(problems is None for _, _, problems, _, _ in built), built
    ids = {ext_id for ext_id, *_ in built}
    assert ids == {
        "cte": {"p1"}, "union-all": {"p1", "p9"}, "uuid-and-enum-casts": {"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
    }.get(case, {"p1"})
