"""Statements of the operator tools, run on either connection they get: SQLAlchemy's or `console.libpq`'s.

The read-only commands hold a `console.libpq` connection (no SQLAlchemy imported: issue 13's 150 ms);
`start --wait`, the report and the tests hold a SQLAlchemy one. The statements are written once, with
`%(name)s` placeholders, which both take.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


def fetch(conn: Any, query: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every row of `query`, as dicts."""
    if hasattr(conn, "exec_driver_sql"):
        return [dict(row._mapping) for row in conn.exec_driver_sql(query, dict(params or {}))]
    return conn.fetch(query, params)  # type: ignore[no-any-return]


def stream(conn: Any, query: str, params: Mapping[str, Any] | None = None, size: int = 2000) -> Iterator[dict[str, Any]]:
    """The rows of `query`, `size` at a time from a server-side cursor, so a million never sit in memory."""
    if hasattr(conn, "exec_driver_sql"):
        result = conn.execution_options(stream_results=True, yield_per=size).exec_driver_sql(query, dict(params or {}))
        for row in result:
            yield dict(row._mapping)
        return
    yield from conn.stream(query, params, size)
