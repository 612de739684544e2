"""Normalisation of source rows into the API's JSON (`producers.normalize`, `producers.pgtypes`).

Each converter is tried with values it must accept (and what it turns them into) and values it must
refuse (and the exact message). The loaders are tried against a real PostgreSQL, through the same
read-only source connection and stage query the producer uses. See docs/data-rules.md.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
import psycopg
import pytest
from psycopg import sql

from producers.normalize import PayloadOptions, RowBuilder
from producers.pgtypes import UnreadableJson, Unrepresentable
from producers.source import StageReader, source_connection
from tests.support.services import Database

OPTIONS = PayloadOptions(data_source="ds_test")

PLAN = {"id": "p1", "name": "Pro", "billing_freq": "month", "currency": "usd"}
CUSTOMER = {"id": "c1", "name": "Acme", "created_date": "2024-01-15T00:00:00Z", "country": "us"}
INVOICE = {
    "id": "i1",
    "customer_id": "c1",
    "plan_id": "p1",
    "type": "subscription",
    "date": "2024-02-01T00:00:00Z",
    "amount_cents": 9900,
    "currency": "usd",
    "start_date": "2024-02-01T00:00:00Z",
    "end_date": "2024-03-01T00:00:00Z",
}
BASE = {"plans": PLAN, "customers": CUSTOMER, "invoices": INVOICE}
ENTITY_OF = {
    **{f: "plans" for f in ("billing_freq", "billing_freq_count", "product_name", "external_id")},
    **{f: "customers" for f in ("name", "email", "country", "state", "created_date", "trial_started", "custom_variables")},
    **{f: "invoices" for f in ("id", "customer_id", "plan_id", "type", "date", "amount_cents", "currency",
                               "start_date", "end_date", "payment_date", "quantity", "proration", "discount")},
}

RTL = "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u202eevil\u202c"
EMOJI = "\U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 Family \U0001f1e9\U0001f1f0 \U0001f9fe"
COMBINING = "Ame\u0301lie Z\u0351\u0310a\u0336lgo\u0337"
TEN_KB = ("Grand Ω Company Ltd " * 600)[:10240]


def build(entity: str, types: dict[str, str] | None = None, options: PayloadOptions = OPTIONS, **values: Any) -> tuple[Any, ...]:
    """RowBuilder.build on one row whose columns are `values` (type names from `types`, else text)."""
    columns = list(values)
    type_names = [(types or {}).get(c, "text") for c in columns]
    return RowBuilder(entity, columns, type_names, options).build([values[c] for c in columns])


def convert(field: str, value: Any, type_name: str = "text") -> tuple[dict[str, Any] | None, list[str] | None]:
    """A valid row of the field's entity with `field` set to `value`: (payload, problems)."""
    entity = ENTITY_OF[field]
    _, payload, problems, _, _ = build(entity, {field: type_name}, **{**BASE[entity], field: value})
    return payload, problems


