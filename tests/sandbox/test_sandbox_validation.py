"""Every per-row rule of the guide, with a valid and an invalid example, through the HTTP API."""

from __future__ import annotations

from typing import Any

import pytest
from sandbox_helpers import DROP, Api, customer, invoice, plan

from sandbox.countries import COUNTRY_CODES
from sandbox.currencies import CURRENCY_CODES
from sandbox.dates import parse_instant

MAX_SAFE = 2**53 - 1

# (changes to the valid example, expected substring of export_error or None when valid)
PLAN_CASES: list[tuple[dict[str, Any], str | None]] = [
    ({}, None),
    ({"billing_freq": "day"}, None),
    ({"billing_freq": "week"}, None),
    ({"billing_freq": "year"}, None),
    ({"billing_freq_count": DROP}, None),
    ({"billing_freq_count": 3}, None),
    ({"billing_freq_count": None}, None),
    ({"currency": "eur"}, None),
    ({"unknown_extra": [1, 2]}, None),
    ({"id": DROP}, "id is required"),
    ({"id": None}, "id is required"),
    ({"id": ""}, "id must not be empty"),
    ({"id": 123}, "id must be a string"),
    ({"name": DROP}, "name is required"),
    ({"name": ""}, "name must not be empty"),
    ({"name": 5}, "name must be a string"),
    ({"billing_freq": DROP}, "billing_freq is required"),
    ({"billing_freq": "quarter"}, "billing_freq must be one of day, week, month, year"),
    ({"billing_freq": "Month"}, "billing_freq must be one of"),
    ({"billing_freq_count": 0}, "billing_freq_count must be a positive integer"),
    ({"billing_freq_count": -1}, "billing_freq_count must be a positive integer"),
    ({"billing_freq_count": 1.5}, "billing_freq_count must be a positive integer"),
    ({"billing_freq_count": "3"}, "billing_freq_count must be a positive integer"),
    ({"billing_freq_count": True}, "billing_freq_count must be a positive integer"),
    ({"currency": DROP}, "currency is required"),
    ({"currency": "USD"}, "currency must be lowercase"),
    ({"currency": "usdd"}, "currency must be an ISO 4217 currency code"),
    ({"currency": "abc"}, "currency must be an ISO 4217 currency code"),
    ({"currency": 840}, "currency must be an ISO 4217 currency code"),
    ({"data_source": DROP}, "data_source is required"),
    ({"data_source": None}, "data_source is required"),
]

