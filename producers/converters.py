"""Converters: one source value to the API's value, or `Bad` with what is wrong with it.

Each converter returns the API value or raises `Bad` with a message that, prefixed with the field
name, tells the user what is wrong with the value. No value a source can deliver may raise anything
else: one bad row must never stop a fetch or a batch (the rules and the choices behind them are in
docs/data-rules.md). Which field uses which converter is in `producers.entities`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson

from producers.fields import BILLING_FREQ_AS_MONTHS, BILLING_FREQS, MAX_ID_LENGTH, MAX_JSON_DEPTH, MAX_JSON_INT
from producers.iso_codes import COUNTRIES, CURRENCIES
from producers.pgtypes import UnreadableJson, Unrepresentable

# Postgres type names whose values our loaders already turned into canonical ISO strings.
PG_DATE_TYPES = frozenset({"timestamptz", "timestamp", "date"})


class Bad(Exception):
    """A value that cannot be sent; the message completes '<field> ...'."""


# The audit names a row without a usable id `(no id: source row N)`: no real id may look like that.
PLACEHOLDER_PREFIX = "(no id: "
_NUL = "must not contain a NUL character (\\u0000)"


def show(value: Any, limit: int = 60) -> str:
    """A short, printable rendering of a bad value for messages (long text is cut, NULs escaped)."""
    cls = value.__class__
    if cls is UnreadableJson:
        text = f"JSON that cannot be read ({value})"
    elif cls is Unrepresentable:
        text = f"the date {str(value)!r}"
    elif cls is int and value.bit_length() > 3000:
        # str() of an int past 4,300 digits raises; no source type gives one, but a message must never fail.
        text = f"an integer of {value.bit_length()} bits"
    elif isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str):
        # Cut before repr: a 1 GB text must not be copied to say that it is wrong.
        text = repr(str(value)[:limit])
    elif isinstance(value, (bytes, bytearray, memoryview)):
        text = f"{type(value).__name__} {bytes(value[:limit])!r}"
    else:
        text = f"{type(value).__name__} {value!r}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def id_value(value: Any) -> str:
    t = type(value)
    if t is str:
        # Ids key the audit table (a btree holds at most ~2,700 bytes a key) and travel in every message.
        if len(value) > MAX_ID_LENGTH:
            raise Bad(f"must be at most {MAX_ID_LENGTH} characters, got {len(value)} characters: {show(value)}")
        if "\x00" in value:
            raise Bad(f"{_NUL}, got {show(value)}")
        if value.startswith(PLACEHOLDER_PREFIX):
            raise Bad(f"must not start with {PLACEHOLDER_PREFIX!r}, which marks rows without a usable id, got {show(value)}")
        return value
    if t is int or t is UUID:
        return str(value)
    if t is Decimal and value.is_finite() and value == value.to_integral_value():
        if value.adjusted() >= MAX_ID_LENGTH:
            raise Bad(f"must be at most {MAX_ID_LENGTH} characters, got the number {show(value)}")
        return str(int(value))
    raise Bad(f"must be text or an integer, got {show(value)}")


def plain_text(value: Any) -> str:
    if type(value) is str:
        if "\x00" in value:
            raise Bad(f"{_NUL}, got {show(value)}")
        return value
    raise Bad(f"must be text, got {show(value)}")


def _lower_code(value: Any) -> str:
    if type(value) is str:
        return value.strip().lower()
    raise Bad(f"must be text, got {show(value)}")


def state_code(value: Any) -> str:
    code = _lower_code(value)
    if "\x00" in code:
        raise Bad(f"{_NUL}, got {show(value)}")
    return code


def country_code(value: Any) -> str:
    code = _lower_code(value)
    if code not in COUNTRIES:
        raise Bad(f"must be an ISO 3166-1 alpha-2 country code, got {show(value)}")
    return code


def currency_code(value: Any) -> str:
    code = _lower_code(value)
    if code not in CURRENCIES:
        raise Bad(f"must be an ISO 4217 currency code, got {show(value)}")
    return code


# Stands for any integral value far outside the JSON range, without building a huge int.
_BEYOND = MAX_JSON_INT + 1


def _integer(value: Any) -> int:
    """The value as an int; magnitudes far past 2^53 come back as +-_BEYOND (messages show the value)."""
    t = type(value)
    if t is int:
        return value  # type: ignore[no-any-return]
    if t is Decimal and value.is_finite() and value == value.to_integral_value():
        if value.adjusted() > 18:
            return _BEYOND if value > 0 else -_BEYOND
        return int(value)
    if t is float and value.is_integer():
        if abs(value) > MAX_JSON_INT:
            return _BEYOND if value > 0 else -_BEYOND
        return int(value)
    raise Bad(f"must be an integer, got {show(value)}")


def _at_least(minimum: int, too_small: str) -> Callable[[Any], int]:
    """An integer converter with a lower bound, and the upper bound of exact JSON numbers."""

    def convert(value: Any) -> int:
        n = _integer(value)
        if n < minimum:
            raise Bad(f"{too_small}, got {show(value)}")
        if n > MAX_JSON_INT:
            raise Bad(f"is too large to send exactly as a JSON number (over 2^53-1), got {show(value)}")
        return n

    return convert


non_negative = _at_least(0, "must not be negative")
positive = _at_least(1, "must be a positive integer")


def boolean(value: Any) -> bool:
    if type(value) is bool:
        return value  # type: ignore[no-any-return]
    raise Bad(f"must be a boolean, got {show(value)}")


_JSON_KINDS: dict[type, str] = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def _json_problem(value: Any, depth: int = 1) -> str | None:
    """Why a loaded JSON value cannot be sent: a NUL anywhere, or nesting deeper than MAX_JSON_DEPTH."""
    if depth > MAX_JSON_DEPTH:
        return f"is nested more than {MAX_JSON_DEPTH} levels deep"
    if type(value) is dict:
        for key in value:
            if "\x00" in key:
                return f"{_NUL}, found in the key {show(key)}"
        value = value.values()
    for inner in value:
        t = type(inner)
        if t is str:
            if "\x00" in inner:
                return f"{_NUL}, found in the string {show(inner)}"
        elif t is dict or t is list:
            problem = _json_problem(inner, depth + 1)
            if problem is not None:
                return problem
    return None


def json_object(value: Any) -> dict[str, Any]:
    t = type(value)
    if t is str:
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise Bad(f"must be a JSON object, got text that is not JSON ({exc})") from None
    elif t is UnreadableJson:
        raise Bad(f"is JSON that cannot be read ({value})")
    if type(value) is dict:
        problem = _json_problem(value)
        if problem is not None:
            raise Bad(problem)
        return value
    if value is None:
        raise Bad("must be a JSON object, got null")
    kind = _JSON_KINDS.get(type(value))
    if kind is None:
        raise Bad(f"must be a JSON object, got {show(value)}")
    try:
        shown = orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        shown = show(value)
    raise Bad(f"must be a JSON object, got {kind} {shown if len(shown) <= 60 else shown[:57] + '...'}")


def trusted_instant(value: Any) -> str:
    """A value from a timestamp/date column: already canonical unless Unrepresentable."""
    if value.__class__ is Unrepresentable:
        raise Bad(f"cannot be sent as an ISO 8601 date (years 0001-9999), got {show(str(value))}")
    return value  # type: ignore[no-any-return]


_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z")
# The seconds' fraction of a text date: cut out before parsing (Python keeps only microseconds) and put back.
_FRACTION = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d([.,]\d+)")


def _format_instant(moment: datetime, fraction: str | None = None, original: Any = None) -> str:
    """ISO 8601 in UTC with a Z; `fraction` (digits) replaces Python's microseconds when given."""
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(timezone.utc)
        except OverflowError:
            shown = show(moment if original is None else original)
            raise Bad(f"falls outside the years 0001-9999 once converted to UTC, got {shown}") from None
    # Not strftime: its %Y does not pad years before 1000 ("1-01-01").
    text = moment.replace(tzinfo=None, microsecond=0).isoformat()
    if fraction:
        text += f".{fraction}"
    elif moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return f"{text}Z"