# (field, source value, value sent to the API)
ACCEPTED = [
    # ids: text exactly as it is, integers and integral numerics as their decimal text, uuids
    ("id", "inv-1", "inv-1"),
    ("id", "  spaced id  ", "  spaced id  "),
    ("id", "\u767a\u7968-\u21161-\U0001f9fe", "\u767a\u7968-\u21161-\U0001f9fe"),
    ("id", "inv'; DELETE FROM audit; --", "inv'; DELETE FROM audit; --"),
    ("id", "x" * 512, "x" * 512),
    ("id", 42, "42"),
    ("id", -7, "-7"),
    ("id", 2**63 - 1, "9223372036854775807"),
    ("id", Decimal("42"), "42"),
    ("id", Decimal("42.000"), "42"),
    ("id", UUID("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
    ("customer_id", 7, "7"),
    ("plan_id", "plan_pro", "plan_pro"),
    # other text is kept exactly: long, every kind of Unicode, things that look like SQL or JSON
    ("name", TEN_KB, TEN_KB),
    ("name", RTL, RTL),
    ("name", EMOJI, EMOJI),
    ("name", COMBINING, COMBINING),
    ("name", "Robert'); DROP TABLE customers;--", "Robert'); DROP TABLE customers;--"),
    ("name", '{"id": "c_other", "data_source": "ds_evil"}', '{"id": "c_other", "data_source": "ds_evil"}'),
    ("name", "back\\u0000slash", "back\\u0000slash"),
    ("name", "  Acme  ", "  Acme  "),
    ("email", "not an email", "not an email"),
    ("product_name", "Pro \U0001f680", "Pro \U0001f680"),
    # country, state and currency are trimmed and lowercased
    ("country", " DK ", "dk"),
    ("country", "Us", "us"),
    ("country", "XK", "xk"),
    ("state", " CA ", "ca"),
    ("state", "\u00cele-de-France", "\u00eele-de-france"),
    ("currency", "USD", "usd"),
    ("currency", " eur ", "eur"),
    ("currency", "HRK", "hrk"),
    ("billing_freq", "day", "day"),
    ("billing_freq", "year", "year"),
    # integers: Python ints, integral floats and numerics
    ("billing_freq_count", 3, 3),
    ("billing_freq_count", 3.0, 3),
    ("billing_freq_count", Decimal("12"), 12),
    ("amount_cents", 0, 0),
    ("amount_cents", 2**31 + 1, 2**31 + 1),
    ("amount_cents", 2**53 - 1, 2**53 - 1),
    ("amount_cents", 9900.0, 9900),
    ("amount_cents", Decimal("9900.00"), 9900),
    ("quantity", 2.0, 2),
    ("discount", 0, 0),
    ("proration", True, True),
    ("proration", False, False),
    ("type", "one-time", "one-time"),
    ("type", "refund", "refund"),
    ("type", "cancellation", "cancellation"),
    # custom_variables: objects (from jsonb, json or JSON text)
    ("custom_variables", {"industry": "Tech", "size": "50-100"}, {"industry": "Tech", "size": "50-100"}),
    ("custom_variables", '{"a": 1, "b": {"c": [1, "x", null]}}', {"a": 1, "b": {"c": [1, "x", None]}}),
    ("custom_variables", '{"escaped": "\\\\u0000"}', {"escaped": "\\u0000"}),
    ("custom_variables", {}, {}),
    # dates given as text: parsed as ISO 8601 and rewritten in UTC with a Z, every fraction digit kept
    ("date", "2024-01-15", "2024-01-15T00:00:00Z"),
    ("date", "2024-01-15T10:20:30Z", "2024-01-15T10:20:30Z"),
    ("date", "2024-01-15T10:20:30.123456789Z", "2024-01-15T10:20:30.123456789Z"),
    ("date", "2024-01-15 10:20:30", "2024-01-15T10:20:30Z"),
    ("date", "2024-01-15T10:20:30+02:00", "2024-01-15T08:20:30Z"),
    ("date", "2024-01-15 10:20:30.1234567-05:00", "2024-01-15T15:20:30.1234567Z"),
    ("date", "2024-01-15T10:20:30.500+01:00", "2024-01-15T09:20:30.5Z"),
    ("date", "2024-01-15T00:30:00+05:30", "2024-01-14T19:00:00Z"),
    ("date", "  2024-01-15  ", "2024-01-15T00:00:00Z"),
    ("date", "2024-01-15t10:20:30z", "2024-01-15T10:20:30Z"),
    ("date", "20240115", "2024-01-15T00:00:00Z"),
    ("date", "0001-01-01", "0001-01-01T00:00:00Z"),
    ("date", "9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
    ("date", datetime(2024, 1, 15, 10, 20, 30, 123000, tzinfo=timezone(timedelta(hours=-3))), "2024-01-15T13:20:30.123Z"),
    ("date", datetime(2024, 1, 15, 10, 20, 30), "2024-01-15T10:20:30Z"),
    ("date", date(2024, 1, 15), "2024-01-15T00:00:00Z"),
    ("trial_started", "2024-01-10T08:00:00+01:00", "2024-01-10T07:00:00Z"),
    ("payment_date", "2024-02-02", "2024-02-02T00:00:00Z"),
]


@pytest.mark.parametrize(("field", "value", "sent"), ACCEPTED, ids=[f"{f}-{n}" for n, (f, _, _) in enumerate(ACCEPTED)])
def test_accepted_values_are_sent_normalised(field: str, value: Any, sent: Any) -> None:
    payload, problems = convert(field, value)
    assert problems is None
    assert payload is not None
    assert payload[field] == sent
    assert type(payload[field]) is type(sent)


def _cut(text: str) -> str:
    """How `show` renders a long text: its repr cut to 60 characters."""
    return repr(text)[:57] + "..."


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


# (field, source value, the one problem reported, column type name)
REFUSED = [
    ("id", 1.5, "id must be text or an integer, got 1.5"),
    ("id", True, "id must be text or an integer, got bool True"),
    ("id", b"abc", "id must be text or an integer, got bytes b'abc'"),
    ("id", [1, 2], "id must be text or an integer, got list [1, 2]"),
    ("id", Decimal("4.2"), "id must be text or an integer, got 4.2"),
    ("id", "x" * 513, f"id must be at most 512 characters, got 513 characters: {_cut('x' * 513)}"),
    ("id", Decimal("1E+600"), "id must be at most 512 characters, got the number 1E+600"),
    ("id", "a\x00b", "id must not contain a NUL character (\\u0000), got 'a\\x00b'"),
    ("customer_id", {"a": 1}, "customer_id must be text or an integer, got dict {'a': 1}"),
    ("plan_id", "p\x00", "plan_id must not contain a NUL character (\\u0000), got 'p\\x00'"),
    ("name", 5, "name must be text, got 5"),
    ("name", b"Ac\x00me", "name must be text, got bytes b'Ac\\x00me'"),
    ("name", "Ac\x00me", "name must not contain a NUL character (\\u0000), got 'Ac\\x00me'"),
    ("name", "x\x00" + TEN_KB, f"name must not contain a NUL character (\\u0000), got {_cut('x' + chr(0) + TEN_KB)}"),
    ("email", ["a@b.c"], "email must be text, got list ['a@b.c']"),
    ("country", "USA", "country must be an ISO 3166-1 alpha-2 country code, got 'USA'"),
    ("country", "zz", "country must be an ISO 3166-1 alpha-2 country code, got 'zz'"),
    ("country", "   ", "country must be an ISO 3166-1 alpha-2 country code, got '   '"),
    ("country", 840, "country must be text, got 840"),
    ("state", "C\x00A", "state must not contain a NUL character (\\u0000), got 'C\\x00A'"),
    ("currency", "usdollar", "currency must be an ISO 4217 currency code, got 'usdollar'"),
    ("currency", "$", "currency must be an ISO 4217 currency code, got '$'"),
    ("billing_freq", "Monthly", "billing_freq must be one of day, week, month, year, got 'Monthly'"),
    ("billing_freq", "quarterly", "billing_freq must be one of day, week, month, year, got 'quarterly'"),
    ("billing_freq_count", 0, "billing_freq_count must be a positive integer, got 0"),
    ("billing_freq_count", -1, "billing_freq_count must be a positive integer, got -1"),
    ("billing_freq_count", 1.5, "billing_freq_count must be an integer, got 1.5"),
    ("amount_cents", -1, "amount_cents must not be negative, got -1"),
    ("amount_cents", 99.5, "amount_cents must be an integer, got 99.5"),
    ("amount_cents", Decimal("99.50"), "amount_cents must be an integer, got 99.50"),
    ("amount_cents", 2**53, "amount_cents is too large to send exactly as a JSON number (over 2^53-1), got 9007199254740992"),
    ("amount_cents", 2**63 - 1, "amount_cents is too large to send exactly as a JSON number (over 2^53-1), got 9223372036854775807"),
    ("amount_cents", Decimal("1E+30"), "amount_cents is too large to send exactly as a JSON number (over 2^53-1), got 1E+30"),
    ("amount_cents", Decimal("1E+100000"), "amount_cents is too large to send exactly as a JSON number (over 2^53-1), got 1E+100000"),
    ("amount_cents", Decimal("-1E+100000"), "amount_cents must not be negative, got -1E+100000"),
    ("amount_cents", 1e300, "amount_cents is too large to send exactly as a JSON number (over 2^53-1), got 1e+300"),
    ("amount_cents", float("nan"), "amount_cents must be an integer, got nan"),
    ("amount_cents", float("inf"), "amount_cents must be an integer, got inf"),
    ("amount_cents", Decimal("NaN"), "amount_cents must be an integer, got NaN"),
    ("amount_cents", Decimal("Infinity"), "amount_cents must be an integer, got Infinity"),
    ("amount_cents", "9900", "amount_cents must be an integer, got '9900'"),
    ("amount_cents", True, "amount_cents must be an integer, got bool True"),
    ("quantity", 0, "quantity must be a positive integer, got 0"),
    ("quantity", 0.0, "quantity must be a positive integer, got 0.0"),
    ("quantity", 1.5, "quantity must be an integer, got 1.5"),
    ("discount", -5, "discount must not be negative, got -5"),
    ("proration", "true", "proration must be a boolean, got 'true'"),
    ("proration", 1, "proration must be a boolean, got 1"),
    ("type", "Subscription", "type must be one of subscription, one-time, refund, cancellation, got 'Subscription'"),
    ("type", "upgrade", "type must be one of subscription, one-time, refund, cancellation, got 'upgrade'"),
    ("custom_variables", [1, 2], "custom_variables must be a JSON object, got an array [1,2]"),
    ("custom_variables", "[1, 2]", "custom_variables must be a JSON object, got an array [1,2]"),
    ("custom_variables", '"plain"', "custom_variables must be a JSON object, got a string \"plain\""),
    ("custom_variables", 5, "custom_variables must be a JSON object, got a number 5"),
    ("custom_variables", "null", "custom_variables must be a JSON object, got null"),
    ("custom_variables", {"k": "v\x00"}, "custom_variables must not contain a NUL character (\\u0000), found in the string 'v\\x00'"),
    ("custom_variables", {"k\x00": 1}, "custom_variables must not contain a NUL character (\\u0000), found in the key 'k\\x00'"),
    ("custom_variables", {"a": [{"b": ["\x00"]}]}, "custom_variables must not contain a NUL character (\\u0000), found in the string '\\x00'"),
    ("custom_variables", _deep(101), "custom_variables is nested more than 100 levels deep"),
    ("custom_variables", UnreadableJson("no low surrogate in string: line 1 column 7 (char 6)"),
     "custom_variables is JSON that cannot be read (no low surrogate in string: line 1 column 7 (char 6))"),
    ("date", "2024-02-30", "date is not an ISO 8601 date, got '2024-02-30'"),
    ("date", "2024-02-30T00:00:00Z", "date is not a valid ISO 8601 date, got '2024-02-30T00:00:00Z'"),
    ("date", "2024-01-15T25:00:00", "date is not an ISO 8601 date, got '2024-01-15T25:00:00'"),
    ("date", "next tuesday", "date is not an ISO 8601 date, got 'next tuesday'"),
    ("date", "15/01/2024", "date is not an ISO 8601 date, got '15/01/2024'"),
    ("date", "10000-01-01", "date is not an ISO 8601 date, got '10000-01-01'"),
    ("date", "2024-01-15\x00", "date is not an ISO 8601 date, got '2024-01-15\\x00'"),
    ("date", "0001-01-01T00:00:00+01:00", "date falls outside the years 0001-9999 once converted to UTC, got '0001-01-01T00:00:00+01:00'"),
    ("date", "9999-12-31T23:00:00-05:00", "date falls outside the years 0001-9999 once converted to UTC, got '9999-12-31T23:00:00-05:00'"),
    ("date", time(1, 2), "date must be a date or a timestamp, got time datetime.time(1, 2)"),
    ("date", 20240115, "date must be a date or a timestamp, got 20240115"),
    ("end_date", Unrepresentable("infinity"), "end_date cannot be sent as an ISO 8601 date (years 0001-9999), got 'infinity'"),
]


@pytest.mark.parametrize(("field", "value", "message"), REFUSED, ids=[f"{f}-{n}" for n, (f, _, _) in enumerate(REFUSED)])
def test_refused_values_give_one_message_naming_the_field(field: str, value: Any, message: str) -> None:
    payload, problems = convert(field, value)
    assert payload is None
    assert problems == [message]


@pytest.mark.parametrize(
    ("type_name", "value", "message"),
    [
        ("timestamptz", Unrepresentable("infinity"), "date cannot be sent as an ISO 8601 date (years 0001-9999), got 'infinity'"),
        ("timestamp", Unrepresentable("-infinity"), "date cannot be sent as an ISO 8601 date (years 0001-9999), got '-infinity'"),
        ("date", Unrepresentable("0044-03-15 BC"), "date cannot be sent as an ISO 8601 date (years 0001-9999), got '0044-03-15 BC'"),
    ],
)
def test_date_columns_trust_the_loaders_except_unrepresentable(type_name: str, value: Any, message: str) -> None:
    # A loader already wrote the canonical form; only what it could not write is refused.
    assert convert("date", "2024-01-15T10:20:30.123456Z", type_name) == ({**INVOICE, "date": "2024-01-15T10:20:30.123456Z", "data_source": "ds_test"}, None)
    assert convert("date", value, type_name) == (None, [message])


def test_null_and_empty_text_are_absent_fields() -> None:
    _, payload, problems, _, _ = build(
        "customers", id="c1", name="Acme", email="", created_date="2024-01-15", country="us", state=None,
        trial_started="", custom_variables=None,
    )
    assert problems is None
    assert payload == {"id": "c1", "name": "Acme", "created_date": "2024-01-15T00:00:00Z", "country": "us", "data_source": "ds_test"}


def test_a_state_of_spaces_is_absent_once_trimmed() -> None:
    _, payload, problems, _, _ = build("customers", **{**CUSTOMER, "state": "   "})
    assert problems is None
    assert payload is not None and "state" not in payload


def test_the_importer_adds_data_source() -> None:
    for entity, row in BASE.items():
        _, payload, _, _, _ = build(entity, options=PayloadOptions(data_source="ds_42"), **row)
        assert payload is not None and payload["data_source"] == "ds_42"


@pytest.mark.parametrize(
    ("entity", "missing", "message"),
    [
        ("plans", "id", "id is required"),
        ("plans", "name", "name is required"),
        ("plans", "billing_freq", "billing_freq is required"),
        ("plans", "currency", "currency is required"),
        ("customers", "id", "id is required"),
        ("customers", "created_date", "created_date is required"),
        ("customers", "country", "country is required"),
        ("invoices", "id", "id is required"),
        ("invoices", "customer_id", "customer_id is required"),
        ("invoices", "type", "type is required"),
        ("invoices", "date", "date is required"),
        ("invoices", "amount_cents", "amount_cents is required"),
        ("invoices", "currency", "currency is required"),
        ("invoices", "start_date", "start_date is required"),
        ("invoices", "end_date", "end_date is required"),
    ],
)
@pytest.mark.parametrize("absent", [None, ""])
def test_required_fields(entity: str, missing: str, message: str, absent: Any) -> None:
    ext_id, payload, problems, _, _ = build(entity, **{**BASE[entity], missing: absent})
    assert payload is None
    assert problems == [message]
    assert ext_id == (None if missing == "id" else BASE[entity]["id"])


def test_customer_needs_a_name_or_an_email() -> None:
    for name, email in ((None, None), ("", ""), ("", None)):
        _, payload, problems, _, _ = build("customers", **{**CUSTOMER, "name": name, "email": email})
        assert (payload, problems) == (None, ["name or email is required"])
    _, payload, problems, _, _ = build("customers", **{**CUSTOMER, "name": None, "email": "ops@x.test"})
    assert problems is None and payload is not None and payload["email"] == "ops@x.test" and "name" not in payload
    # A name that is there but wrong says so once, without the "name or email" noise.
    _, _, problems, _, _ = build("customers", **{**CUSTOMER, "name": "A\x00", "email": None})
    assert problems == ["name must not contain a NUL character (\\u0000), got 'A\\x00'"]


def test_subscription_invoices_need_a_plan() -> None:
    _, payload, problems, _, _ = build("invoices", **{**INVOICE, "plan_id": None})
    assert (payload, problems) == (None, ["plan_id is required when type is subscription"])
    _, payload, problems, _, _ = build("invoices", **{**INVOICE, "plan_id": None, "type": "one-time"})
    assert problems is None and payload is not None and "plan_id" not in payload
    # A plan_id that is there but wrong is reported once.
    _, _, problems, _, _ = build("invoices", **{**INVOICE, "plan_id": 1.5})
    assert problems == ["plan_id must be text or an integer, got 1.5"]


def test_every_problem_of_a_row_is_reported_in_column_order() -> None:
    ext_id, payload, problems, customer_id, plan_id = build(
        "invoices",
        **{**INVOICE, "type": "upgrade", "date": "soon", "amount_cents": -3, "currency": "dollars", "end_date": None},
    )
    assert payload is None
    assert problems == [
        "type must be one of subscription, one-time, refund, cancellation, got 'upgrade'",
        "date is not an ISO 8601 date, got 'soon'",
        "amount_cents must not be negative, got -3",
        "currency must be an ISO 4217 currency code, got 'dollars'",
        "end_date is required",
    ]
    # The row is still named, with its references, for the audit and for skipping its dependants.
    assert (ext_id, customer_id, plan_id) == ("i1", "c1", "p1")


def test_invoice_amount_names() -> None:
    # The source may call it `amount` (the SDK's name); the guide's `amount_cents` is sent by default.
    row = {k: v for k, v in INVOICE.items() if k != "amount_cents"}
    _, payload, problems, _, _ = build("invoices", **row, amount=500)
    assert problems is None and payload is not None
    assert (payload["amount_cents"], "amount" in payload) == (500, False)
    _, _, problems, _, _ = build("invoices", **row, amount=None)
    assert problems == ["amount is required"]
    _, _, problems, _, _ = build("invoices", **row, amount=-1)
    assert problems == ["amount must not be negative, got -1"]
    for field, expected in (("amount", {"amount": 9900}), ("both", {"amount": 9900, "amount_cents": 9900})):
        _, payload, _, _, _ = build("invoices", options=PayloadOptions("ds_test", invoice_amount_field=field), **INVOICE)
        assert payload is not None
        assert {k: v for k, v in payload.items() if k.startswith("amount")} == expected
    # Both columns: they must agree.
    _, payload, problems, _, _ = build("invoices", **INVOICE, amount=9900)
    assert problems is None and payload is not None and payload["amount_cents"] == 9900 and "amount" not in payload
    _, payload, problems, _, _ = build("invoices", **INVOICE, amount=100)
    assert (payload, problems) == (None, ["amount (100) and amount_cents (9900) differ"])


@pytest.mark.parametrize(
    ("freq", "count", "sent"),
    [("quarter", None, ("month", 3)), ("quarter", 2, ("month", 6)), ("half_year", None, ("month", 6)), ("half_year", 2.0, ("month", 12)), ("month", None, ("month", None))],
)
def test_billing_freqs_the_guide_lacks_are_sent_as_months(freq: str, count: Any, sent: tuple[str, int | None]) -> None:
    _, payload, problems, _, _ = build("plans", **{**PLAN, "billing_freq": freq, "billing_freq_count": count})
    assert problems is None and payload is not None
    assert (payload["billing_freq"], payload.get("billing_freq_count")) == sent


def test_quarterly_count_too_large_once_in_months() -> None:
    _, payload, problems, _, _ = build("plans", **{**PLAN, "billing_freq": "quarter", "billing_freq_count": 2**52})
    assert payload is None
    assert problems == [f"billing_freq_count is too large once counted in months, got {3 * 2**52}"]


def test_plan_external_id_is_sent_when_asked() -> None:
    _, payload, _, _, _ = build("plans", options=PayloadOptions("ds_test", plan_send_external_id=True), **PLAN)
    assert payload is not None and payload["external_id"] == "p1"
    _, payload, _, _, _ = build("plans", **PLAN)
    assert payload is not None and "external_id" not in payload


def test_references_are_returned_as_sent() -> None:
    ext_id, _, _, customer_id, plan_id = build("invoices", **{**INVOICE, "id": 10, "customer_id": 20, "plan_id": Decimal("30")})
    assert (ext_id, customer_id, plan_id) == ("10", "20", "30")


# Values a hostile source can put in any column, whatever the field.
HOSTILE_VALUES: list[Any] = [
    None, "", " ", "\x00", "a\x00b", TEN_KB, RTL, EMOJI, COMBINING, "'; DROP TABLE x; --", '{"a": 1}', "[1]", "null",
    0, -1, 1, 2**31 + 1, 2**53, 2**63 - 1, -(2**63), 0.0, -0.0, 1.5, 1e300, -1e300, float("nan"), float("inf"),
    Decimal("0"), Decimal("1E+100000"), Decimal("-1E+100000"), Decimal("1E-100000"), Decimal("NaN"), Decimal("Infinity"),
    True, False, b"", b"\x00\xff", memoryview(b"ab"), [], [None], {}, {"k": "\x00"}, _deep(300),
    UUID(int=0), date(1, 1, 1), date(9999, 12, 31), datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
    datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-1))), time(0, 0), timedelta(days=1),
    Unrepresentable("infinity"), UnreadableJson("number is infinity when parsed as double"),
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2024-01-15T10:20:30.1234567890123+05:30:15.5",
]


