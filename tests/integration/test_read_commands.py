"""The quick path of `status`, `errors` and `runs`: libpq through ctypes gives what psycopg gives, and
DATABASE_URL is read exactly as Settings reads it (issue 13)."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from backfill.errors import ConfigError
from backfill.settings import load_settings
from console.cli import context as ctx
from console.libpq import StateDbError, connect, numbered
from tests.support.services import Database

TYPED = """
SELECT true AS yes, false AS no, 7::smallint AS small, 2147483648::bigint AS big, sum(x) AS total,
       1.25::numeric AS exact, 0.5::float8 AS approx, 'it''s %%' AS words, NULL::text AS nothing,
       timestamptz '2024-02-29 23:59:58.5+02' AS instant, '{"a": [1, "b"]}'::jsonb AS doc, '\\x00ff'::bytea AS raw,
       %(r)s::int + %(r)s::int AS twice
FROM (VALUES (1::bigint), (2::bigint)) v(x)
"""


@pytest.mark.parametrize("use_libpq", [True, False], ids=["libpq", "psycopg"])
def test_both_drivers_return_the_values_psycopg_returns(state_db: Database, use_libpq: bool) -> None:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(state_db.url, row_factory=dict_row) as conn:
        expected = conn.execute(TYPED, {"r": 21}).fetchone()
    conn2 = connect(state_db.url, use_libpq=use_libpq)
    try:
        (row,) = conn2.fetch(TYPED, {"r": 21})
    finally:
        conn2.close()
    assert row == expected
    assert row["total"] == 3 and row["twice"] == 42 and row["exact"] == Decimal("1.25") and row["words"] == "it's %"
    assert row["instant"].isoformat() == expected["instant"].isoformat()


def test_a_parameter_is_a_value_never_sql(state_db: Database) -> None:
    conn = connect(state_db.url)
    try:
        hostile = "x'); DROP TABLE runs; --"
        assert conn.fetch("SELECT %(v)s::text AS v", {"v": hostile}) == [{"v": hostile}]
        assert conn.fetch("SELECT count(*) AS n FROM pg_class WHERE relname = %(v)s", {"v": hostile}) == [{"n": 0}]
        # One statement per call: a second one is refused by PostgreSQL's extended protocol.
        with pytest.raises(StateDbError) as refused:
            conn.fetch("SELECT 1; SELECT 2")
        assert refused.value.sqlstate == "42601"
    finally:
        conn.close()


def test_stream_reads_every_row_in_chunks_and_leaves_no_transaction(state_db: Database) -> None:
    conn = connect(state_db.url)
    try:
        rows = list(conn.stream("SELECT g AS n FROM generate_series(1, %(n)s) g ORDER BY g", {"n": 4501}, size=2000))
        assert [r["n"] for r in rows] == list(range(1, 4502))
        # The READ ONLY transaction the cursor lived in is over.
        assert conn.fetch("SHOW transaction_read_only") == [{"transaction_read_only": "off"}]
    finally:
        conn.close()


def test_numbered_placeholders() -> None:
    assert numbered("a = %(a)s AND b = %(b)s OR a = %(a)s AND c LIKE 'x%%'", {"a": 1, "b": 2}) == (
        "a = $1 AND b = $2 OR a = $1 AND c LIKE 'x%'", [1, 2],
    )


def test_errors_of_the_state_database_are_one_line(state_db: Database) -> None:
    with pytest.raises(ConfigError, match=r"^DATABASE_URL: cannot use the state database: .*port 1 failed"):
        ctx.Reader("postgresql://127.0.0.1:1/nowhere")
    reader = ctx.Reader(state_db.url)
    try:
        with pytest.raises(ConfigError, match="not migrated"):
            reader.fetch("SELECT 1 FROM no_such_table_here")
    finally:
        reader.close()


CASES = [
    ({"DATABASE_URL": "postgresql://a@h/x"}, None),
    ({"database_url": "postgresql+psycopg://a@h/x"}, None),
    ({"DATABASE_URL": ""}, "DATABASE_URL=postgresql://from-dotenv@h/x\n"),
    ({}, "export DATABASE_URL='postgres://quoted@h/x'  # comment\n"),
    ({"DATABASE_URL": "postgresql://env-wins@h/x"}, "DATABASE_URL=postgresql://dotenv-loses@h/x\n"),
    ({}, "database_url=postgresql://lower@h/x\n"),
]


@pytest.mark.parametrize(("env", "dotenv"), CASES)
def test_state_url_reads_what_settings_read(env: dict[str, str], dotenv: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an environment and maybe a .env file in the working directory
    for name in list(os.environ):
        if name.lower() == "database_url":
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    if dotenv is not None:
        (tmp_path / ".env").write_text(dotenv)
    # Then the quick reader finds the very value Settings finds
    assert ctx.state_url() == load_settings().database_url


@pytest.mark.parametrize(("value", "message"), [("", "DATABASE_URL is not set"), ("mysql://x/y", "DATABASE_URL is malformed: must be a postgresql:// URL")])
def test_state_url_fails_with_the_settings_message(value: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", value)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as quick:
        ctx.state_url()
    assert str(quick.value) == message
