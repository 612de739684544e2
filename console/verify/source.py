"""The source side: the run's mapping queries, read in the order a comparison or a month table needs.

Rows go through `producers.normalize.RowBuilder`, so each one is exactly the payload a run would send
(or the problems that keep it from being sent). The ordering wrappers are ours: the producer's order
(by customer, by date) suits batching, not a merge.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from console.verify.errors import CheckIncomplete
from producers.mapping import check_columns
from producers.normalize import PayloadOptions, RowBuilder
from producers.source import DUPS, FETCH_ROWS, SourceReadError
from producers.statement import embedded

ID_ORDER = "id"
CUSTOMER_ORDER = "customer_id"


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One source row as the importer sees it: its id, its payload or its problems, and its copies."""

    id: str | None
    payload: dict[str, Any] | None
    problems: list[str] | None
    copies: int

    @property
    def problem(self) -> str | None:
        """Why the importer would not send this row (None when it would)."""
        if self.id is None:
            return "the source row has no id"
        if self.copies > 1:
            return f"id appears {self.copies} times in the source"
        if self.problems:
            return "; ".join(self.problems)
        return None


def ordered_query(query: str, order: str) -> sql.Composed:
    """The mapping query with duplicate counts, ordered by id (or customer) as code point text."""
    return sql.SQL(
        "SELECT q.*, count(*) OVER (PARTITION BY q.id) AS {dups} FROM ({inner}) AS q "
        'ORDER BY (q.{key})::text COLLATE "C" NULLS FIRST, (q.id)::text COLLATE "C"'
    ).format(
        dups=sql.Identifier(DUPS),
        inner=sql.SQL(embedded(query)),  # the user's own SQL, one statement (a server-side cursor), read only
        key=sql.Identifier(order),
    )


def source_rows(
    conn: psycopg.Connection[Any], entity: str, query: str, options: PayloadOptions, order: str = ID_ORDER
) -> Iterator[SourceRow]:
    """Every row of one entity, normalised, in `order`; duplicated ids come once with their count."""
    with conn.cursor(name=f"gp_verify_{entity}") as cur:
        cur.itersize = FETCH_ROWS
        try:
            cur.execute(ordered_query(query, order))
        except psycopg.Error as exc:
            raise CheckIncomplete(str(SourceReadError(entity, exc))) from None
        columns = [d.name for d in cur.description or []]
        check_columns(entity, [c for c in columns if not c.startswith("__gp_")])
        type_names = [_type_name(conn, d.type_code) for d in cur.description or []]
        builder = RowBuilder(entity, columns, type_names, options)
        dups_at = columns.index(DUPS)
        last_duplicate: str | None = None
        try:
            for row in cur:
                ext_id, payload, problems, _customer, _plan = builder.build(row)
                copies = int(row[dups_at])
                if ext_id is None:
                    yield SourceRow(None, None, problems, 1)
                    continue
                if copies > 1:
                    # Copies of an id are adjacent in id order; in customer order they may not be.
                    if order == ID_ORDER and ext_id == last_duplicate:
                        continue
                    last_duplicate = ext_id
                yield SourceRow(ext_id, payload, problems, copies)
        except psycopg.Error as exc:
            raise CheckIncomplete(str(SourceReadError(entity, exc))) from None
    conn.rollback()


def _type_name(conn: psycopg.Connection[Any], oid: int) -> str:
    info = conn.adapters.types.get(oid)
    return info.name if info is not None else str(oid)