@pytest.mark.parametrize("entity", ["plans", "customers", "invoices"])
def test_no_value_in_any_column_can_make_a_row_raise(entity: str) -> None:
    # Given every field of the entity, each fed every hostile value (the other fields valid)
    from producers.entities import ENTITIES

    fields = [f for f in ENTITIES[entity].fields if not (entity == "invoices" and f == "amount")]
    base = {f: BASE[entity].get(f) for f in fields}
    for field, value in itertools.product(fields, HOSTILE_VALUES):
        # When the row is built, then it gives a payload JSON can carry, or problems; it never raises.
        ext_id, payload, problems, _, _ = build(entity, **{**base, field: value})
        assert (payload is None) == bool(problems), (field, value)
        if payload is not None:
            body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
            assert b"\\u0000" not in body, (field, value)
            # The payload survives being re-encoded inside the batch's array (posting re-encodes after a split).
            assert orjson.loads(orjson.dumps([orjson.loads(body)])) == [payload]
        for problem in problems or []:
            assert "\x00" not in problem and len(problem) < 400, (field, value, problem)
        assert ext_id is None or (len(ext_id) <= 512 and "\x00" not in ext_id)


# --- The loaders, against a real PostgreSQL -------------------------------------------------------

_schemas = itertools.count(1)


