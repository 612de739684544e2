"""A read-only connection to the state database through libpq itself, for the commands that must answer at once.

`status` and `errors` promise an answer within 150 ms (issue 13). Importing psycopg costs ~140 ms on a
2-core machine (its extension, asyncio, its type registry), SQLAlchemy ~160 ms more: the whole budget
before the first byte reaches PostgreSQL. libpq is the library psycopg drives; loaded with ctypes it costs
~10 ms, and everything that matters stays libpq's: URL parsing, `.pgpass`, `PG*` variables, TLS and
authentication. What is ours is small: text parameters, text results turned into Python values by type,
and a cursor to stream. Where no libpq can be loaded (psycopg installed without its binary wheel, on a
system without libpq.so.5), `connect` falls back to psycopg with the same interface, slower to start.
"""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from glob import glob
from typing import Any, Protocol

_OK, _TUPLES_OK = 1, 2
_SQLSTATE = ord("C")
_PARAM = re.compile(r"%\((\w+)\)s|%%")


class StateDbError(Exception):
    """libpq refused to connect (`sqlstate` None) or a statement failed (`sqlstate` its SQLSTATE)."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class Connection(Protocol):
    """What the read-only commands need from a connection."""

    def fetch(self, query: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def stream(self, query: str, params: Mapping[str, Any] | None = None, size: int = 2000) -> Iterator[dict[str, Any]]: ...

    def close(self) -> None: ...


def _library_paths() -> list[str]:
    """psycopg's bundled libpq first (the one psycopg itself would use), then the system's."""
    import importlib.util

    paths: list[str] = []
    spec = importlib.util.find_spec("psycopg_binary")
    if spec is not None and spec.origin:
        site = os.path.dirname(os.path.dirname(spec.origin))
        paths += sorted(glob(os.path.join(site, "psycopg_binary.libs", "libpq*.so*")))
        paths += sorted(glob(os.path.join(spec.origin.rpartition(os.sep)[0], ".dylibs", "libpq*.dylib")))
    return paths + ["libpq.so.5", "libpq.5.dylib"]


def _load() -> Any:
    for path in _library_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        _declare(lib)
        return lib
    return None


def _declare(lib: Any) -> None:
    p, s, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    for name, restype, argtypes in (
        ("PQconnectdbParams", p, [ctypes.POINTER(s), ctypes.POINTER(s), i]),
        ("PQstatus", i, [p]),
        ("PQerrorMessage", s, [p]),
        ("PQfinish", None, [p]),
        ("PQexecParams", p, [p, s, i, p, ctypes.POINTER(s), p, p, i]),
        ("PQresultStatus", i, [p]),
        ("PQresultErrorMessage", s, [p]),
        ("PQresultErrorField", s, [p, i]),
        ("PQntuples", i, [p]),
        ("PQnfields", i, [p]),
        ("PQfname", s, [p, i]),
        ("PQftype", ctypes.c_uint, [p, i]),
        ("PQgetvalue", s, [p, i, i]),
        ("PQgetisnull", i, [p, i, i]),
        ("PQclear", None, [p]),
    ):
        func = getattr(lib, name)
        func.restype, func.argtypes = restype, argtypes


def _numeric(text: str) -> Any:
    if text.lstrip("-").isdigit():
        return int(text)
    from decimal import Decimal

    return Decimal(text)


def _json(text: str) -> Any:
    import orjson

    return orjson.loads(text)


# Text output of PostgreSQL types -> what psycopg would return (DateStyle is set to ISO on connect).
_CONVERT: dict[int, Any] = {
    16: lambda t: t == "t",
    20: int, 21: int, 23: int, 26: int,
    700: float, 701: float, 1700: _numeric,
    1114: datetime.fromisoformat, 1184: datetime.fromisoformat,
    114: _json, 3802: _json,
    17: lambda t: bytes.fromhex(t[2:]),
}


def _text(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return b"t" if value else b"f"
    if isinstance(value, (int, float, str)):
        return str(value).encode()
    raise TypeError(f"unsupported parameter type {type(value).__name__}")


def numbered(query: str, params: Mapping[str, Any] | None) -> tuple[str, list[Any]]:
    """`%(name)s` placeholders (what psycopg and SQLAlchemy's driver take) -> `$n` and the values in order."""
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(0) == "%%":
            return "%"
        name = match.group(1)
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    text = _PARAM.sub(number, query)
    return text, [(params or {})[name] for name in order]


class LibpqConnection:
    """One libpq connection; every statement goes through PQexecParams (one statement, text parameters)."""

    def __init__(self, lib: Any, url: str, application_name: str) -> None:
        self._lib = lib
        # The URL's own settings win over ours: it comes last, and expand_dbname lets it override.
        pairs = [("application_name", application_name), ("connect_timeout", "10"), ("client_encoding", "UTF8"), ("dbname", url)]
        keys = (ctypes.c_char_p * (len(pairs) + 1))(*[k.encode() for k, _ in pairs], None)
        values = (ctypes.c_char_p * (len(pairs) + 1))(*[v.encode() for _, v in pairs], None)
        self._conn = lib.PQconnectdbParams(keys, values, 1)
        if not self._conn or lib.PQstatus(self._conn) != 0:
            message = (lib.PQerrorMessage(self._conn) or b"out of memory").decode(errors="replace")
            self.close()
            raise StateDbError(message.strip())
        self._exec("SET DateStyle TO ISO")

    def _exec(self, query: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        lib = self._lib
        if not self._conn:
            raise StateDbError("the connection is closed", "08003")
        text, values = numbered(query, params)
        array = (ctypes.c_char_p * max(len(values), 1))(*[_text(v) for v in values])
        result = lib.PQexecParams(self._conn, text.encode(), len(values), None, array, None, None, 0)
        try:
            status = lib.PQresultStatus(result) if result else -1
            if status not in (_OK, _TUPLES_OK):
                message = lib.PQresultErrorMessage(result) if result else lib.PQerrorMessage(self._conn)
                code = lib.PQresultErrorField(result, _SQLSTATE) if result else None
                raise StateDbError((message or b"").decode(errors="replace").strip(), code.decode() if code else None)
            return self._rows(result) if status == _TUPLES_OK else []
        finally:
            if result:
                lib.PQclear(result)

    def _rows(self, result: int) -> list[dict[str, Any]]:
        lib = self._lib
        fields = range(lib.PQnfields(result))
        names = [lib.PQfname(result, f).decode() for f in fields]
        convert = [_CONVERT.get(lib.PQftype(result, f), str) for f in fields]
        getvalue, isnull = lib.PQgetvalue, lib.PQgetisnull
        columns = list(zip(fields, names, convert))
        rows = []
        for r in range(lib.PQntuples(result)):
            row = {}
            for f, name, conv in columns:
                value = getvalue(result, r, f)
                # NULL reads as "": only then is the second call needed.
                row[name] = None if not value and isnull(result, r, f) else conv(value.decode())
            rows.append(row)
        return rows

    def fetch(self, query: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every row of one statement, as dicts."""
        return self._exec(query, params)

    def stream(self, query: str, params: Mapping[str, Any] | None = None, size: int = 2000) -> Iterator[dict[str, Any]]:
        """The rows of one statement through a server-side cursor, `size` at a time, in a READ ONLY transaction."""
        self._exec("BEGIN READ ONLY")
        try:
            self._exec(f"DECLARE growpanel_stream NO SCROLL CURSOR FOR {query}", params)
            while True:
                rows = self._exec(f"FETCH {int(size)} FROM growpanel_stream")
                yield from rows
                if len(rows) < size:
                    break
        finally:
            if self._conn:  # closed already when the caller dropped the rows after closing the connection
                self._exec("ROLLBACK")

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn:
            self._lib.PQfinish(self._conn)
            self._conn = None


class PsycopgConnection:
    """The same interface over psycopg, where no libpq could be loaded."""

    def __init__(self, url: str, application_name: str) -> None:
        import psycopg
        from psycopg.rows import dict_row

        try:
            self._conn = psycopg.connect(url, application_name=application_name, connect_timeout=10, row_factory=dict_row)
        except psycopg.Error as exc:
            raise StateDbError(str(exc).strip()) from None
        self._error = psycopg.Error

    def fetch(self, query: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every row of one statement, as dicts."""
        try:
            rows = self._conn.execute(query, params or {}).fetchall()
            self._conn.rollback()
            return rows
        except self._error as exc:
            raise StateDbError(str(exc).strip(), getattr(exc, "sqlstate", None)) from None

    def stream(self, query: str, params: Mapping[str, Any] | None = None, size: int = 2000) -> Iterator[dict[str, Any]]:
        """The rows of one statement through a server-side cursor."""
        try:
            with self._conn.cursor(name="growpanel_stream") as cursor:
                cursor.itersize = size
                yield from cursor.execute(query, params or {})
        except self._error as exc:
            raise StateDbError(str(exc).strip(), getattr(exc, "sqlstate", None)) from None
        finally:
            self._conn.rollback()

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


def connect(url: str, application_name: str = "growpanel-backfill cli", use_libpq: bool = True) -> Connection:
    """A connection for reading `url` (a postgresql:// URL), over libpq when it can be loaded."""
    url = url.replace("postgresql+psycopg://", "postgresql://", 1)
    lib = _load() if use_libpq else None
    if lib is None:
        return PsycopgConnection(url, application_name)
    return LibpqConnection(lib, url, application_name)
