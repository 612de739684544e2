"""Loaders that turn the source's date and JSON values straight into the API's JSON forms.

Postgres sends timestamps as text; with the session in UTC we rewrite that text into ISO 8601 with a `Z`
instead of building datetime objects: it is faster, keeps every digit of sub-second precision, and
values Python cannot represent (infinity, BC, year 10000) become `Unrepresentable` instead of an
exception that would abort the whole fetch. JSON our reader refuses (a lone surrogate escape, a number
past the double range, nesting past 1,024 levels) becomes `UnreadableJson` for the same reason: a loader
that raises loses every row of the fetch, not just the bad one.
"""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
from psycopg.adapt import Loader
from psycopg.types.json import set_json_loads


class Unrepresentable(str):
    """A source date that has no ISO 8601 form the API accepts (kept as Postgres printed it)."""

    __slots__ = ()


class UnreadableJson(str):
    """A `json`/`jsonb` value the JSON reader refused; the text is the reader's reason."""

    __slots__ = ()


def load_json(data: Any) -> Any:
    """orjson.loads, with a refused document turned into UnreadableJson instead of an exception."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return UnreadableJson(str(exc))


def _text(data: Any) -> str:
    # str() decodes the buffer in place (bytes() would copy it first): this runs for every date value.
    return str(data, "ascii", "replace")


class TimestamptzIsoLoader(Loader):
    """`timestamptz` in a UTC session -> `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`."""

    def load(self, data: Any) -> str:
        s = _text(data)
        if len(s) >= 22 and s[4] == "-" and s[10] == " " and s.endswith("+00"):
            return f"{s[:10]}T{s[11:-3]}Z"
        return Unrepresentable(s)


class TimestampIsoLoader(Loader):
    """`timestamp` without time zone is taken as UTC."""

    def load(self, data: Any) -> str:
        s = _text(data)
        if len(s) >= 19 and s[4] == "-" and s[10] == " " and not s.endswith("BC"):
            return f"{s[:10]}T{s[11:]}Z"
        return Unrepresentable(s)


class DateIsoLoader(Loader):
    """`date` -> midnight UTC."""

    def load(self, data: Any) -> str:
        s = _text(data)
        if len(s) == 10 and s[4] == "-":
            return f"{s}T00:00:00Z"
        return Unrepresentable(s)


def configure_source_connection(conn: psycopg.Connection[Any]) -> None:
    """Read-only, UTC, ISO dates, and our loaders, for every cursor of this connection."""
    conn.read_only = True
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("SET DateStyle = 'ISO, YMD'")
    conn.commit()
    conn.adapters.register_loader("timestamptz", TimestamptzIsoLoader)
    conn.adapters.register_loader("timestamp", TimestampIsoLoader)
    conn.adapters.register_loader("date", DateIsoLoader)
    set_json_loads(load_json, conn)
