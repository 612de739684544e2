"""Data-source reset, import progress and the raw listings."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from sandbox_helpers import Api, customer, invoice, plan

from sandbox.wire import WireConfig

SDK_NAMES = ("enqueuedCount", "processedCount", "failedCount", "startedAt", "lastActivityAt")
LEGACY_NAMES = ("enqueued_count", "processed_count", "failed_count", "started_at", "last_activity_at")


def _wait_for_phase(api: Api, phase: str, timeout: float = 5.0) -> dict[str, Any]:
    """Poll the progress of ds_1 until it reports `phase`."""
    deadline = time.monotonic() + timeout
    while True:
        body = api.get("/data/data-sources/ds_1/progress").json()
        if body["phase"] == phase or time.monotonic() > deadline:
            assert body["phase"] == phase, body
            return body  # type: ignore[no-any-return]
        time.sleep(0.02)


@pytest.mark.parametrize(("shape", "names"), [("sdk", SDK_NAMES), ("legacy", LEGACY_NAMES)])
def test_progress_phases_and_counts(make_api: Callable[..., Api], shape: str, names: tuple[str, ...]) -> None:
    enqueued, processed, failed, started, last = names
    api = make_api(progress_delay=0.3, wire=WireConfig(shape=shape))
    idle = api.get("/data/data-sources/ds_1/progress").json()
    assert idle == {
        "phase": "idle",
        enqueued: 0,
        processed: 0,
        failed: 0,
        started: None,
        last: None,
    }
    # A batch with only errors stores nothing: counts move, the phase stays idle.
    api.rows("/data/plans", plan(currency="USD"))
    assert api.get("/data/data-sources/ds_1/progress").json()["phase"] == "idle"
    api.rows("/data/plans", [plan(), plan(id="bad", currency="USD"), plan(id="plan_b")])
    processing = api.get("/data/data-sources/ds_1/progress").json()
    assert processing["phase"] == "processing"
    assert (processing[enqueued], processing[processed], processing[failed]) == (4, 2, 2)
    assert processing[started] is not None and processing[last] is not None
    done = _wait_for_phase(api, "done")
    assert done[enqueued] == 4
    # Another stored batch starts a new processing window; started_at keeps the first batch's time.
    api.rows("/data/plans", plan())
    again = api.get("/data/data-sources/ds_1/progress").json()
    assert again["phase"] == "processing" and again[started] == processing[started]
    assert again[processed] == 3
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
    # As stored, plus external_id (the SDK's listed plan requires it: the id in the source).
    assert body == {"result": {"count": 1, "list": [{**expected, "external_id": expected["id"]}]}}


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


def test_limit_up_to_10000_reads_everything_at_once(make_api: Callable[..., Api]) -> None:
    api = make_api(max_batch=10_000)
    api.rows("/data/customers", [customer(id=f"c{i:05d}") for i in range(10_000)])
    body = api.get("/data/customers?limit=10000").json()["result"]
    assert body["count"] == 10_000 and len(body["list"]) == 10_000
    assert body["list"][-1]["id"] == "c09999"


def test_offset_and_after_are_ignored_in_ignore_mode(listed: Api) -> None:
    paged = listed.get("/data/customers?limit=5&offset=10").json()["result"]["list"]
    assert paged[0]["id"] == "cust_10"
    assert listed.post("/_sandbox/faults", {"listing_offset": "ignore"}).status_code == 200
    for query in ("limit=5&offset=10", "limit=5&after=cust_09", "limit=5"):
        body = listed.get(f"/data/customers?{query}").json()["result"]
        assert [c["id"] for c in body["list"]] == [f"cust_{i:02d}" for i in range(5)], query
        assert body["count"] == 25
    # DELETE restores the start-up wire settings: offsets count again.
    listed.request("DELETE", "/_sandbox/faults")
    assert listed.get("/data/customers?limit=5&offset=10").json()["result"]["list"][0]["id"] == "cust_10"


@pytest.mark.parametrize("query", ["limit=0", "limit=10001", "limit=abc", "offset=-1", "offset=x"])
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
