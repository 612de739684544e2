"""Data-source reset, import progress and the raw listings."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from sandbox_helpers import Api, customer, invoice, plan


def _wait_for_phase(api: Api, phase: str, timeout: float = 5.0) -> dict[str, Any]:
    """Poll the progress of ds_1 until it reports `phase`."""
    deadline = time.monotonic() + timeout
    while True:
        body = api.get("/data/data-sources/ds_1/progress").json()
        if body["phase"] == phase or time.monotonic() > deadline:
            assert body["phase"] == phase, body
            return body  # type: ignore[no-any-return]
        time.sleep(0.02)


def test_progress_phases_and_counts(make_api: Callable[..., Api]) -> None:
    api = make_api(progress_delay=0.3)
    idle = api.get("/data/data-sources/ds_1/progress").json()
    assert idle == {
        "phase": "idle",
        "enqueued_count": 0,
        "processed_count": 0,
        "failed_count": 0,
        "started_at": None,
        "last_activity_at": None,
    }
    # A batch with only errors stores nothing: counts move, the phase stays idle.
    api.rows("/data/plans", plan(currency="USD"))
    assert api.get("/data/data-sources/ds_1/progress").json()["phase"] == "idle"
    api.rows("/data/plans", [plan(), plan(id="bad", currency="USD"), plan(id="plan_b")])
    processing = api.get("/data/data-sources/ds_1/progress").json()
    assert processing["phase"] == "processing"
    assert (processing["enqueued_count"], processing["processed_count"], processing["failed_count"]) == (
        4,
        2,
        2,
    )
    assert processing["started_at"] is not None and processing["last_activity_at"] is not None
    done = _wait_for_phase(api, "done")
    assert done["enqueued_count"] == 4
    # Another stored batch starts a new processing window; started_at keeps the first batch's time.
    api.rows("/data/plans", plan())
    again = api.get("/data/data-sources/ds_1/progress").json()
    assert again["phase"] == "processing" and again["started_at"] == processing["started_at"]
    assert again["processed_count"] == 3
    _wait_for_phase(api, "done")


def test_progress_is_per_data_source(api: Api) -> None:
    api.rows("/data/plans", plan())
    assert api.get("/data/data-sources/ds_2/progress", key="key_2").json()["phase"] == "idle"


def test_reset_clears_objects_order_state_and_progress(api: Api) -> None:
    api.rows("/data/plans", plan())
    api.rows("/data/customers", customer())
    api.rows("/data/invoices", [invoice(id="i2", date="2024-05-01"), invoice(id="i1", date="2024-01-01")])
    api.rows("/data/plans", plan(data_source="ds_2"), key="key_2")
    assert len(api.get("/_sandbox/violations").json()["violations"]) == 1

    response = api.post("/data/data-sources/ds_1/reset", b"")
    assert response.status_code == 200 and response.json() == {"success": True}

    assert api.ledger("ds_1") == {"plans": [], "customers": [], "invoices": []}
    assert api.ledger("ds_2")["plans"] == [plan(data_source="ds_2")]
    assert api.get("/_sandbox/violations").json()["violations"] == []
    assert api.get("/data/data-sources/ds_1/progress").json()["phase"] == "idle"
    # Re-importing after a reset inserts again, and the old order state is gone.
    api.rows("/data/plans", plan())
    api.rows("/data/customers", customer())
    assert api.rows("/data/invoices", invoice(id="i1", date="2024-01-01"))[0]["export_status"] == "inserted"
    assert api.get("/_sandbox/violations").json()["violations"] == []


def test_reset_and_progress_of_another_data_source_are_403(api: Api) -> None:
    api.rows("/data/plans", plan(data_source="ds_2"), key="key_2")
    response = api.post("/data/data-sources/ds_2/reset", b"")
    assert response.status_code == 403 and "error" in response.json()
    assert api.ledger("ds_2")["plans"] != []
    assert api.get("/data/data-sources/ds_2/progress").status_code == 403


def test_reset_and_progress_need_a_key(api: Api) -> None:
    assert api.post("/data/data-sources/ds_1/reset", b"", key=None).status_code == 401
    assert api.get("/data/data-sources/ds_1/progress", key="wrong").status_code == 401


@pytest.fixture
def listed(api: Api) -> Api:
    """25 customers stored, inserted in a shuffled order."""
    ids = [f"cust_{(i * 7) % 25:02d}" for i in range(25)]
    api.rows("/data/customers", [customer(id=i) for i in ids])
    return api


@pytest.mark.parametrize("kind", ["plans", "customers", "invoices"])
def test_listing_shape(api: Api, kind: str) -> None:
    api.rows("/data/plans", plan())
    api.rows("/data/customers", customer())
    api.rows("/data/invoices", invoice())
    body = api.get(f"/data/{kind}?source=ds_1&limit=10").json()
    expected = {"plans": plan(), "customers": customer(), "invoices": invoice()}[kind]
    assert body == {"result": {"count": 1, "list": [expected]}}


def test_listing_is_ordered_by_id_and_pages_by_offset(listed: Api) -> None:
    seen: list[str] = []
    for offset in range(0, 30, 10):
        body = listed.get(f"/data/customers?source=ds_1&limit=10&offset={offset}").json()["result"]
        assert body["count"] == 25
        seen += [c["id"] for c in body["list"]]
    assert seen == [f"cust_{i:02d}" for i in range(25)]


def test_listing_pages_by_after_id(listed: Api) -> None:
    body = listed.get("/data/customers?limit=5&after=cust_09").json()["result"]
    assert [c["id"] for c in body["list"]] == [f"cust_{i}" for i in range(10, 15)]


def test_listing_defaults(listed: Api, make_api: Callable[..., Api]) -> None:
    # source defaults to the key's data source, limit to 100.
    assert len(listed.get("/data/customers").json()["result"]["list"]) == 25
    api = make_api()
    api.rows("/data/plans", [plan(id=f"p{i:03d}") for i in range(150)])
    assert len(api.get("/data/plans").json()["result"]["list"]) == 100
    assert len(api.get("/data/plans?limit=1000").json()["result"]["list"]) == 150


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=abc", "offset=-1", "offset=x"])
def test_listing_bad_parameters_are_400(listed: Api, query: str) -> None:
    response = listed.get(f"/data/customers?{query}")
    assert response.status_code == 400 and "error" in response.json()


def test_listing_another_data_source_is_403(listed: Api) -> None:
    response = listed.get("/data/customers?source=ds_2")
    assert response.status_code == 403 and "error" in response.json()
    assert listed.get("/data/customers?source=ds_2", key="key_2").json() == {
        "result": {"count": 0, "list": []}
    }


def test_listing_needs_a_key(listed: Api) -> None:
    assert listed.get("/data/customers", key=None).status_code == 401
