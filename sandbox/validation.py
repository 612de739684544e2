"""Per-row validation of plans, customers and invoices, read from the integration guide."""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

import orjson

from sandbox.countries import COUNTRY_CODES
from sandbox.currencies import CURRENCY_CODES
from sandbox.dates import parse_instant

# Integers past this are not exactly representable as JSON numbers in most clients (doubles).
MAX_SAFE_INTEGER = 2**53 - 1
BILLING_FREQS = ("day", "week", "month", "year")
INVOICE_TYPES = ("subscription", "one-time", "refund", "cancellation")

Check = Callable[[str, Any], "str | None"]
"""Takes the field name and a non-null value; returns an error message or None."""
FieldSpec = tuple[str, Check, bool]
"""(field, check, required)."""
Validated = tuple["dict[str, Any] | None", "str | None"]
"""(the object to store, None) or (None, the error message)."""


def _show(value: Any) -> str:
    """Render a value for an error message, as JSON, cut short."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(field: str, value: Any) -> str | None:
    """A non-empty string."""
    if type(value) is not str:
        return f"{field} must be a string, got {_show(value)}"
    if not value:
        return f"{field} must not be empty"
    return None


def _string(field: str, value: Any) -> str | None:
    """Any string, empty included."""
    if type(value) is not str:
        return f"{field} must be a string, got {_show(value)}"
    return None


def _date(field: str, value: Any) -> str | None:
    """An ISO 8601 date or date-time string with real calendar values."""
    if type(value) is not str:
        return f"{field} must be an ISO 8601 date string, got {_show(value)}"
    if parse_instant(value) is None:
        return (
            f"{field} must be an ISO 8601 date (YYYY-MM-DD) or date-time "
            f"(YYYY-MM-DDTHH:MM[:SS[.fff]][Z|+HH:MM]), got {_show(value)}"
        )
    return None


def _country(field: str, value: Any) -> str | None:
    """A lowercase ISO 3166-1 alpha-2 code."""
    if type(value) is str:
        if value in COUNTRY_CODES:
            return None
        if value.lower() in COUNTRY_CODES:
            return f"{field} must be lowercase, got {_show(value)}"
    return f"{field} must be an ISO 3166-1 alpha-2 country code, got {_show(value)}"


def _state(field: str, value: Any) -> str | None:
    """A lowercase string."""
    if type(value) is not str:
        return f"{field} must be a string, got {_show(value)}"
    if value != value.lower():
        return f"{field} must be lowercase, got {_show(value)}"
    return None


def _currency(field: str, value: Any) -> str | None:
    """A lowercase ISO 4217 active currency code."""
    if type(value) is str:
        if value in CURRENCY_CODES:
            return None
        if value.lower() in CURRENCY_CODES:
            return f"{field} must be lowercase, got {_show(value)}"
    return f"{field} must be an ISO 4217 currency code, got {_show(value)}"


def _one_of(choices: tuple[str, ...]) -> Check:
    """A check that the value is one of `choices`."""
    allowed = frozenset(choices)
    listed = ", ".join(choices)

    def check(field: str, value: Any) -> str | None:
        if type(value) is str and value in allowed:
            return None
        return f"{field} must be one of {listed}, got {_show(value)}"

    return check


def _non_negative_int(field: str, value: Any) -> str | None:
    """An integer in [0, 2**53-1]; floats (even 9900.0), strings and booleans are refused."""
    if type(value) is int and 0 <= value <= MAX_SAFE_INTEGER:
        return None
    if type(value) is int and value > MAX_SAFE_INTEGER:
        return f"{field} must be at most {MAX_SAFE_INTEGER}, got {value}"
    return f"{field} must be a non-negative integer, got {_show(value)}"


def _positive_int(field: str, value: Any) -> str | None:
    """An integer in [1, 2**53-1]."""
    if type(value) is int and 0 < value <= MAX_SAFE_INTEGER:
        return None
    if type(value) is int and value > MAX_SAFE_INTEGER:
        return f"{field} must be at most {MAX_SAFE_INTEGER}, got {value}"
    return f"{field} must be a positive integer, got {_show(value)}"


def _boolean(field: str, value: Any) -> str | None:
    """A JSON true or false."""
    if type(value) is bool:
        return None
    return f"{field} must be a boolean, got {_show(value)}"


def _object(field: str, value: Any) -> str | None:
    """A JSON object."""
    if type(value) is dict:
        return None
    return f"{field} must be an object, got {_show(value)}"


# data_source is checked apart (against the key's data source), after these tables.
PLAN_FIELDS: tuple[FieldSpec, ...] = (
    ("id", _text, True),
    ("name", _text, True),
    ("billing_freq", _one_of(BILLING_FREQS), True),
    ("billing_freq_count", _positive_int, False),
    ("currency", _currency, True),
)
CUSTOMER_FIELDS: tuple[FieldSpec, ...] = (
    ("id", _text, True),
    ("name", _string, False),
    ("email", _string, False),
    ("created_date", _date, True),
    ("country", _country, True),
    ("state", _state, False),
    ("trial_started", _date, False),
    ("custom_variables", _object, False),
)
# amount_cents is handled apart because of its `amount` alias.
INVOICE_FIELDS: tuple[FieldSpec, ...] = (
    ("id", _text, True),
    ("customer_id", _text, True),
    ("plan_id", _text, False),
    ("type", _one_of(INVOICE_TYPES), True),
    ("date", _date, True),
    ("currency", _currency, True),
    ("start_date", _date, True),
    ("end_date", _date, True),
    ("payment_date", _date, False),
    ("quantity", _positive_int, False),
    ("proration", _boolean, False),
    ("discount", _non_negative_int, False),
)


def _check_fields(
    row: dict[str, Any], specs: tuple[FieldSpec, ...], clean: dict[str, Any], errors: list[str]
) -> None:
    """Run a field table over `row`: good values go to `clean`, messages to `errors`."""
    for field, check, required in specs:
        value = row.get(field)
        # A null counts as absent: the guide's own Python skeleton sends "plan_id": None,
        # "state": None, ... for optional fields it has no value for.
        if value is None:
            if required:
                errors.append(f"{field} is required")
            continue
        message = check(field, value)
        if message is None:
            clean[field] = value
        else:
            errors.append(message)


def _check_data_source(row: dict[str, Any], data_source: str, errors: list[str]) -> bool:
    """Check the row's data_source against the key's; True when it matches."""
    value = row.get("data_source")
    if value is None:
        errors.append("data_source is required")
        return False
    if type(value) is not str:
        errors.append(f"data_source must be a string, got {_show(value)}")
        return False
    if value != data_source:
        errors.append(
            f"data_source {_show(value)} does not match the API key's data source {_show(data_source)}"
        )
        return False
    return True


def validate_plan(row: dict[str, Any], data_source: str) -> Validated:
    """Validate one plan row."""
    errors: list[str] = []
    clean: dict[str, Any] = {}
    _check_fields(row, PLAN_FIELDS, clean, errors)
    _check_data_source(row, data_source, errors)
    if errors:
        return None, "; ".join(errors)
    clean["data_source"] = data_source
    return clean, None


def validate_customer(row: dict[str, Any], data_source: str) -> Validated:
    """Validate one customer row."""
    errors: list[str] = []
    clean: dict[str, Any] = {}
    _check_fields(row, CUSTOMER_FIELDS, clean, errors)
    if not clean.get("name") and not clean.get("email") and not _bad_name_or_email(errors):
        errors.append("name or email is required")
    _check_data_source(row, data_source, errors)
    if errors:
        return None, "; ".join(errors)
    clean["data_source"] = data_source
    return clean, None


def _bad_name_or_email(errors: list[str]) -> bool:
    """Whether name or email already has a type error (then "name or email is required" is noise)."""
    return any(e.startswith(("name ", "email ")) for e in errors)


def validate_invoice(
    row: dict[str, Any],
    data_source: str,
    customers: Container[str],
    plans: Container[str],
) -> Validated:
    """Validate one invoice row, its references included."""
    errors: list[str] = []
    clean: dict[str, Any] = {}
    _check_fields(row, INVOICE_FIELDS, clean, errors)
    _check_amount(row, clean, errors)
    if clean.get("type") == "subscription" and row.get("plan_id") is None:
        errors.append("plan_id is required when type is subscription")
    same_source = _check_data_source(row, data_source, errors)
    if same_source:
        # Only reference checks of well-formed ids against this key's data source make sense.
        customer_id = clean.get("customer_id")
        if customer_id is not None and customer_id not in customers:
            errors.append(f"Customer ID {customer_id} does not exist")
        plan_id = clean.get("plan_id")
        if plan_id is not None and plan_id not in plans:
            errors.append(f"Plan ID {plan_id} does not exist")
    if errors:
        return None, "; ".join(errors)
    clean["data_source"] = data_source
    return clean, None


def _check_amount(row: dict[str, Any], clean: dict[str, Any], errors: list[str]) -> None:
    """amount_cents, or its OpenAPI-model alias `amount`, stored as amount_cents."""
    cents = row.get("amount_cents")
    alias = row.get("amount")
    if cents is None:
        if alias is None:
            errors.append("amount_cents is required")
            return
        message = _non_negative_int("amount", alias)
        if message is None:
            clean["amount_cents"] = alias
        else:
            errors.append(message)
        return
    message = _non_negative_int("amount_cents", cents)
    if message is not None:
        errors.append(message)
        return
    # type() too, because 9900 == 9900.0 in Python.
    if alias is not None and (type(alias) is not int or alias != cents):
        errors.append(f"amount ({_show(alias)}) and amount_cents ({cents}) differ")
        return
    clean["amount_cents"] = cents
