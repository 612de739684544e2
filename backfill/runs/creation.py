"""A run's creation: the `runs` row and its stages, and the one-active-run-per-data-source rule.

Written for psycopg alone, so that `start` creates its run without importing SQLAlchemy (issue 13:
the first request within 0.5 s of `start`). Callers holding a SQLAlchemy engine or connection pass
it as it is; the statements run on its psycopg connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

from backfill.errors import RunStateError
from models.states import RUN_ACTIVE_STATES, STAGES, RunState as R, sql_list

_ACTIVE_RUN = (
    f"SELECT id, state FROM runs WHERE data_source = %(ds)s AND state IN {sql_list(RUN_ACTIVE_STATES)} "  # noqa: S608
    "AND NOT dry_run AND id IS DISTINCT FROM %(r)s LIMIT 1"
)


@dataclass(frozen=True)
class RunOptions:
    """What `start` decides once, stored on the run."""

    data_source: str
    api_url: str
    batch_size: int
    mapping: dict[str, object]
    mapping_file: str | None = None
    dry_run: bool = False
    only_changed: bool = False
    reset_done: bool = False
    source_fingerprint: str | None = None


@contextmanager
def _psycopg(db: Any) -> Iterator[psycopg.Connection[Any]]:
    """The psycopg connection of `db`: itself, a SQLAlchemy connection's, or a pooled one of an engine."""
    if isinstance(db, psycopg.Connection):
        yield db
        return
    # Anything else is SQLAlchemy's, so SQLAlchemy is loaded already.
    import sqlalchemy

    if isinstance(db, sqlalchemy.Engine):
        with db.connect() as conn:
            yield conn.connection.driver_connection
    else:  # a Connection: the statements join the caller's transaction
        yield db.connection.driver_connection


def active_run_on(db: Any, data_source: str, except_run: int | None = None) -> tuple[int, str] | None:
    """The running or paused (real) run of a data source other than `except_run`, if any (in the
    caller's transaction when `db` is a connection)."""
    with _psycopg(db) as conn:
        row = conn.execute(_ACTIVE_RUN, {"ds": data_source, "r": except_run}).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def active_run(db: Any, data_source: str) -> tuple[int, str] | None:
    """The running or paused run of a data source, if any."""
    with _psycopg(db) as conn:
        found = active_run_on(conn, data_source)
        conn.rollback()
    return found


def active_message(active: tuple[int, str] | None, data_source: str) -> str:
    """Why a second run of the data source is refused, with the commands that end the first one."""
    if active is None:
        return f"another run for data source {data_source} is active"
    run_id, state = active
    return (
        f"run {run_id} for data source {data_source} is {state}: finish it with "
        f"`growpanel-backfill resume {run_id}` or stop it with `growpanel-backfill cancel {run_id}` first"
    )


def create_run(db: Any, options: RunOptions) -> int:
    """Insert the run and its stages in one transaction; refuse a second active run for the same data
    source (the partial unique index decides, so two concurrent `start`s cannot both win)."""
    with _psycopg(db) as conn:
        try:
            with conn.transaction():
                row = conn.execute(
                    f"""
                    INSERT INTO runs (data_source, api_url, state, dry_run, only_changed, batch_size, mapping,
                                      mapping_file, reset_at, source_fingerprint)
                    VALUES (%(ds)s, %(url)s, '{R.RUNNING}', %(dry)s, %(only)s, %(bs)s, %(mapping)s::jsonb, %(file)s,
                            CASE WHEN %(reset)s THEN now() END, %(fingerprint)s)
                    RETURNING id
                    """,  # noqa: S608 - a fixed state name
                    {
                        "ds": options.data_source,
                        "url": options.api_url,
                        "dry": options.dry_run,
                        "only": options.only_changed,
                        "bs": options.batch_size,
                        "mapping": orjson.dumps(options.mapping).decode(),
                        "file": options.mapping_file,
                        "reset": options.reset_done,
                        "fingerprint": options.source_fingerprint,
                    },
                ).fetchone()
                assert row is not None
                run_id = int(row[0])
                conn.cursor().executemany(
                    "INSERT INTO run_stages (run_id, stage) VALUES (%s, %s)", [(run_id, stage) for stage in STAGES]
                )
        except psycopg.errors.UniqueViolation:
            active = active_run_on(conn, options.data_source)
            conn.rollback()
            raise RunStateError(active_message(active, options.data_source)) from None
        if options.only_changed:
            # The accepted-hash lookup needs fresh statistics: right after a big run autovacuum may not
            # have analysed the audit yet, and the planner would scan a whole run per batch.
            with conn.transaction():
                conn.execute("ANALYZE audit")
    return run_id
