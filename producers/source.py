"""Reading the billing source: a READ ONLY snapshot and a server-side cursor over one stage's query."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from backfill.errors import ConfigError
from models.db import libpq_url
from producers.entities import ENTITIES
from producers.pgtypes import configure_source_connection
from producers.statement import embedded

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
        raise SourceUnavailable(f"SOURCE_DATABASE_URL: cannot connect to the source database: {reason}") from None
    try:
        try:
            configure_source_connection(conn)
        except psycopg.OperationalError as exc:
            raise SourceUnavailable(f"SOURCE_DATABASE_URL: the source database dropped the connection: {exc}") from None
        yield conn
    finally:
        conn.close()


def fingerprint(conn: psycopg.Connection[Any]) -> str:
    """Which database and search_path this connection reads (no host names: they differ between machines)."""
    row = conn.execute("SELECT current_database(), current_setting('search_path')").fetchone()
    conn.rollback()
    assert row is not None
    return f"database {row[0]} (search_path {row[1]})"


def stage_query(stage: str, query: str, batch_size: int) -> sql.Composed:
    """The user's query wrapped with duplicate counts and the deterministic order the producer needs.

    Rows of one group (invoices: one customer) come together, in (order_by, id) order within it; groups
    with more rows than fit one batch come first, longest first, so their sequential chains start early.
    The order only has to hold within one snapshot: a resumed producer skips by id what is already
    batched (`producers.resume`), so a changed source cannot shift it.
    """
    spec = ENTITIES[stage]
    inner = sql.SQL(embedded(query))  # type: ignore[arg-type] # the user's own SQL, run read only
    ident = sql.Identifier
    group = sql.SQL("")
    rank_order = sql.SQL("q.id")
    order = sql.SQL("s.id, s.{rank}").format(rank=ident(RANK))
    if spec.group_by is not None:
        by = ident(spec.group_by)
        within = [ident(spec.order_by)] if spec.order_by else []
        group = sql.SQL(", count(*) OVER (PARTITION BY q.{by}) AS {g}").format(by=by, g=ident(GROUP))
        rank_order = sql.SQL(", ").join([sql.SQL("q.{}").format(by), *(sql.SQL("q.{}").format(w) for w in within)])
        order = sql.SQL(
            "CASE WHEN s.{g} > {bs} THEN s.{g} ELSE 0 END DESC, s.{by}, {within}s.id, s.{rank}"
        ).format(
            g=ident(GROUP),
            bs=sql.Literal(batch_size),
            by=by,
            within=sql.SQL("").join(sql.SQL("s.{}, ").format(w) for w in within),
            rank=ident(RANK),
        )
    return sql.SQL(
        # Rows without an id are each their own row (invalid), not copies of one another.
        "SELECT * FROM (SELECT q.*, CASE WHEN {no_id} THEN 1 ELSE count(*) OVER (PARTITION BY q.id) END AS {dups}, "
        "CASE WHEN {no_id} THEN 1 ELSE row_number() OVER (PARTITION BY q.id ORDER BY {rank_order}) END AS {rank}{group} "
        "FROM ({inner}) AS q) AS s ORDER BY {order}"
    ).format(
        dups=ident(DUPS),
        rank=ident(RANK),
        rank_order=rank_order,
        group=group,
        inner=inner,
        order=order,
        no_id=sql.SQL("q.id IS NULL OR q.id::text = ''"),
    )


class StageReader:
    """Streams one stage's rows, with the column names and type names of the result."""

    def __init__(self, conn: psycopg.Connection[Any], stage: str, query: str, batch_size: int):
        self.conn = conn
        self.stage = stage
        # A server-side cursor: DECLARE goes through the extended protocol, one statement only.
        self.cursor = conn.cursor(name=f"gp_{stage}")
        self.cursor.itersize = FETCH_ROWS
        try:
            self.cursor.execute(stage_query(stage, query, batch_size))
        except psycopg.Error as exc:
            raise SourceReadError(stage, exc) from None
        desc = self.cursor.description or []
        self.columns = [d.name for d in desc]
        self.type_names = [type_name(conn, d.type_code) for d in desc]

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
        """Close the cursor (the snapshot's transaction stays open for the next stage)."""
        try:
            self.cursor.close()
        except psycopg.Error:
            pass


def begin_snapshot(conn: psycopg.Connection[Any]) -> None:
    """Every later read of this connection sees the source as it is now, until the transaction ends.

    One REPEATABLE READ, READ ONLY, DEFERRABLE transaction for all three stages, as pg_dump reads a
    database: a customer created while invoices are read is in neither stage, instead of having
    invoices GrowPanel refuses.
    """
    conn.rollback()
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    conn.deferrable = True
    # The snapshot is taken by the first statement of the transaction: take it now.
    conn.execute("SELECT 1")


class SourceUnavailable(ConfigError):
    """The source refused the connection: bad settings for `start`, perhaps a restart for a producer."""

    transient = True


class SourceReadError(ConfigError):
    """The source failed while streaming a stage: the run cannot go on until it is fixed."""

    def __init__(self, stage: str, exc: psycopg.Error):
        first = (getattr(exc.diag, "message_primary", None) or str(exc) or type(exc).__name__).splitlines()[0]
        if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
            first = f"the query tries to write to the source, which is read only ({first})"
        super().__init__(f"reading {stage} from the source failed: {first}")
        self.transient = is_transient(exc)


# SQLSTATEs that say "try again": a query cancelled on purpose (57014: our own cancel, statement_timeout)
# is not one of them, an administrator's shutdown, a lost connection or a serialization failure are.
_NOT_TRANSIENT = frozenset({"57014"})


def is_transient(exc: BaseException) -> bool:
    """Whether a source error may go away on its own (restart, failover, conflict with recovery)."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    return getattr(exc, "sqlstate", None) not in _NOT_TRANSIENT


def type_name(conn: psycopg.Connection[Any], oid: int) -> str:
    info = conn.adapters.types.get(oid)
    return info.name if info is not None else str(oid)