CUSTOMER_CASES: list[tuple[dict[str, Any], str | None]] = [
    ({}, None),
    ({"email": DROP}, None),
    ({"name": DROP}, None),
    ({"name": "", "email": "[email protected]"}, None),
    ({"name": None, "email": "[email protected]"}, None),
    ({"state": DROP, "trial_started": DROP, "custom_variables": DROP}, None),
    ({"state": None, "trial_started": None, "custom_variables": None}, None),
    ({"country": "de"}, None),
    ({"country": "dk"}, None),
    ({"custom_variables": {}}, None),
    ({"created_date": "2024-01-15"}, None),
    ({"created_date": "2024-01-15T10:30"}, None),
    ({"created_date": "2024-01-15T10:30:15"}, None),
    ({"created_date": "2024-01-15T10:30:15.123456"}, None),
    ({"created_date": "2024-01-15T10:30:15.5+05:30"}, None),
    ({"created_date": "2024-01-15T10:30:15-08:00"}, None),
    ({"created_date": "2024-02-29T00:00:00Z"}, None),
    ({"created_date": "0001-01-01"}, None),
    ({"created_date": "9999-12-31T23:59:59Z"}, None),
    ({"trial_started": "2024-01-10"}, None),
    ({"id": DROP}, "id is required"),
    ({"id": 42}, "id must be a string"),
    ({"name": DROP, "email": DROP}, "name or email is required"),
    ({"name": "", "email": ""}, "name or email is required"),
    ({"name": None, "email": None}, "name or email is required"),
    ({"name": 5}, "name must be a string"),
    ({"email": ["[email protected]"]}, "email must be a string"),
    ({"created_date": DROP}, "created_date is required"),
    ({"created_date": 20240115}, "created_date must be an ISO 8601 date string"),
    ({"created_date": "2024-13-01"}, "created_date must be an ISO 8601 date"),
    ({"created_date": "2024-02-30"}, "created_date must be an ISO 8601 date"),
    ({"created_date": "2023-02-29"}, "created_date must be an ISO 8601 date"),
    ({"created_date": "0000-01-01"}, "created_date must be an ISO 8601 date"),
    ({"created_date": "2024-01-15T24:00:00Z"}, "created_date must be an ISO 8601 date"),
    ({"created_date": "2024-01-15T10:60:00Z"}, "created_date must be an ISO 8601 date"),
    ({"created_date": "2024-01-15T10:00:60Z"}, "created_date must be an ISO 8601 date"),
    ({"created_date": "2024-01-15 10:00:00"}, "created_date must be an ISO 8601 date"),
    ({"created_date": "2024/01/15"}, "created_date must be an ISO 8601 date"),
    ({"created_date": "15-01-2024"}, "created_date must be an ISO 8601 date"),
    ({"created_date": "2024-01-15T10:00:00+0100"}, "created_date must be an ISO 8601 date"),
    ({"created_date": "2024-01-15T10:00:00+24:00"}, "created_date must be an ISO 8601 date"),
    ({"created_date": "2024-01-15Z"}, "created_date must be an ISO 8601 date"),
    ({"created_date": ""}, "created_date must be an ISO 8601 date"),
    ({"country": DROP}, "country is required"),
    ({"country": "US"}, "country must be lowercase"),
    ({"country": "xx"}, "country must be an ISO 3166-1 alpha-2 country code"),
    ({"country": "usa"}, "country must be an ISO 3166-1 alpha-2 country code"),
    ({"country": "uk"}, "country must be an ISO 3166-1 alpha-2 country code"),
    ({"country": ""}, "country must be an ISO 3166-1 alpha-2 country code"),
    ({"state": "CA"}, "state must be lowercase"),
    ({"state": 6}, "state must be a string"),
    ({"trial_started": "2024-02-30"}, "trial_started must be an ISO 8601 date"),
    ({"custom_variables": ["a"]}, "custom_variables must be an object"),
    ({"custom_variables": "industry=tech"}, "custom_variables must be an object"),
    ({"data_source": DROP}, "data_source is required"),
]

