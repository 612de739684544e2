"""Inspection routes (ledger, requests, violations, reset-all) and the digest store mode."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sandbox_helpers import Api, customer, invoice, plan

from sandbox import StoreMode

INSPECTION_ROUTES = [
    ("GET", "/_sandbox/ledger"),
    ("GET", "/_sandbox/requests"),
    ("DELETE", "/_sandbox/requests"),
    ("GET", "/_sandbox/violations"),
    ("POST", "/_sandbox/reset-all"),
]


@pytest.mark.parametrize(("method", "path"), INSPECTION_ROUTES)
def test_inspection_routes_do_not_exist_without_inspect(
    make_api: Callable[..., Api], method: str, path: str
) -> None:
    api = make_api(inspect=False)
    response = api.request(method, path)
    assert response.status_code == 404
    # The fault controls are always there.
    assert api.get("/_sandbox/faults").status_code == 200


@pytest.mark.parametrize(("method", "path"), INSPECTION_ROUTES)
def test_inspection_routes_exist_with_inspect(api: Api, method: str, path: str) -> None:
    assert api.request(method, path).status_code == 200


def test_ledger_lists_every_data_source_and_kind(api: Api) -> None:
    api.rows("/data/plans", plan())
    api.rows("/data/customers", customer(data_source="ds_2"), key="key_2")
    assert api.get("/_sandbox/ledger").json() == {
        "ds_1": {"plans": [plan()], "customers": [], "invoices": []},
        "ds_2": {"plans": [], "customers": [customer(data_source="ds_2")], "invoices": []},
    }
    assert list(api.get("/_sandbox/ledger?source=ds_2").json()) == ["ds_2"]


def test_request_log(api: Api) -> None:
    api.rows("/data/plans", [plan(), plan(id="bad", currency="USD")])
    api.rows("/data/plans", plan())
    api.post("/data/plans", plan(), key="wrong")
    api.post("/data/plans", b"[1]")
    api.get("/data/plans?limit=5")
    api.get("/_sandbox/ledger")  # not logged
    log = api.get("/_sandbox/requests").json()
    records = log["requests"]
    assert [(r["method"], r["path"], r["status"]) for r in records] == [
        ("POST", "/data/plans", 200),
        ("POST", "/data/plans", 200),
        ("POST", "/data/plans", 401),
        ("POST", "/data/plans", 400),
        ("GET", "/data/plans", 200),
    ]
    first = records[0]
    assert first["rows"] == 2 and first["results"] == {"inserted": 1, "error": 1}
    assert first["data_source"] == "ds_1" and first["arrived_at"].endswith("Z")
    assert first["response_complete"] is True and first["fault"] is None
    assert records[1]["results"] == {"unchanged": 1}
    assert records[2]["data_source"] is None
    assert records[4]["query"] == "limit=5"
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert log["count"] == 5 and log["by_http_status"] == {"200": 3, "401": 1, "400": 1}
    assert log["rows_by_export_status"] == {"inserted": 1, "error": 1, "unchanged": 1}
    assert api.request("DELETE", "/_sandbox/requests").json() == {"success": True}
    assert api.get("/_sandbox/requests").json()["requests"] == []


def test_request_log_is_bounded(make_api: Callable[..., Api]) -> None:
    api = make_api(request_log_limit=3)
    for _ in range(5):
        api.get("/data/plans")
    log = api.get("/_sandbox/requests").json()
    assert log["count"] == 5 and log["dropped"] == 2
    assert [r["seq"] for r in log["requests"]] == [3, 4, 5]


def test_reset_all_restores_the_start(make_api: Callable[..., Api]) -> None:
    api = make_api(max_batch=10)
    api.rows("/data/plans", plan())
    api.rows("/data/customers", customer())
    api.rows("/data/invoices", [invoice(id="b", date="2024-05-01"), invoice(id="a", date="2024-01-01")])
    api.post("/_sandbox/faults", {"outage": True, "max_batch": 2})
    assert api.post("/_sandbox/reset-all", b"").json() == {"success": True}
    assert api.get("/_sandbox/ledger").json() == {}
    assert api.get("/_sandbox/violations").json() == {"count": 0, "violations": []}
    assert api.get("/_sandbox/requests").json()["requests"] == []
    faults = api.get("/_sandbox/faults").json()
    assert faults["outage"] is False and faults["max_batch"] == 10
    assert api.get("/data/data-sources/ds_1/progress").json()["phase"] == "idle"


def test_digest_store_keeps_statuses_and_lists_ids(make_api: Callable[..., Api]) -> None:
    api = make_api(store=StoreMode.DIGEST)
    assert api.rows("/data/plans", plan())[0]["export_status"] == "inserted"
    assert api.rows("/data/plans", plan())[0]["export_status"] == "unchanged"
    assert api.rows("/data/plans", plan(name="Pro 2"))[0]["export_status"] == "updated"
    api.rows("/data/customers", customer())
    # References and the order check work from ids and dates alone.
    assert api.rows("/data/invoices", invoice(customer_id="nobody"))[0]["export_error"] == (
        "Customer ID nobody does not exist"
    )
    api.rows("/data/invoices", [invoice(id="b", date="2024-05-01"), invoice(id="a", date="2024-01-01")])
    assert api.get("/_sandbox/violations").json()["count"] == 1
    assert api.get("/_sandbox/ledger").json() == {
        "ds_1": {"plans": ["plan_pro"], "customers": ["cust_123"], "invoices": ["a", "b"]}
    }
    listed = api.get("/data/plans").json()["result"]
    assert listed["count"] == 1 and listed["list"][0]["id"] == "plan_pro"
    assert len(listed["list"][0]["digest"]) == 32


def test_store_table_gives_reports_the_stored_objects(api: Api) -> None:
    api.rows("/data/plans", plan())
    assert api.state.store.table("ds_1", "plans") == {"plan_pro": plan()}
    assert api.state.store.table("ds_unknown", "invoices") == {}
