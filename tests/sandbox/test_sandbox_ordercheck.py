"""The chronological-order check behind `/_sandbox/violations`."""

from __future__ import annotations

from typing import Any

import pytest
from sandbox_helpers import Api, customer, invoice, plan


@pytest.fixture
def seeded(api: Api) -> Api:
    """Two customers and a plan stored."""
    api.rows("/data/plans", plan())
    api.rows("/data/customers", [customer(id="cust_a"), customer(id="cust_b")])
    return api


def _inv(invoice_id: str, customer_id: str, date: str) -> dict[str, Any]:
    """An invoice of `customer_id` dated `date`."""
    return invoice(id=invoice_id, customer_id=customer_id, date=date)


def _violations(api: Api) -> list[dict[str, Any]]:
    """The recorded violations."""
    body = api.get("/_sandbox/violations").json()
    assert body["count"] == len(body["violations"])
    return body["violations"]  # type: ignore[no-any-return]


def test_in_order_invoices_are_quiet(seeded: Api) -> None:
    seeded.rows("/data/invoices", [_inv("i1", "cust_a", "2024-01-01"), _inv("i2", "cust_a", "2024-02-01")])
    seeded.rows(
        "/data/invoices", [_inv("i3", "cust_a", "2024-02-01T00:00:00Z"), _inv("i4", "cust_a", "2024-03-01")]
    )
    assert _violations(seeded) == []


def test_an_out_of_order_invoice_is_flagged(seeded: Api) -> None:
    seeded.rows("/data/invoices", _inv("i_mar", "cust_a", "2024-03-01T00:00:00Z"))
    seeded.rows("/data/invoices", _inv("i_jan", "cust_a", "2024-01-01T00:00:00Z"))
    found = _violations(seeded)
    assert len(found) == 1
    violation = found[0]
    assert {
        k: violation[k]
        for k in (
            "data_source",
            "customer_id",
            "invoice_id",
            "date",
            "later_invoice_id",
            "later_invoice_date",
        )
    } == {
        "data_source": "ds_1",
        "customer_id": "cust_a",
        "invoice_id": "i_jan",
        "date": "2024-01-01T00:00:00Z",
        "later_invoice_id": "i_mar",
        "later_invoice_date": "2024-03-01T00:00:00Z",
    }


def test_out_of_order_within_one_batch_is_flagged(seeded: Api) -> None:
    seeded.rows("/data/invoices", [_inv("i2", "cust_a", "2024-02-01"), _inv("i1", "cust_a", "2024-01-01")])
    assert [v["invoice_id"] for v in _violations(seeded)] == ["i1"]


def test_dates_compare_as_instants(seeded: Api) -> None:
    # 01:00+02:00 is 23:00Z the day before: earlier than midnight Z, so a violation...
    seeded.rows("/data/invoices", _inv("i1", "cust_a", "2024-02-01T00:00:00Z"))
    seeded.rows("/data/invoices", _inv("i2", "cust_a", "2024-02-01T01:00:00+02:00"))
    assert [v["invoice_id"] for v in _violations(seeded)] == ["i2"]
    # ... while 01:00+01:00 is the same instant as midnight Z: not later, not a violation.
    seeded.rows("/data/invoices", _inv("i3", "cust_b", "2024-02-01T00:00:00Z"))
    seeded.rows("/data/invoices", _inv("i4", "cust_b", "2024-02-01T01:00:00+01:00"))
    assert [v["invoice_id"] for v in _violations(seeded)] == ["i2"]


def test_customers_are_checked_separately(seeded: Api) -> None:
    seeded.rows("/data/invoices", _inv("i1", "cust_a", "2024-05-01"))
    seeded.rows("/data/invoices", _inv("i2", "cust_b", "2024-01-01"))
    assert _violations(seeded) == []


def test_resending_stored_invoices_is_not_a_violation(seeded: Api) -> None:
    history = [
        _inv("i1", "cust_a", "2024-01-01"),
        _inv("i2", "cust_a", "2024-02-01"),
        _inv("i3", "cust_a", "2024-03-01"),
    ]
    seeded.rows("/data/invoices", history)
    # An idempotent retry of an early batch, then a second identical import, then an update.
    assert seeded.rows("/data/invoices", history[0])[0]["export_status"] == "unchanged"
    seeded.rows("/data/invoices", history)
    updated = dict(history[0], amount_cents=100)
    assert seeded.rows("/data/invoices", updated)[0]["export_status"] == "updated"
    assert _violations(seeded) == []


def test_errored_invoices_do_not_count(seeded: Api) -> None:
    seeded.rows("/data/invoices", dict(_inv("bad", "cust_a", "2024-09-01"), currency="USD"))
    seeded.rows("/data/invoices", _inv("i1", "cust_a", "2024-01-01"))
    assert _violations(seeded) == []


def test_moving_the_latest_invoice_earlier_is_followed(seeded: Api) -> None:
    seeded.rows("/data/invoices", [_inv("i1", "cust_a", "2024-01-01"), _inv("i2", "cust_a", "2024-06-01")])
    # i2 is corrected to February: March is no longer earlier than the latest stored date.
    seeded.rows("/data/invoices", _inv("i2", "cust_a", "2024-02-01"))
    seeded.rows("/data/invoices", _inv("i3", "cust_a", "2024-03-01"))
    assert _violations(seeded) == []
