"""What a resumed producer must not produce again: the ids already in committed batches.

A producer that dies loses its snapshot with its connection, so the one that takes over reads a source
that may have changed: rows inserted or deleted anywhere shift every position. It re-reads the stage
and skips, by id, what the committed batches already hold, which neither loses nor repeats a row that
is in the source at both moments. The ids come from the manifests, loaded once into a temporary table
of the state database (a set in memory would not fit tens of millions of invoices), and are looked up
one fetched chunk at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, text

# What a key stands for: a row's own id, or a group (invoices: a customer) with rows already batched.
ROW, GROUP = 0, 1


class Batched:
    """The ids (and groups) already batched in one stage of one pass; a private state-DB session."""

    def __init__(self, engine: Engine, run_id: int, stage: str, pass_no: int, group_index: int | None) -> None:
        self._conn: Connection | None = engine.connect()
        conn = self._conn
        # A session's temporary table: no transaction stays open on the state database while we read.
        conn.execute(text("CREATE TEMP TABLE IF NOT EXISTS gp_batched (kind smallint, id text, PRIMARY KEY (kind, id))"))
        conn.execute(text("TRUNCATE gp_batched"))
        # Unpacked by the state database itself: a stage of tens of millions of rows never passes through Python.
        entries = (
            "FROM batches b, jsonb_array_elements(convert_from(b.manifest, 'UTF8')::jsonb) AS e "
            "WHERE b.run_id = :r AND b.stage = :s AND b.pass_no = :p AND b.part = '' AND b.manifest IS NOT NULL"
        )
        params = {"r": run_id, "s": stage, "p": pass_no}
        self.count = conn.execute(
            text(f"INSERT INTO gp_batched SELECT DISTINCT 0, e->>0 {entries} ON CONFLICT DO NOTHING"), params  # noqa: S608
        ).rowcount
        if group_index is not None:
            conn.execute(
                text(f"INSERT INTO gp_batched SELECT DISTINCT 1, e->>{int(group_index)} {entries} "  # noqa: S608
                     f"AND e->>{int(group_index)} IS NOT NULL ON CONFLICT DO NOTHING"),
                params,
            )
        conn.execute(text("ANALYZE gp_batched"))
        conn.commit()

    def lookup(self, ids: Iterable[str], groups: Iterable[str]) -> tuple[set[str], set[str]]:
        """Which of `ids` are batched rows, and which of `groups` have batched rows."""
        assert self._conn is not None
        ids, groups = list(set(ids)), list(set(groups))
        found = self._conn.execute(
            text("SELECT kind, id FROM gp_batched WHERE (kind = 0 AND id = ANY(:i)) OR (kind = 1 AND id = ANY(:g))"),
            {"i": ids, "g": groups},
        ).all()
        self._conn.commit()
        return {i for k, i in found if k == ROW}, {i for k, i in found if k == GROUP}

    def close(self) -> None:
        """Drop the table with the session (never handed back to the pool with our table in it)."""
        if self._conn is not None:
            try:
                self._conn.rollback()
                self._conn.execute(text("DROP TABLE IF EXISTS gp_batched"))
                self._conn.commit()
            finally:
                self._conn.close()
                self._conn = None


def tail_instant(engine: Engine, batch_id: int | None, group: str | None, group_column: str, order_by: str) -> str | None:
    """The latest `order_by` value already sent for `group` in its last batch (None when unknown)."""
    if batch_id is None or group is None:
        return None
    with engine.connect() as conn:
        payload = conn.execute(text("SELECT payload FROM batches WHERE id = :b"), {"b": batch_id}).scalar_one_or_none()
    if payload is None:
        return None
    latest: str | None = None
    for obj in orjson.loads(payload):
        value: Any = obj.get(order_by)
        if obj.get(group_column) == group and isinstance(value, str):
            if latest is None or instant_key(value) > instant_key(latest):
                latest = value
    return latest


def instant_key(value: str) -> tuple[str, str]:
    """A sort key for the importer's normalised instants (`YYYY-MM-DDTHH:MM:SS[.fraction]Z`).

    Plain text order would put `...:00Z` after `...:00.5Z` (`Z` sorts after `.`).
    """
    if len(value) > 20 and value[19] == ".":
        return value[:19], value[20:-1].ljust(9, "0")
    return value[:19], ""
