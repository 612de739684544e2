"""A customer's invoices leave the producer in the order of the instant sent, whatever the column type."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from producers.entities import ENTITIES
from producers.normalize import PayloadOptions, RowBuilder
from producers.resume import instant_key
from producers.source import DUPS, GROUP, RANK, StageReader, source_connection
from producers.stream import Filters, StageStream
from tests.support.services import Database


@pytest.fixture
def text_dates(source_db: Database) -> Iterator[str]:
    schema = "order_text_dates"
    with psycopg.connect(source_db.url, autocommit=True) as conn:
        s = sql.Identifier(schema)
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}").format(s))
        conn.execute(sql.SQL("CREATE TABLE {}.invoices (id text, customer_id text, type text, date text, amount_cents int, "
                             "currency text, start_date text, end_date text)").format(s))
        rows = [
            # As text, the first sorts before the second; as instants it is 3 hours later.
            ("i1", "c1", "2024-01-10T23:00:00-05:00"),
            ("i2", "c1", "2024-01-11T01:00:00Z"),
            ("i3", "c1", "2024-01-11T01:00:00.5Z"),
            ("i4", "c1", "2024-01-11T01:00:00.25Z"),
            ("i5", "c1", "not a date"),
            ("i6", "c2", "2023-05-01"),
        ]
        for iid, customer, date in rows:
            conn.execute(sql.SQL("INSERT INTO {}.invoices VALUES (%s, %s, 'one-time', %s, 1, 'usd', %s, %s)").format(s),
                         (iid, customer, date, date, date))
    yield schema
    with psycopg.connect(source_db.url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def test_a_text_date_column_is_ordered_by_the_instant_sent(source_db: Database, text_dates: str) -> None:
    with source_connection(source_db.url) as conn:
        reader = StageReader(conn, "invoices", f"SELECT * FROM {text_dates}.invoices", 100)
        columns = reader.columns
        build = RowBuilder("invoices", columns, reader.type_names, PayloadOptions(data_source="ds")).build
        stream = StageStream(ENTITIES["invoices"], columns, reader.type_names, build, columns.index(DUPS),
                             columns.index(RANK), columns.index(GROUP), Filters())
        items = [item for chunk in reader.chunks() for item in stream.items(chunk)]
        items += list(stream.release())
    order = [item.entry[0] for item in items if item.entry is not None]
    # c1's sendable invoices by instant (the bad date last), then c2.
    assert order == ["i2", "i4", "i3", "i1", "i5", "i6"]


def test_instant_keys_order_fractions_as_numbers() -> None:
    values = ["2024-01-11T01:00:00.5Z", "2024-01-11T01:00:00Z", "2024-01-11T01:00:00.25Z", "2024-01-10T23:59:59.999999999Z"]
    assert sorted(values, key=instant_key) == [
        "2024-01-10T23:59:59.999999999Z", "2024-01-11T01:00:00Z", "2024-01-11T01:00:00.25Z", "2024-01-11T01:00:00.5Z",
    ]