@pytest.fixture
def pg_schema(source_db: Database) -> Iterator[str]:
    """A throwaway schema in the source database."""
    name = f"norm_{next(_schemas)}"
    with psycopg.connect(source_db.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(source_db.url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def _read(url: str, stage: str, query: str) -> list[tuple[Any, ...]]:
    """Rows of `query` read and built exactly as the producer does: (ext_id, payload, problems, ...)."""
    with source_connection(url) as conn:
        reader = StageReader(conn, stage, query, 100)
        try:
            builder = RowBuilder(stage, reader.columns, reader.type_names, OPTIONS)
            return [builder.build(row) for chunk in reader.chunks() for row in chunk]
        finally:
            reader.close()


def test_loaders_turn_database_values_into_api_json(source_db: Database, pg_schema: str) -> None:
    # Given customers whose dates and JSON use every column type a source may have
    with psycopg.connect(source_db.url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {}.c (id text, name text, created_date timestamptz, trial_started timestamp, "
                "country text, custom_variables jsonb, tz text)"
            ).format(sql.Identifier(pg_schema))
        )
        rows = [
            ("c01", "2024-01-15 10:20:30.123456+00", "2024-01-10 08:00:00", '{"a": {"b": [1, "x", null]}}'),
            ("c02", "2024-01-15 12:00:00+05:30", "2024-01-10 08:00:00.5", "{}"),
            ("c03", "0001-01-01 00:00:00+00", "9999-12-31 23:59:59.999999", "null"),
            ("c04", "2024-02-29 23:59:59.000001-00:30", None, None),
            ("c05", "infinity", "-infinity", None),
            ("c06", "0044-03-15 12:00:00+00 BC", "0044-03-15 12:00:00 BC", None),
            ("c07", "10000-01-01 00:00:00+00", "12345-06-07 00:00:00", None),
            ("c08", "2024-01-15 10:20:30+00", None, '[1, 2]'),
            ("c09", "2024-01-15 10:20:30+00", None, '{"big": 1e400}'),
            ("c10", "2024-01-15 10:20:30+00", None, '{"deep": ' + "[" * 2000 + "]" * 2000 + "}"),
        ]
        for cid, created, trial, cv in rows:
            conn.execute(
                sql.SQL("INSERT INTO {}.c VALUES (%s, 'N', %s, %s, 'us', %s, NULL)").format(sql.Identifier(pg_schema)),
                (cid, created, trial, cv),
            )
    # When they are read through a source connection whose server default time zone is not UTC
    url = f"{source_db.url}?options=-c%20TimeZone%3DAsia/Kolkata"
    query = f"SELECT id, name, created_date, trial_started, country, custom_variables FROM {pg_schema}.c"
    built = {b[0]: b for b in _read(url, "customers", query)}
    # Then timestamps are ISO 8601 in UTC with a Z and every digit of their precision, naive ones taken as UTC
    ok = {k: b[1] for k, b in built.items() if b[2] is None}
    assert ok["c01"]["created_date"] == "2024-01-15T10:20:30.123456Z"
    assert ok["c01"]["trial_started"] == "2024-01-10T08:00:00Z"
    assert ok["c01"]["custom_variables"] == {"a": {"b": [1, "x", None]}}
    assert ok["c02"]["created_date"] == "2024-01-15T06:30:00Z"
    assert ok["c02"]["trial_started"] == "2024-01-10T08:00:00.5Z"
    assert ok["c02"]["custom_variables"] == {}
    assert ok["c03"]["created_date"] == "0001-01-01T00:00:00Z"
    assert ok["c03"]["trial_started"] == "9999-12-31T23:59:59.999999Z"
    assert "custom_variables" not in ok["c03"]  # jsonb null is an absent field
    assert ok["c04"]["created_date"] == "2024-03-01T00:29:59.000001Z"
    assert set(ok) == {"c01", "c02", "c03", "c04"}
    # and values with no ISO 8601 form, or JSON the reader refuses, are row problems, not a failed fetch.
    problems = {k: b[2] for k, b in built.items() if b[2] is not None}
    assert problems == {
        "c05": [
            "created_date cannot be sent as an ISO 8601 date (years 0001-9999), got 'infinity'",
            "trial_started cannot be sent as an ISO 8601 date (years 0001-9999), got '-infinity'",
        ],
        "c06": [
            "created_date cannot be sent as an ISO 8601 date (years 0001-9999), got '0044-03-15 12:00:00+00 BC'",
            "trial_started cannot be sent as an ISO 8601 date (years 0001-9999), got '0044-03-15 12:00:00 BC'",
        ],
        "c07": [
            "created_date cannot be sent as an ISO 8601 date (years 0001-9999), got '10000-01-01 00:00:00+00'",
            "trial_started cannot be sent as an ISO 8601 date (years 0001-9999), got '12345-06-07 00:00:00'",
        ],
        "c08": ["custom_variables must be a JSON object, got an array [1,2]"],
        "c09": problems["c09"],
        "c10": problems["c10"],
    }
    # The reasons are orjson's own words.
    assert problems["c09"][0].startswith("custom_variables is JSON that cannot be read (number is infinity")
    assert problems["c10"][0].startswith("custom_variables is JSON that cannot be read (depth limit exceeded")


def test_dates_become_midnight_utc_and_numbers_from_every_numeric_type(source_db: Database, pg_schema: str) -> None:
    with psycopg.connect(source_db.url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {}.i (id bigint, customer_id int, type text, date date, amount_cents numeric, "
                "currency char(5), start_date date, end_date text, quantity float8, discount int2, proration bool)"
            ).format(sql.Identifier(pg_schema))
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.i VALUES "
                "(1, 10, 'one-time', '2024-01-15', 9900.00, 'USD', '2024-01-15', '2024-02-15T00:00:00+01:00', 2.0, 5, true), "
                "(2, 10, 'one-time', 'infinity', 99.5, 'usd', '0100-01-01 BC', 'later', 1.5, -1, NULL), "
                "(3, 10, 'one-time', '2024-01-16', 9007199254740992, 'usd', '2024-01-16', '2024-01-16', 'NaN', NULL, NULL)"
            ).format(sql.Identifier(pg_schema))
        )
    built = {b[0]: b for b in _read(source_db.url, "invoices", f"SELECT * FROM {pg_schema}.i")}
    assert built["1"][1] == {
        "id": "1", "customer_id": "10", "type": "one-time", "date": "2024-01-15T00:00:00Z", "amount_cents": 9900,
        "currency": "usd", "start_date": "2024-01-15T00:00:00Z", "end_date": "2024-02-14T23:00:00Z", "quantity": 2,
        "discount": 5, "proration": True, "data_source": "ds_test",
    }
    assert built["2"][2] == [
        "date cannot be sent as an ISO 8601 date (years 0001-9999), got 'infinity'",
        "amount_cents must be an integer, got 99.5",
        "start_date cannot be sent as an ISO 8601 date (years 0001-9999), got '0100-01-01 BC'",
        "end_date is not an ISO 8601 date, got 'later'",
        "quantity must be an integer, got 1.5",
        "discount must not be negative, got -1",
    ]
    assert built["3"][2] == [
        "amount_cents is too large to send exactly as a JSON number (over 2^53-1), got 9007199254740992",
        "quantity must be an integer, got nan",
    ]


def test_nul_bytes_a_source_can_deliver_are_refused_per_row(source_db: Database, pg_schema: str) -> None:
    # `text` cannot hold NUL; `json` (not jsonb) can hold \u0000 and `bytea` any byte.
    with psycopg.connect(source_db.url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UntranslatableCharacter):
            conn.execute("SELECT '\"a\\u0000\"'::jsonb")
        with pytest.raises(psycopg.errors.ProgramLimitExceeded):
            conn.execute("SELECT chr(0)")
        conn.execute(
            sql.SQL("CREATE TABLE {}.c (id text, name json, email bytea, custom_variables json)").format(sql.Identifier(pg_schema))
        )
        insert = sql.SQL("INSERT INTO {}.c VALUES (%s, %s::json, %s::bytea, %s::json)").format(sql.Identifier(pg_schema))
        for row in [
            ("ok", '"Zo\\u00eb"', None, '{"k": "\\\\u0000 is just text here"}'),
            ("name_nul", '"Ac\\u0000me"', None, None),
            ("email_bytes", None, b"a\x00bc@x.test", None),
            ("cv_nul", '"X"', None, '{"k": "v\\u0000"}'),
            ("cv_surrogate", '"X"', None, '{"k": "\\ud800"}'),
        ]:
            conn.execute(insert, row)
    query = f"SELECT id, name, email, now() AS created_date, 'us' AS country, custom_variables FROM {pg_schema}.c"
    built = {b[0]: b for b in _read(source_db.url, "customers", query)}
    assert built["ok"][2] is None
    assert built["ok"][1]["name"] == "Zo\u00eb"
    assert built["ok"][1]["custom_variables"] == {"k": "\\u0000 is just text here"}
    assert {k: b[2] for k, b in built.items() if k != "ok"} == {
        "name_nul": ["name must not contain a NUL character (\\u0000), got 'Ac\\x00me'"],
        "email_bytes": ["email must be text, got bytes b'a\\x00bc@x.test'"],
        "cv_nul": ["custom_variables must not contain a NUL character (\\u0000), found in the string 'v\\x00'"],
        "cv_surrogate": [built["cv_surrogate"][2][0]],
    }
    # The reason is orjson's own words.
    assert built["cv_surrogate"][2][0].startswith("custom_variables is JSON that cannot be read (no low surrogate in string")


def test_source_session_is_read_only_and_in_utc(source_db: Database) -> None:
    with source_connection(f"{source_db.url}?options=-c%20TimeZone%3DAmerica/New_York") as conn:
        row = conn.execute("SELECT current_setting('transaction_read_only'), current_setting('TimeZone')").fetchone()
        assert row == ("on", "UTC")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE should_not_exist (n int)")
        conn.rollback()
