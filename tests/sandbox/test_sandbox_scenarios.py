"""The guide's "Common scenarios", posted as the guide shows them and checked in the ledger."""

from __future__ import annotations

from typing import Any

from sandbox_helpers import Api

DS = "ds_1"
PLAN_PRO = {"id": "plan_pro", "name": "Pro", "billing_freq": "month", "currency": "usd", "data_source": DS}
PLAN_ENTERPRISE = {
    "id": "plan_enterprise",
    "name": "Enterprise",
    "billing_freq": "month",
    "currency": "usd",
    "data_source": DS,
}
CUSTOMER = {
    "id": "cust_123",
    "name": "Acme Inc",
    "email": "[email protected]",
    "created_date": "2024-02-01T00:00:00Z",
    "country": "us",
    "data_source": DS,
}


def _invoice(
    invoice_id: str, kind: str, date: str, amount: int, end: str, plan: str | None
) -> dict[str, Any]:
    """An invoice shaped like the guide's scenario examples."""
    row: dict[str, Any] = {
        "id": invoice_id,
        "customer_id": "cust_123",
        "type": kind,
        "date": date,
        "amount_cents": amount,
        "currency": "usd",
        "start_date": date,
        "end_date": end,
        "data_source": DS,
    }
    if plan is not None:
        row["plan_id"] = plan
    return row


NEW = _invoice("inv_001", "subscription", "2024-02-01T00:00:00Z", 9900, "2024-03-01T00:00:00Z", "plan_pro")
UPGRADE = _invoice(
    "inv_002", "subscription", "2024-03-01T00:00:00Z", 29900, "2024-04-01T00:00:00Z", "plan_enterprise"
)
DOWNGRADE = _invoice(
    "inv_003", "subscription", "2024-04-01T00:00:00Z", 9900, "2024-05-01T00:00:00Z", "plan_pro"
)
CANCELLATION = _invoice("inv_004", "cancellation", "2024-05-01T00:00:00Z", 0, "2024-05-01T00:00:00Z", None)
REACTIVATION = _invoice(
    "inv_005", "subscription", "2024-08-01T00:00:00Z", 9900, "2024-09-01T00:00:00Z", "plan_pro"
)
REFUND = _invoice("inv_006", "refund", "2024-08-15T00:00:00Z", 4950, "2024-08-15T00:00:00Z", None)


def _post_one(api: Api, path: str, row: dict[str, Any]) -> None:
    """POST one object (not an array, as the guide's curl examples do); it must be inserted."""
    assert api.rows(path, row) == [{"id": row["id"], "export_status": "inserted"}]


def _new_customer(api: Api) -> None:
    """Scenario "New customer": plan, customer, first invoice."""
    _post_one(api, "/data/plans", PLAN_PRO)
    _post_one(api, "/data/customers", CUSTOMER)
    _post_one(api, "/data/invoices", NEW)


def test_new_customer(api: Api) -> None:
    _new_customer(api)
    ledger = api.ledger(DS)
    assert ledger == {"plans": [PLAN_PRO], "customers": [CUSTOMER], "invoices": [NEW]}
    # The plan is "idempotent — safe to send every time".
    assert api.rows("/data/plans", PLAN_PRO)[0]["export_status"] == "unchanged"


def test_upgrade_then_downgrade(api: Api) -> None:
    _new_customer(api)
    _post_one(api, "/data/plans", PLAN_ENTERPRISE)
    _post_one(api, "/data/invoices", UPGRADE)
    _post_one(api, "/data/invoices", DOWNGRADE)
    assert api.ledger(DS)["invoices"] == [NEW, UPGRADE, DOWNGRADE]


def test_cancellation_reactivation_and_refund(api: Api) -> None:
    _new_customer(api)
    for row in (CANCELLATION, REACTIVATION, REFUND):
        _post_one(api, "/data/invoices", row)
    assert api.ledger(DS)["invoices"] == [NEW, CANCELLATION, REACTIVATION, REFUND]
    assert api.get("/_sandbox/violations").json()["violations"] == []


def test_whole_history_as_one_batch_per_kind(api: Api) -> None:
    invoices = [NEW, UPGRADE, DOWNGRADE, CANCELLATION, REACTIVATION, REFUND]
    assert len(api.rows("/data/plans", [PLAN_PRO, PLAN_ENTERPRISE])) == 2
    assert len(api.rows("/data/customers", [CUSTOMER])) == 1
    result = api.rows("/data/invoices", invoices)
    assert [r["export_status"] for r in result] == ["inserted"] * 6
    assert api.ledger(DS)["invoices"] == invoices
    # Re-sending the whole history changes nothing ("Backfills are safe").
    assert [r["export_status"] for r in api.rows("/data/invoices", invoices)] == ["unchanged"] * 6
