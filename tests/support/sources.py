"""Building billing sources for tests: tables with GrowPanel's column names, rows from Python."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql

PLAN_COLUMNS = {"id": "text", "name": "text", "billing_freq": "text", "billing_freq_count": "int", "currency": "text"}
CUSTOMER_COLUMNS = {
    "id": "text",
    "name": "text",
    "email": "text",
    "created_date": "timestamptz",
    "country": "text",
    "state": "text",
    "trial_started": "timestamptz",
    "custom_variables": "jsonb",
}
INVOICE_COLUMNS = {
    "id": "text",
    "customer_id": "text",
    "plan_id": "text",
    "type": "text",
    "date": "timestamptz",
    "amount_cents": "bigint",
    "currency": "text",
    "start_date": "timestamptz",
    "end_date": "timestamptz",
    "payment_date": "timestamptz",
    "quantity": "int",
    "proration": "boolean",
    "discount": "bigint",
}


def create_table(conn: psycopg.Connection[Any], schema: str, table: str, columns: dict[str, str]) -> None:
    """CREATE TABLE schema.table with these column types."""
    conn.execute(
        sql.SQL("CREATE TABLE {}.{} ({})").format(
            sql.Identifier(schema),
            sql.Identifier(table),
            sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns.items()),
        )
    )


def insert_rows(conn: psycopg.Connection[Any], schema: str, table: str, rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> int:
    """COPY rows (dicts; missing keys are NULL) into schema.table."""
    n = 0
    stmt = sql.SQL("COPY {}.{} ({}) FROM STDIN").format(
        sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for row in rows:
            copy.write_row([_cell(row.get(c)) for c in columns])
            n += 1
    return n


def _cell(value: Any) -> Any:
    return orjson.dumps(value).decode() if isinstance(value, dict) else value


def build_source(
    url: str,
    schema: str,
    plans: Iterable[dict[str, Any]] = (),
    customers: Iterable[dict[str, Any]] = (),
    invoices: Iterable[dict[str, Any]] = (),
) -> None:
    """(Re)create `schema` with plans, customers and invoices tables holding these rows."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for table, columns, rows in (
            ("plans", PLAN_COLUMNS, plans),
            ("customers", CUSTOMER_COLUMNS, customers),
            ("invoices", INVOICE_COLUMNS, invoices),
        ):
            create_table(conn, schema, table, columns)
            insert_rows(conn, schema, table, rows, list(columns))


def execute(url: str, statement: str, *params: Any) -> None:
    """Run one statement on the source (to change data between runs)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement, params or None)  # type: ignore[arg-type]


def mapping_file(directory: Path, schema: str, name: str = "mapping.toml", **queries: str) -> str:
    """A mapping file reading schema.plans/customers/invoices (or the given queries)."""
    text = ""
    for entity in ("plans", "customers", "invoices"):
        query = queries.get(entity, f"SELECT * FROM {schema}.{entity}")
        text += f'[{entity}]\nquery = """{query}"""\n\n'
    path = directory / f"{schema}-{name}"
    path.write_text(text)
    return str(path)