INVOICE_CASES: list[tuple[dict[str, Any], str | None]] = [
    ({}, None),
    ({"payment_date": DROP, "quantity": DROP, "proration": DROP}, None),
    ({"payment_date": None, "quantity": None, "proration": None, "discount": None}, None),
    ({"type": "one-time", "plan_id": DROP}, None),
    ({"type": "refund", "plan_id": None}, None),
    ({"type": "cancellation", "plan_id": DROP, "amount_cents": 0}, None),
    ({"type": "one-time"}, None),
    ({"amount_cents": 0}, None),
    ({"amount_cents": MAX_SAFE}, None),
    ({"amount_cents": DROP, "amount": 9900}, None),
    ({"amount": 9900}, None),
    ({"discount": 0}, None),
    ({"discount": 500}, None),
    ({"quantity": 3}, None),
    ({"proration": True}, None),
    ({"date": "2024-02-01", "start_date": "2024-02-01", "end_date": "2024-03-01"}, None),
    ({"currency": "jpy"}, None),
    ({"id": DROP}, "id is required"),
    ({"id": 456}, "id must be a string"),
    ({"customer_id": DROP}, "customer_id is required"),
    ({"customer_id": 123}, "customer_id must be a string"),
    ({"plan_id": DROP}, "plan_id is required when type is subscription"),
    ({"plan_id": None}, "plan_id is required when type is subscription"),
    ({"plan_id": 7}, "plan_id must be a string"),
    ({"type": DROP}, "type is required"),
    ({"type": "trial"}, "type must be one of subscription, one-time, refund, cancellation"),
    ({"type": "Subscription"}, "type must be one of"),
    ({"date": DROP}, "date is required"),
    ({"date": "2024-02-30T00:00:00Z"}, "date must be an ISO 8601 date"),
    ({"date": 1706745600}, "date must be an ISO 8601 date string"),
    ({"start_date": DROP}, "start_date is required"),
    ({"start_date": "2024-00-01"}, "start_date must be an ISO 8601 date"),
    ({"end_date": DROP}, "end_date is required"),
    ({"end_date": "2024-03-01T00:00:00+25:00"}, "end_date must be an ISO 8601 date"),
    ({"payment_date": "2024-02-31"}, "payment_date must be an ISO 8601 date"),
    ({"amount_cents": DROP}, "amount_cents is required"),
    ({"amount_cents": None}, "amount_cents is required"),
    ({"amount_cents": 12.5}, "amount_cents must be a non-negative integer, got 12.5"),
    ({"amount_cents": 9900.0}, "amount_cents must be a non-negative integer, got 9900.0"),
    ({"amount_cents": "9900"}, "amount_cents must be a non-negative integer"),
    ({"amount_cents": True}, "amount_cents must be a non-negative integer"),
    ({"amount_cents": -100}, "amount_cents must be a non-negative integer"),
    ({"amount_cents": MAX_SAFE + 1}, f"amount_cents must be at most {MAX_SAFE}"),
    ({"amount_cents": 2**64}, "amount_cents must be a non-negative integer"),
    ({"amount_cents": DROP, "amount": 12.5}, "amount must be a non-negative integer"),
    ({"amount_cents": DROP, "amount": -1}, "amount must be a non-negative integer"),
    ({"amount": 100}, "amount (100) and amount_cents (9900) differ"),
    ({"amount": 9900.0}, "amount (9900.0) and amount_cents (9900) differ"),
    ({"discount": -5}, "discount must be a non-negative integer"),
    ({"discount": 1.5}, "discount must be a non-negative integer"),
    ({"discount": MAX_SAFE + 1}, "discount must be at most"),
    ({"quantity": 0}, "quantity must be a positive integer"),
    ({"quantity": "1"}, "quantity must be a positive integer"),
    ({"proration": "true"}, "proration must be a boolean"),
    ({"proration": 1}, "proration must be a boolean"),
    ({"currency": DROP}, "currency is required"),
    ({"currency": "EUR"}, "currency must be lowercase"),
    ({"currency": "eu"}, "currency must be an ISO 4217 currency code"),
    ({"data_source": DROP}, "data_source is required"),
]


def _check(api: Api, path: str, row: dict[str, Any], expected: str | None, kind: str) -> None:
    """POST one row; a valid one is inserted and stored, an invalid one errors with `expected`."""
    result = api.rows(path, row)
    assert len(result) == 1
    entry = result[0]
    assert entry["id"] == row.get("id")
    stored_ids = [obj["id"] for obj in api.ledger()[kind]]
    if expected is None:
        assert entry == {"id": row["id"], "export_status": "inserted"}, entry
        assert row["id"] in stored_ids
    else:
        assert entry["export_status"] == "error"
        assert expected in entry["export_error"], entry["export_error"]
        assert row.get("id") not in stored_ids


@pytest.mark.parametrize(("changes", "expected"), PLAN_CASES)
def test_plan_rules(api: Api, changes: dict[str, Any], expected: str | None) -> None:
    _check(api, "/data/plans", plan(**changes), expected, "plans")


@pytest.mark.parametrize(("changes", "expected"), CUSTOMER_CASES)
def test_customer_rules(api: Api, changes: dict[str, Any], expected: str | None) -> None:
    _check(api, "/data/customers", customer(**changes), expected, "customers")


@pytest.fixture
def seeded(api: Api) -> Api:
    """The sandbox with plan_pro and cust_123 stored, so invoices can reference them."""
    assert api.rows("/data/plans", plan())[0]["export_status"] == "inserted"
    assert api.rows("/data/customers", customer())[0]["export_status"] == "inserted"
    return api


@pytest.mark.parametrize(("changes", "expected"), INVOICE_CASES)
def test_invoice_rules(seeded: Api, changes: dict[str, Any], expected: str | None) -> None:
    _check(seeded, "/data/invoices", invoice(**changes), expected, "invoices")


