"""The GrowPanel side of a comparison, spilled to a temporary table so memory stays flat.

The real API promises no listing order, so rows are copied as they come into a temporary table of
the state database and read back ordered by `id COLLATE "C"` (byte order, i.e. code point order in
UTF-8, which is Python's `str` order), joined with the run's rejected audit rows. Postgres sorts on
disk when it must; this process only ever holds one page and one fetch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

from models.db import libpq_url
from models.states import REJECTED_OUTCOMES

FETCH_ROWS = 2000
_TABLE = "gp_verify_listing"
# Spelled out (not a parameter) so the planner can use the audit's partial index on rejected rows.
_REJECTED = ", ".join(f"'{outcome}'" for outcome in REJECTED_OUTCOMES)


@dataclass(frozen=True, slots=True)
class StateRow:
    """One id on the state side: its stored object (if GrowPanel lists it) and its rejection (if any)."""

    id: str
    stored: dict[str, Any] | None
    copies: int
    variants: int
    outcome: str | None
    message: str | None


def state_connection(database_url: str) -> psycopg.Connection[Any]:
    """A connection of its own to the state database (the temporary table lives in its session)."""
    return psycopg.connect(libpq_url(database_url), connect_timeout=10, application_name="growpanel-backfill verify")


def create_spill(conn: psycopg.Connection[Any]) -> None:
    """An empty temporary table for one entity's listing (dropped at the end of the transaction)."""
    conn.execute(f"CREATE TEMPORARY TABLE {_TABLE} (id text NOT NULL, obj text NOT NULL) ON COMMIT DROP")


def spill(conn: psycopg.Connection[Any], pages: Iterable[list[dict[str, Any]]]) -> None:
    """COPY every listed object into the temporary table, one page at a time."""
    with conn.cursor() as cur:
        for page in pages:
            with cur.copy(f"COPY {_TABLE} (id, obj) FROM STDIN") as copy:
                for item in page:
                    copy.write_row((_listed_id(item.get("id")), orjson.dumps(item).decode()))


def _listed_id(value: Any) -> str:
    """The id as a string (a numeric id compares with the source's text form); absent ids as ''."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def state_rows(conn: psycopg.Connection[Any], run_id: int, entity: str) -> Iterator[StateRow]:
    """Listed objects and the run's rejected rows of `entity`, full-joined on id, in code point order."""
    query = f"""
        SELECT coalesce(g.id, a.external_id) AS id, g.obj, g.copies, g.variants, a.outcome, a.message
        FROM (SELECT id, min(obj) AS obj, count(*) AS copies, count(DISTINCT obj) AS variants
              FROM {_TABLE} GROUP BY id) AS g
        FULL JOIN (SELECT external_id, outcome, message FROM audit
                   WHERE run_id = %(run)s AND entity = %(entity)s AND outcome IN ({_REJECTED})) AS a
          ON a.external_id = g.id
        ORDER BY coalesce(g.id, a.external_id) COLLATE "C"
    """
    with conn.cursor(name=f"gp_verify_{entity}") as cur:
        cur.itersize = FETCH_ROWS
        cur.execute(query, {"run": run_id, "entity": entity})
        for row in cur:
            obj = orjson.loads(row[1]) if row[1] is not None else None
            yield StateRow(row[0], obj, int(row[2] or 0), int(row[3] or 0), row[4], row[5])
