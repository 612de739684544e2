"""Turn one source row into the API's JSON object, or into the reasons it cannot be sent.

A `RowBuilder` is compiled once per stage from the query's column names and types, so the per-row
work is a loop over precomputed converters. Each converter returns the API value or raises `_Bad`
with a message that, prefixed with the field name, tells the user what is wrong with the value.
No value a source can deliver may raise anything else: one bad row must never stop a fetch or a batch
(the rules and the choices behind them are in docs/data-rules.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson

from producers.fields import (
    BILLING_FREQ_AS_MONTHS,
    BILLING_FREQS,
    DATE_FIELDS,
    INVOICE_TYPES,
    MAX_ID_LENGTH,
    MAX_JSON_DEPTH,
    MAX_JSON_INT,
)
from producers.iso_codes import COUNTRIES, CURRENCIES
from producers.pgtypes import UnreadableJson, Unrepresentable

# Postgres type names whose values our loaders already turned into canonical ISO strings.
_PG_DATE_TYPES = frozenset({"timestamptz", "timestamp", "date"})


class _Bad(Exception):
    """A value that cannot be sent; the message completes '<field> ...'."""


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


def _id(value: Any) -> str:
    t = type(value)
    if t is str:
        # Ids key the audit table (a btree holds at most ~2,700 bytes a key) and travel in every message.
        if len(value) > MAX_ID_LENGTH:
            raise _Bad(f"must be at most {MAX_ID_LENGTH} characters, got {len(value)} characters: {show(value)}")
        if "\x00" in value:
            raise _Bad(f"{_NUL}, got {show(value)}")
        return value
    if t is int or t is UUID:
        return str(value)
    if t is Decimal and value.is_finite() and value == value.to_integral_value():
        if value.adjusted() >= MAX_ID_LENGTH:
            raise _Bad(f"must be at most {MAX_ID_LENGTH} characters, got the number {show(value)}")
        return str(int(value))
    raise _Bad(f"must be text or an integer, got {show(value)}")


def _text(value: Any) -> str:
    if type(value) is str:
        if "\x00" in value:
            raise _Bad(f"{_NUL}, got {show(value)}")
        return value
    raise _Bad(f"must be text, got {show(value)}")


def _lower_code(value: Any) -> str:
    if type(value) is str:
        return value.strip().lower()
    raise _Bad(f"must be text, got {show(value)}")


def _state(value: Any) -> str:
    code = _lower_code(value)
    if "\x00" in code:
        raise _Bad(f"{_NUL}, got {show(value)}")
    return code


def _country(value: Any) -> str:
    code = _lower_code(value)
    if code not in COUNTRIES:
        raise _Bad(f"must be an ISO 3166-1 alpha-2 country code, got {show(value)}")
    return code


def _currency(value: Any) -> str:
    code = _lower_code(value)
    if code not in CURRENCIES:
        raise _Bad(f"must be an ISO 4217 currency code, got {show(value)}")
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
    raise _Bad(f"must be an integer, got {show(value)}")


def _at_least(minimum: int, too_small: str) -> Callable[[Any], int]:
    """An integer converter with a lower bound, and the upper bound of exact JSON numbers."""

    def convert(value: Any) -> int:
        n = _integer(value)
        if n < minimum:
            raise _Bad(f"{too_small}, got {show(value)}")
        if n > MAX_JSON_INT:
            raise _Bad(f"is too large to send exactly as a JSON number (over 2^53-1), got {show(value)}")
        return n

    return convert


_non_negative = _at_least(0, "must not be negative")
_positive = _at_least(1, "must be a positive integer")


def _boolean(value: Any) -> bool:
    if type(value) is bool:
        return value  # type: ignore[no-any-return]
    raise _Bad(f"must be a boolean, got {show(value)}")


_JSON_KINDS: dict[type, str] = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def _json_problem(value: Any, depth: int = 1) -> str | None:
    """Why a loaded JSON value cannot be sent: a NUL anywhere, or nesting deeper than MAX_JSON_DEPTH."""
    if depth > MAX_JSON_DEPTH:
        return f"is nested more than {MAX_JSON_DEPTH} levels deep"
    if type(value) is dict:
        for key, inner in value.items():
            if "\x00" in key:
                return f"{_NUL}, found in the key {show(key)}"
            t = type(inner)
            if t is str:
                if "\x00" in inner:
                    return f"{_NUL}, found in the string {show(inner)}"
            elif t is dict or t is list:
                problem = _json_problem(inner, depth + 1)
                if problem is not None:
                    return problem
        return None
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


def _object(value: Any) -> dict[str, Any]:
    t = type(value)
    if t is str:
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise _Bad(f"must be a JSON object, got text that is not JSON ({exc})") from None
    elif t is UnreadableJson:
        raise _Bad(f"is JSON that cannot be read ({value})")
    if type(value) is dict:
        problem = _json_problem(value)
        if problem is not None:
            raise _Bad(problem)
        return value
    if value is None:
        raise _Bad("must be a JSON object, got null")
    kind = _JSON_KINDS.get(type(value))
    if kind is None:
        raise _Bad(f"must be a JSON object, got {show(value)}")
    try:
        shown = orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        shown = show(value)
    raise _Bad(f"must be a JSON object, got {kind} {shown if len(shown) <= 60 else shown[:57] + '...'}")


def _trusted_instant(value: Any) -> str:
    """A value from a timestamp/date column: already canonical unless Unrepresentable."""
    if value.__class__ is Unrepresentable:
        raise _Bad(f"cannot be sent as an ISO 8601 date (years 0001-9999), got {show(str(value))}")
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
            raise _Bad(f"falls outside the years 0001-9999 once converted to UTC, got {shown}") from None
    # Not strftime: its %Y does not pad years before 1000 ("1-01-01").
    text = moment.replace(tzinfo=None, microsecond=0).isoformat()
    if fraction:
        text += f".{fraction}"
    elif moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return f"{text}Z"


def _parsed_instant(value: Any) -> str:
    """A date given as text (or a Python date): parsed as ISO 8601 and rewritten in UTC with a Z."""
    if type(value) is str:
        text = value.strip()
        if _CANONICAL.fullmatch(text):
            try:
                datetime.fromisoformat(text[:19])
            except ValueError:
                raise _Bad(f"is not a valid ISO 8601 date, got {show(value)}") from None
            return text
        fraction = None
        cut = _FRACTION.match(text)
        if cut is not None:
            fraction = cut.group(1)[1:].rstrip("0")
            text = text[: cut.start(1)] + text[cut.end(1) :]
        try:
            moment = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise _Bad(f"is not an ISO 8601 date, got {show(value)}") from None
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
        return _trusted_instant(value)
    raise _Bad(f"must be a date or a timestamp, got {show(value)}")


def _enum(allowed: Sequence[str]) -> Callable[[Any], str]:
    allowed_set = frozenset(allowed)
    listing = ", ".join(allowed)

    def convert(value: Any) -> str:
        if type(value) is str and value in allowed_set:
            return value
        raise _Bad(f"must be one of {listing}, got {show(value)}")

    return convert


def _billing_freq(value: Any) -> str:
    if type(value) is str and (value in BILLING_FREQS or value in BILLING_FREQ_AS_MONTHS):
        return value
    raise _Bad(f"must be one of {', '.join(BILLING_FREQS)}, got {show(value)}")


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "id": _id,
    "external_id": _id,
    "customer_id": _id,
    "plan_id": _id,
    "name": _text,
    "email": _text,
    "product_name": _text,
    "country": _country,
    "state": _state,
    "currency": _currency,
    "billing_freq": _billing_freq,
    "billing_freq_count": _positive,
    "type": _enum(INVOICE_TYPES),
    "amount_cents": _non_negative,
    "amount": _non_negative,
    "discount": _non_negative,
    "quantity": _positive,
    "proration": _boolean,
    "custom_variables": _object,
}

_REQUIRED: dict[str, tuple[str, ...]] = {
    "plans": ("id", "name", "billing_freq", "currency"),
    "customers": ("id", "created_date", "country"),
    "invoices": ("id", "customer_id", "type", "date", "amount_cents", "currency", "start_date", "end_date"),
}


@dataclass(frozen=True, slots=True)
class PayloadOptions:
    """Payload names where the guide and the SDK disagree."""

    data_source: str
    invoice_amount_field: str = "amount_cents"
    plan_send_external_id: bool = False


# (external id or None, the object to send or None, the problems, customer id, plan id)
Built = tuple[str | None, dict[str, Any] | None, list[str] | None, str | None, str | None]


class RowBuilder:
    """Compiled per stage: converts a source row tuple into a payload or a list of problems."""

    def __init__(self, entity: str, columns: Sequence[str], type_names: Sequence[str], options: PayloadOptions):
        self.entity = entity
        self.options = options
        plan: list[tuple[int, str, Callable[[Any], Any]]] = []
        for index, (name, type_name) in enumerate(zip(columns, type_names)):
            if name.startswith("__gp_"):
                continue
            if name in DATE_FIELDS:
                convert = _trusted_instant if type_name in _PG_DATE_TYPES else _parsed_instant
            else:
                convert = _CONVERTERS[name]
            plan.append((index, name, convert))
        self._plan = tuple(plan)
        # The source may name the amount either way; the payload uses the configured name(s).
        self._amount_from = "amount_cents" if "amount_cents" in columns else "amount"
        self._required = _REQUIRED[entity]

    def build(self, row: Sequence[Any]) -> Built:
        """Convert one row."""
        out: dict[str, Any] = {}
        problems: list[str] | None = None
        for index, name, convert in self._plan:
            value = row[index]
            if value is None or value == "":
                continue
            try:
                out[name] = convert(value)
            except _Bad as bad:
                if problems is None:
                    problems = []
                problems.append(f"{name} {bad}")
        if self._amount_from == "amount" and "amount" in out:
            out["amount_cents"] = out.pop("amount")
        for name in self._required:
            if name not in out:
                shown = self._amount_from if name == "amount_cents" else name
                if not (problems and any(p.startswith(shown + " ") for p in problems)):
                    problems = (problems or []) + [f"{shown} is required"]
        entity = self.entity
        if entity == "invoices":
            problems = self._finish_invoice(out, problems)
        elif entity == "customers":
            if out.get("state") == "":
                # A state of spaces only: empty once trimmed, so absent like an empty string.
                del out["state"]
            if "name" not in out and "email" not in out:
                # A name or email that is there but wrong has its own message already.
                if not (problems and any(p.startswith(("name ", "email ")) for p in problems)):
                    problems = (problems or []) + ["name or email is required"]
        else:
            problems = self._finish_plan(out, problems)
        ext_id = out.get("id")
        out["data_source"] = self.options.data_source
        return ext_id, (None if problems else out), problems, out.get("customer_id"), out.get("plan_id")

    def _finish_invoice(self, out: dict[str, Any], problems: list[str] | None) -> list[str] | None:
        alias = out.pop("amount", None)
        if alias is not None and "amount_cents" in out and alias != out["amount_cents"]:
            # Both columns given: they must agree, or we would silently send one of them.
            problems = (problems or []) + [f"amount ({alias}) and amount_cents ({out['amount_cents']}) differ"]
        if out.get("type") == "subscription" and "plan_id" not in out:
            if not (problems and any(p.startswith("plan_id ") for p in problems)):
                problems = (problems or []) + ["plan_id is required when type is subscription"]
        field = self.options.invoice_amount_field
        if field != "amount_cents" and "amount_cents" in out:
            if field == "amount":
                out["amount"] = out.pop("amount_cents")
            else:
                out["amount"] = out["amount_cents"]
        return problems

    def _finish_plan(self, out: dict[str, Any], problems: list[str] | None) -> list[str] | None:
        months = BILLING_FREQ_AS_MONTHS.get(out.get("billing_freq", ""))
        if months:
            out["billing_freq"] = "month"
            count = months * out.get("billing_freq_count", 1)
            if count > MAX_JSON_INT:
                problems = (problems or []) + [f"billing_freq_count is too large once counted in months, got {count}"]
            out["billing_freq_count"] = count
        if self.options.plan_send_external_id and "id" in out and "external_id" not in out:
            out["external_id"] = out["id"]
        return problems
