"""The guide's "Common scenarios" as source rows: new customer, upgrade, downgrade, cancellation,
reactivation and refund, plus the JSON GrowPanel must end up holding for each row."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def ts(text: str) -> datetime:
    """An aware UTC datetime from 'YYYY-MM-DD' or 'YYYY-MM-DDTHH:MM:SS'."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


PLANS = [
    {"id": "plan_pro", "name": "Pro", "billing_freq": "month", "billing_freq_count": 1, "currency": "usd"},
    {"id": "plan_enterprise", "name": "Enterprise", "billing_freq": "month", "billing_freq_count": 1, "currency": "usd"},
    {"id": "plan_annual", "name": "Pro Annual", "billing_freq": "year", "billing_freq_count": None, "currency": "USD"},
]
CUSTOMERS = [
    {"id": "cust_123", "name": "Acme Inc", "email": "billing@acme.test", "created_date": ts("2024-02-01"), "country": "us", "state": "ca",
     "custom_variables": {"industry": "Technology", "company_size": "50-100"}},
    {"id": "cust_456", "name": None, "email": "ops@globex.test", "created_date": ts("2024-01-10T08:30:00"), "country": " DK ",
     "trial_started": ts("2024-01-03")},
]


def invoice(iid: str, customer: str, kind: str, day: str, amount: int, plan: str | None = None, end: str | None = None) -> dict[str, Any]:
    """An invoice row as the source holds it."""
    return {
        "id": iid,
        "customer_id": customer,
        "plan_id": plan,
        "type": kind,
        "date": ts(day),
        "amount_cents": amount,
        "currency": "usd",
        "start_date": ts(day),
        "end_date": ts(end or day),
    }


INVOICES = [
    # New customer, then upgrade, downgrade, cancellation, reactivation and a refund (the guide's story).
    invoice("inv_001", "cust_123", "subscription", "2024-02-01", 9900, "plan_pro", "2024-03-01"),
    invoice("inv_002", "cust_123", "subscription", "2024-03-01", 29900, "plan_enterprise", "2024-04-01"),
    invoice("inv_003", "cust_123", "subscription", "2024-04-01", 9900, "plan_pro", "2024-05-01"),
    invoice("inv_004", "cust_123", "cancellation", "2024-05-01", 0),
    invoice("inv_005", "cust_123", "subscription", "2024-08-01", 9900, "plan_pro", "2024-09-01"),
    invoice("inv_006", "cust_123", "refund", "2024-08-15", 4950),
    invoice("inv_101", "cust_456", "subscription", "2024-01-17", 99000, "plan_annual", "2025-01-17"),
    invoice("inv_102", "cust_456", "one-time", "2024-01-18", 15000),
]


def expected_objects(data_source: str) -> dict[str, dict[str, dict[str, Any]]]:
    """What the sandbox must store for the rows above, by kind and id."""
    plans = {
        "plan_pro": {"id": "plan_pro", "name": "Pro", "billing_freq": "month", "billing_freq_count": 1, "currency": "usd"},
        "plan_enterprise": {"id": "plan_enterprise", "name": "Enterprise", "billing_freq": "month", "billing_freq_count": 1, "currency": "usd"},
        "plan_annual": {"id": "plan_annual", "name": "Pro Annual", "billing_freq": "year", "currency": "usd"},
    }
    customers = {
        "cust_123": {"id": "cust_123", "name": "Acme Inc", "email": "billing@acme.test", "created_date": "2024-02-01T00:00:00Z",
                     "country": "us", "state": "ca", "custom_variables": {"industry": "Technology", "company_size": "50-100"}},
        "cust_456": {"id": "cust_456", "email": "ops@globex.test", "created_date": "2024-01-10T08:30:00Z", "country": "dk",
                     "trial_started": "2024-01-03T00:00:00Z"},
    }
    invoices = {}
    for row in INVOICES:
        obj = {
            "id": row["id"],
            "customer_id": row["customer_id"],
            "type": row["type"],
            "date": row["date"].strftime("%Y-%m-%dT%H:%M:%SZ"),
            "amount_cents": row["amount_cents"],
            "currency": "usd",
            "start_date": row["start_date"].strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end_date": row["end_date"].strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if row["plan_id"]:
            obj["plan_id"] = row["plan_id"]
        invoices[row["id"]] = obj
    out = {"plans": plans, "customers": customers, "invoices": invoices}
    for kind in out.values():
        for obj in kind.values():
            obj["data_source"] = data_source
    return out
