"""Reading the billing source: a READ ONLY connection and a server-side cursor over one stage's query."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from backfill.errors import ConfigError
from models.db import libpq_url
from producers.pgtypes import configure_source_connection

FETCH_ROWS = 2000
# Columns the importer adds to every stage query.
DUPS, RANK, GROUP = "__gp_dups", "__gp_rank", "__gp_group"


@contextmanager
def source_connection(url: str) -> Iterator[psycopg.Connection[Any]]:
    """A read-only session in UTC with our loaders; a bad URL is a ConfigError naming the variable."""
    try:
        conn = psycopg.connect(libpq_url(url), connect_timeout=10, application_name="growpanel-backfill source")
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"SOURCE_DATABASE_URL: cannot connect to the source database: {reason}") from None
    try:
        configure_source_connection(conn)
        yield conn
    finally:
        conn.close()


def fingerprint(conn: psycopg.Connection[Any]) -> str:
    """Which database and search_path this connection reads (no host names: they differ between machines)."""
    row = conn.execute("SELECT current_database(), current_setting('search_path')").fetchone()
    conn.rollback()
    assert row is not None
    return f"database {row[0]} (search_path {row[1]})"


def stage_query(stage: str, query: str, batch_size: int, targets: Sequence[str] | None) -> sql.Composed:
    """The user's query wrapped with duplicate counts and the deterministic order the producer needs.

    Invoices come grouped by customer, in (date, id) order within a customer; customers with more
    invoices than fit one batch come first, longest first, so their sequential chains start early.
    """
    inner = sql.SQL(query)  # type: ignore[arg-type] # the user's own SQL, run read only
    ident = sql.Identifier
    group = sql.SQL("")
    rank_order = sql.SQL("q.id")
    order = sql.SQL("s.id, s.{rank}").format(rank=ident(RANK))
    if stage == "invoices":
        group = sql.SQL(", count(*) OVER (PARTITION BY q.customer_id) AS {g}").format(g=ident(GROUP))
        rank_order = sql.SQL("q.customer_id, q.{d}").format(d=ident("date"))
        order = sql.SQL(
            "CASE WHEN s.{g} > {bs} THEN s.{g} ELSE 0 END DESC, s.customer_id, s.{d}, s.id, s.{rank}"
        ).format(g=ident(GROUP), bs=sql.Literal(batch_size), d=ident("date"), rank=ident(RANK))
    # The ids are a literal, not a parameter: with parameters, a `%` in the user's query would be read
    # as a placeholder.
    where = sql.SQL("WHERE q.id::text = ANY({ids}::text[])").format(ids=sql.Literal(list(targets))) if targets is not None else sql.SQL("")
    return sql.SQL(
        # Rows without an id are each their own row (invalid), not copies of one another.
        "SELECT * FROM (SELECT q.*, CASE WHEN {no_id} THEN 1 ELSE count(*) OVER (PARTITION BY q.id) END AS {dups}, "
        "CASE WHEN {no_id} THEN 1 ELSE row_number() OVER (PARTITION BY q.id ORDER BY {rank_order}) END AS {rank}{group} "
        "FROM ({inner}) AS q {where}) AS s ORDER BY {order}"
    ).format(
        dups=ident(DUPS),
        rank=ident(RANK),
        rank_order=rank_order,
        group=group,
        inner=inner,
        where=where,
        order=order,
        no_id=sql.SQL("q.id IS NULL OR q.id::text = ''"),
    )


class StageReader:
    """Streams one stage's rows from a position, with the column names and type names of the result."""

    def __init__(self, conn: psycopg.Connection[Any], stage: str, query: str, batch_size: int, targets: Sequence[str] | None):
        self.conn = conn
        self.stage = stage
        self.cursor = conn.cursor(name=f"gp_{stage}")
        self.cursor.itersize = FETCH_ROWS
        try:
            self.cursor.execute(stage_query(stage, query, batch_size, targets))
        except psycopg.Error as exc:
            raise SourceReadError(stage, exc) from None
        desc = self.cursor.description or []
        self.columns = [d.name for d in desc]
        self.type_names = [_type_name(conn, d.type_code) for d in desc]

    def skip(self, rows: int) -> None:
        """Move past rows already in committed batches (MOVE FORWARD, nothing transferred)."""
        if rows:
            try:
                self.cursor.scroll(rows)
            except psycopg.Error as exc:
                raise SourceReadError(self.stage, exc) from None

    def chunks(self) -> Iterator[list[tuple[Any, ...]]]:
        """Fetch FETCH_ROWS rows at a time until the end."""
        while True:
            try:
                rows = self.cursor.fetchmany(FETCH_ROWS)
            except psycopg.Error as exc:
                raise SourceReadError(self.stage, exc) from None
            if not rows:
                return
            yield rows

    def close(self) -> None:
        """Close the cursor (the transaction ends with the connection)."""
        try:
            self.cursor.close()
        except psycopg.Error:
            pass


class SourceReadError(ConfigError):
    """The source failed while streaming a stage: the run cannot go on until it is fixed."""

    def __init__(self, stage: str, exc: psycopg.Error):
        first = (getattr(exc.diag, "message_primary", None) or str(exc) or type(exc).__name__).splitlines()[0]
        if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
            first = f"the query tries to write to the source, which is read only ({first})"
        super().__init__(f"reading {stage} from the source failed: {first}")
        self.transient = isinstance(exc, psycopg.OperationalError)


def _type_name(conn: psycopg.Connection[Any], oid: int) -> str:
    info = conn.adapters.types.get(oid)
    return info.name if info is not None else str(oid)
