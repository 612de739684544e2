"""Fault injection over real HTTP (the live sandbox subprocess), and the rate limiter."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sandbox_helpers import Api, customer, plan

from sandbox.faults import FaultConfig, fault_config_as_json

PLANS = [plan(id=f"plan_{i}") for i in range(3)]


def _set(live: httpx.Client, **changes: Any) -> dict[str, Any]:
    """Change faults at run time; return the full configuration answered."""
    response = live.post("/_sandbox/faults", json=changes)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _stored_plans(live: httpx.Client) -> list[str]:
    """Ids of the plans stored for ds_1."""
    return [p["id"] for p in live.get("/_sandbox/ledger").json().get("ds_1", {}).get("plans", [])]


def test_fault_settings_read_update_and_restore(live: httpx.Client) -> None:
    initial = live.get("/_sandbox/faults").json()
    assert initial == {
        **fault_config_as_json(FaultConfig()),
        "max_batch": 1000,
        "rate_limit": None,
        "wire": "sdk",
        "mrr_unit": "cents",
        "listing_offset": "honor",
    }
    answer = _set(live, error_rate=0.25, error_statuses=[503], lost_mode="close", wire="legacy")
    assert answer == {
        **initial,
        "error_rate": 0.25,
        "error_statuses": [503],
        "lost_mode": "close",
        "wire": "legacy",
    }
    # A partial update keeps the other settings.
    answer = _set(live, latency_ms=5)
    assert answer["error_rate"] == 0.25 and answer["latency_ms"] == 5.0
    assert live.get("/_sandbox/faults").json() == answer
    assert live.delete("/_sandbox/faults").json() == initial


@pytest.mark.parametrize(
    "changes",
    [
        {"error_rate": 1.5},
        {"error_rate": "high"},
        {"nonsense": 1},
        {"error_statuses": [404]},
        {"lost_mode": "drop"},
        {"paths": "/data"},
        {"max_batch": 0},
        {"rate_limit": -1},
        {"outage": "yes"},
        {"hang_seconds": -1},
        {"throttle_retry_after": 1.5},
        {"latency_ms": 5, "seed": "x"},
        {"wire": "v2"},
        {"mrr_unit": "dollars"},
        {"listing_offset": True},
        {"error_rate": 0.5, "wire": ["sdk"]},
    ],
)
def test_bad_fault_settings_are_400_and_change_nothing(live: httpx.Client, changes: dict[str, Any]) -> None:
    before = live.get("/_sandbox/faults").json()
    response = live.post("/_sandbox/faults", json=changes)
    assert response.status_code == 400 and "error" in response.json()
    assert live.get("/_sandbox/faults").json() == before


def test_fault_body_must_be_an_object(live: httpx.Client) -> None:
    assert live.post("/_sandbox/faults", content=b"[1]").status_code == 400
    assert live.post("/_sandbox/faults", content=b"nope").status_code == 400


def test_fixed_latency(live: httpx.Client) -> None:
    _set(live, latency_ms=300)
    started = time.perf_counter()
    assert live.post("/data/plans", json=plan()).status_code == 200
    assert time.perf_counter() - started >= 0.3


def test_latency_per_row(live: httpx.Client) -> None:
    _set(live, latency_per_row_ms=4)
    started = time.perf_counter()
    assert live.post("/data/plans", json=[plan(id=f"p{i}") for i in range(100)]).status_code == 200
    assert time.perf_counter() - started >= 0.4
    started = time.perf_counter()
    assert live.post("/data/plans", json=[]).status_code == 200
    assert time.perf_counter() - started < 0.3


def test_jitter_varies_within_its_bound(live: httpx.Client) -> None:
    _set(live, jitter_ms=150, seed=7)
    durations = []
    for _ in range(6):
        started = time.perf_counter()
        assert live.get("/data/plans").status_code == 200
        durations.append(time.perf_counter() - started)
    assert max(durations) < 1.0
    assert max(durations) - min(durations) > 0.02
    assert max(durations) > 0.02


def test_error_rate_answers_5xx_before_applying(live: httpx.Client) -> None:
    _set(live, error_rate=1.0, error_statuses=[502])
    response = live.post("/data/plans", json=PLANS)
    assert response.status_code == 502 and "error" in response.json()
    assert _stored_plans(live) == []
    _set(live, error_statuses=[500, 503], seed=3)
    statuses = {live.post("/data/plans", json=PLANS).status_code for _ in range(12)}
    assert statuses == {500, 503}
    assert _stored_plans(live) == []


def test_seed_makes_faults_reproducible(live: httpx.Client) -> None:
    def run() -> list[int]:
        _set(live, error_rate=0.5, seed=42)
        return [live.get("/data/plans").status_code for _ in range(16)]

    first, second = run(), run()
    assert first == second
    assert 200 in first and any(s >= 500 for s in first)


def test_lost_response_as_502_still_applies_the_batch(live: httpx.Client) -> None:
    _set(live, lost_rate=1.0, lost_mode="502")
    response = live.post("/data/plans", json=PLANS)
    assert response.status_code == 502 and "error" in response.json()
    assert _stored_plans(live) == ["plan_0", "plan_1", "plan_2"]
    # The retry of a lost batch is idempotent.
    _set(live, lost_rate=0.0)
    assert [r["export_status"] for r in live.post("/data/plans", json=PLANS).json()["result"]] == [
        "unchanged"
    ] * 3


def test_lost_response_as_closed_connection_still_applies_the_batch(live: httpx.Client) -> None:
    _set(live, lost_rate=1.0, lost_mode="close")
    with pytest.raises(httpx.RemoteProtocolError):
        live.post("/data/plans", json=PLANS)
    assert _stored_plans(live) == ["plan_0", "plan_1", "plan_2"]
    last = live.get("/_sandbox/requests").json()["requests"][-1]
    assert last["fault"] == "lost_close" and last["response_complete"] is False
    assert last["results"] == {"inserted": 3}


def test_lost_mode_either_gives_both_variants(live: httpx.Client) -> None:
    _set(live, lost_rate=1.0, lost_mode="either", seed=1)
    outcomes: set[int | str] = set()
    for i in range(12):
        try:
            outcomes.add(live.post("/data/plans", json=plan(id=f"p{i}")).status_code)
        except httpx.RemoteProtocolError:
            outcomes.add("closed")
    assert outcomes == {502, "closed"}
    assert len(_stored_plans(live)) == 12


def test_hang_outlasts_a_short_client_timeout_and_applies_nothing(live: httpx.Client) -> None:
    _set(live, hang_rate=1.0, hang_seconds=20)
    started = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout):
        live.post("/data/plans", json=PLANS, timeout=0.5)
    assert time.perf_counter() - started < 5
    _set(live, hang_rate=0.0)
    assert _stored_plans(live) == []
    # The sandbox is still answering.
    assert live.post("/data/plans", json=PLANS).status_code == 200


def test_hang_ends_with_504_when_the_client_waits_longer(live: httpx.Client) -> None:
    _set(live, hang_rate=1.0, hang_seconds=0.3)
    started = time.perf_counter()
    response = live.post("/data/plans", json=PLANS, timeout=10)
    assert response.status_code == 504 and time.perf_counter() - started >= 0.3
    assert _stored_plans(live) == []


def test_outage_is_503_for_every_data_request(live: httpx.Client) -> None:
    _set(live, outage=True)
    for method, path in [
        ("POST", "/data/plans"),
        ("POST", "/data/customers"),
        ("POST", "/data/invoices"),
        ("GET", "/data/plans"),
        ("GET", "/data/invoices"),
        ("GET", "/data/data-sources/ds_1/progress"),
        ("POST", "/data/data-sources/ds_1/reset"),
    ]:
        response = live.request(method, path, json=[customer()])
        assert response.status_code == 503, (method, path)
        assert "error" in response.json()
    # The control routes are never faulted, and auth still comes first.
    assert live.get("/_sandbox/ledger").status_code == 200
    assert live.get("/data/plans", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert _set(live, outage=False)["outage"] is False
    assert live.get("/data/plans").status_code == 200


def test_throttle_is_429_with_retry_after_and_applies_nothing(live: httpx.Client) -> None:
    _set(live, throttle_rate=1.0, throttle_retry_after=7)
    response = live.post("/data/plans", json=PLANS)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert "error" in response.json()
    assert _stored_plans(live) == []


def test_paths_limit_the_faults(live: httpx.Client) -> None:
    _set(live, outage=True, paths=["/data/invoices"])
    assert live.post("/data/plans", json=PLANS).status_code == 200
    assert live.post("/data/invoices", json=[]).status_code == 503
    assert live.get("/data/invoices").status_code == 503


def test_max_batch_changes_at_run_time(live: httpx.Client) -> None:
    assert _set(live, max_batch=2)["max_batch"] == 2
    assert live.post("/data/plans", json=PLANS).status_code == 413
    assert live.post("/data/plans", json=PLANS[:2]).status_code == 200


def test_rate_limit_changes_at_run_time(live: httpx.Client) -> None:
    assert _set(live, rate_limit=2)["rate_limit"] == 2.0
    statuses = [live.post("/data/plans", json=plan(id=f"p{i}")).status_code for i in range(3)]
    assert statuses == [200, 200, 429]
    assert _stored_plans(live) == ["p0", "p1"]
    # Per key: another key has its own bucket.
    other = live.get("/data/plans", headers={"Authorization": "Bearer key_2"})
    assert other.status_code == 200


def test_rate_limiter_refuses_with_retry_after_then_refills(make_api: Callable[..., Api]) -> None:
    api = make_api(rate_limit=5)
    # Capacity max(1, rate) = 5: a burst of 5 passes, the 6th is refused and applies nothing.
    assert [api.get("/data/plans").status_code for _ in range(5)] == [200] * 5
    refused = api.post("/data/plans", plan())
    assert refused.status_code == 429 and "error" in refused.json()
    assert int(refused.headers["Retry-After"]) >= 1
    assert api.ledger()["plans"] == []
    deadline = time.monotonic() + 3
    while api.post("/data/plans", plan()).status_code == 429:
        assert time.monotonic() < deadline, "bucket never refilled"
        time.sleep(0.02)
    assert api.ledger()["plans"] == [plan()]


def test_slow_rate_retry_after_is_rounded_up(make_api: Callable[..., Api]) -> None:
    api = make_api(rate_limit=0.25)
    assert api.get("/data/plans").status_code == 200
    refused = api.get("/data/plans")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] in {"3", "4"}


def test_faults_given_at_start_apply(make_api: Callable[..., Api]) -> None:
    api = make_api(faults=FaultConfig(outage=True))
    assert api.post("/data/plans", plan()).status_code == 503
    assert api.get("/_sandbox/faults").json()["outage"] is True