def test_amount_alias_is_stored_as_amount_cents(seeded: Api) -> None:
    row = invoice(amount_cents=DROP, amount=4950)
    assert seeded.rows("/data/invoices", row)[0]["export_status"] == "inserted"
    stored = seeded.ledger()["invoices"][0]
    assert stored["amount_cents"] == 4950 and "amount" not in stored
    # Sending the same invoice with amount_cents is the same content.
    assert seeded.rows("/data/invoices", invoice(amount_cents=4950))[0]["export_status"] == "unchanged"


def test_unknown_customer_reference_has_the_documented_message(seeded: Api) -> None:
    result = seeded.rows("/data/invoices", invoice(customer_id="cus_xxx"))
    assert result[0]["export_error"] == "Customer ID cus_xxx does not exist"


def test_unknown_plan_reference_has_the_documented_message(seeded: Api) -> None:
    result = seeded.rows("/data/invoices", invoice(plan_id="plan_nope"))
    assert result[0]["export_error"] == "Plan ID plan_nope does not exist"


def test_plan_reference_is_checked_for_other_types_too(seeded: Api) -> None:
    result = seeded.rows("/data/invoices", invoice(type="one-time", plan_id="plan_nope"))
    assert result[0]["export_error"] == "Plan ID plan_nope does not exist"


def test_references_are_per_data_source(make_api: Any) -> None:
    api = make_api()
    api.rows("/data/plans", plan(data_source="ds_2"), key="key_2")
    api.rows("/data/customers", customer(data_source="ds_2"), key="key_2")
    # ds_1 has neither: both references fail there, and both problems are reported.
    error = api.rows("/data/invoices", invoice())[0]["export_error"]
    assert error == "Customer ID cust_123 does not exist; Plan ID plan_pro does not exist"


def test_data_source_mismatch_names_both(seeded: Api) -> None:
    for path, row in (
        ("/data/plans", plan(data_source="ds_2")),
        ("/data/customers", customer(data_source="ds_2")),
        ("/data/invoices", invoice(data_source="ds_2")),
    ):
        error = seeded.rows(path, row)[0]["export_error"]
        assert "ds_2" in error and "ds_1" in error, error


def test_several_problems_are_reported_together(seeded: Api) -> None:
    row = invoice(amount_cents=12.5, currency="USD", type="trial")
    error = seeded.rows("/data/invoices", row)[0]["export_error"]
    parts = error.split("; ")
    assert len(parts) == 3
    assert any(p.startswith("type must be one of") for p in parts)
    assert any(p.startswith("currency must be lowercase") for p in parts)
    assert any(p.startswith("amount_cents must be a non-negative integer") for p in parts)


def test_unknown_fields_are_not_stored_nor_compared(seeded: Api) -> None:
    assert (
        seeded.rows("/data/plans", plan(external_id="x", product_name="P"))[0]["export_status"] == "unchanged"
    )
    assert "external_id" not in seeded.ledger()["plans"][0]


def test_reference_tables_are_complete() -> None:
    # 249 officially assigned ISO 3166-1 codes; ISO 4217 List One of 2026-01-01 has 178 codes.
    assert len(COUNTRY_CODES) == 249 and {"us", "de", "dk", "gb", "ax", "ss", "bq"} <= COUNTRY_CODES
    assert not {"uk", "eu", "xk", "an"} & COUNTRY_CODES
    assert len(CURRENCY_CODES) == 178 and {"usd", "eur", "dkk", "jpy", "ved", "zwg", "xcg"} <= CURRENCY_CODES
    assert not {"hrk", "sll", "zwl", "abc"} & CURRENCY_CODES


def test_instants_compare_across_offsets_and_fractions() -> None:
    def instant(text: str) -> Any:
        value = parse_instant(text)
        assert value is not None, text
        return value

    assert instant("2024-02-01T01:00:00+01:00") == instant("2024-02-01T00:00:00Z")
    assert instant("2024-01-31T23:00:00-01:00") == instant("2024-02-01")
    assert instant("2024-02-01T00:00:00.5Z") > instant("2024-02-01T00:00:00.45Z")
    assert instant("2024-02-01T00:00:00.50Z") == instant("2024-02-01T00:00:00.5Z")
    assert instant("0001-01-01") < instant("1970-01-01") < instant("9999-12-31T23:59:59Z")