def parsed_instant(value: Any) -> str:
    """A date given as text (or a Python date): parsed as ISO 8601 and rewritten in UTC with a Z."""
    if type(value) is str:
        text = value.strip()
        if _CANONICAL.fullmatch(text):
            try:
                datetime.fromisoformat(text[:19])
            except ValueError:
                raise Bad(f"is not a valid ISO 8601 date, got {show(value)}") from None
            return text
        fraction = None
        cut = _FRACTION.match(text)
        if cut is not None:
            fraction = cut.group(1)[1:].rstrip("0")
            text = text[: cut.start(1)] + text[cut.end(1) :]
        try:
            moment = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise Bad(f"is not an ISO 8601 date, got {show(value)}") from None
        offset = moment.utcoffset()
        if fraction and offset is not None and offset.microseconds:
            # An offset with a fraction of a second shifts the fraction too: Python's microseconds, then.
            fraction = None
            moment = datetime.fromisoformat(value.strip().replace("z", "Z"))
        return _format_instant(moment, fraction, value)
    if isinstance(value, datetime):
        return _format_instant(value)
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00Z"
    if value.__class__ is Unrepresentable:
        return trusted_instant(value)
    raise Bad(f"must be a date or a timestamp, got {show(value)}")


def one_of(allowed: Sequence[str]) -> Callable[[Any], str]:
    allowed_set = frozenset(allowed)
    listing = ", ".join(allowed)

    def convert(value: Any) -> str:
        if type(value) is str and value in allowed_set:
            return value
        raise Bad(f"must be one of {listing}, got {show(value)}")

    return convert


def billing_freq(value: Any) -> str:
    if type(value) is str and (value in BILLING_FREQS or value in BILLING_FREQ_AS_MONTHS):
        return value
    raise Bad(f"must be one of {', '.join(BILLING_FREQS)}, got {show(value)}")


