"""`GET /reports/mrr` in the SDK's shape: periods, intervals, default range, filters, FX, units."""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from sandbox_helpers import Api, customer, plan
from test_sandbox_mrr import (
    HAND_CUSTOMERS,
    HAND_INVOICES,
    HAND_PLANS,
    HAND_REPORT,
    _load,
    _random_history,
    sub,
)

from sandbox import clock

MONEY = ("new", "expansion", "contraction", "reactivation", "total_mrr")


def _sdk(api: Api, query: str = "") -> dict[str, Any]:
    """The whole answer, asserting a 200."""
    response = api.get(f"/reports/mrr{query}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _month_end(period: str) -> str:
    year, month = (int(part) for part in period.split("-"))
    return f"{period}-{calendar.monthrange(year, month)[1]:02d}"


def _as_sdk(legacy: dict[str, Any]) -> dict[str, Any]:
    """A legacy entry as the SDK period it must become."""
    diff = legacy["new"] + legacy["expansion"] + legacy["reactivation"] - legacy["contraction"] - legacy["churn"]
    return {
        "date": legacy["period"] + "-01",
        "end_date": _month_end(legacy["period"]),
        **{name: legacy[name] for name in MONEY},
        "churn": -legacy["churn"],
        "mrr_diff": diff,
        "net_mrr_diff": diff,
        "fx_adjustment": 0,
        "total_arr": 12 * legacy["total_mrr"],
        "total_customers": legacy["total_customers"],
    }


@pytest.fixture
def hand(api: Api) -> Api:
    _load(api, HAND_PLANS, HAND_CUSTOMERS, HAND_INVOICES)
    return api


def test_hand_history_in_the_sdk_shape(hand: Api) -> None:
    body = _sdk(hand, "?date=20240101-20241231")
    assert set(body) == {"result", "currency"} and body["currency"] == "usd"
    periods = body["result"]
    assert len(periods) == 12
    previous_total = 0
    for period, legacy in zip(periods, HAND_REPORT, strict=True):
        assert {k: period[k] for k in _as_sdk(legacy)} == _as_sdk(legacy)
        # mrr_diff is the net change: the history starts in 2024-01, so from 0.
        assert period["mrr_diff"] == legacy["total_mrr"] - previous_total
        previous_total = legacy["total_mrr"]
    # Churn is negative; the customer counts follow the movements (May: cust_l churns alone).
    may = periods[4]
    assert may["churn"] < 0 and may["churn_customers"] == 1 and may["customers_diff"] == -1
    january = periods[0]
    assert (january["new_customers"], january["total_customers"]) == (2, 2)
    assert january["arpa"] == 5500
    # breakdown=data_source: echoed, and each period names its data source.
    broken = _sdk(hand, "?date=20240101-20240131&breakdown=data_source")
    assert broken["breakdown"] == "data_source" and broken["result"][0]["data_source"] == "ds_1"


@pytest.mark.parametrize("seed", [1, 2])
def test_legacy_and_sdk_answers_agree_on_random_histories(api: Api, seed: int) -> None:
    plans, customers, invoices = _random_history(seed)
    _load(api, plans, customers, invoices)
    periods = _sdk(api, "?date=20230101-20241231")["result"]
    assert api.post("/_sandbox/faults", {"wire": "legacy"}).status_code == 200
    legacy = api.get("/reports/mrr?date=20230101-20241231").json()["result"]["data"]
    assert any(entry["churn"] for entry in legacy)
    for period, entry in zip(periods, legacy, strict=True):
        assert {k: period[k] for k in _as_sdk(entry)} == _as_sdk(entry)
    for before, period in zip(periods, periods[1:], strict=False):
        assert period["total_mrr"] - before["total_mrr"] == period["mrr_diff"]


@pytest.fixture
def simple(api: Api) -> Api:
    """cust_m: 1000/month from 2024-01-01 to 2024-07-01; cust_y: 12000/year from 2024-02-15."""
    _load(
        api,
        [plan(id="p_m"), plan(id="p_y", billing_freq="year")],
        [customer(id="cust_m"), customer(id="cust_y")],
        [
            *(
                sub(f"m{k}", "cust_m", "p_m", 1000, f"2024-{k:02d}-01", f"2024-{k + 1:02d}-01")
                for k in range(1, 7)
            ),
            sub("y1", "cust_y", "p_y", 12000, "2024-02-15", "2025-02-15"),
        ],
    )
    return api


def test_quarter_and_year_intervals(simple: Api) -> None:
    months = _sdk(simple, "?date=20240101-20241231")["result"]
    quarters = _sdk(simple, "?date=20240101-20241231&interval=quarter")["result"]
    assert [(q["date"], q["end_date"]) for q in quarters] == [
        ("2024-01-01", "2024-03-31"), ("2024-04-01", "2024-06-30"),
        ("2024-07-01", "2024-09-30"), ("2024-10-01", "2024-12-31"),
    ]  # fmt: skip
    # A quarter ends where its last month ends.
    assert [q["total_mrr"] for q in quarters] == [months[i]["total_mrr"] for i in (2, 5, 8, 11)]
    assert [q["total_mrr"] for q in quarters] == [2000, 2000, 1000, 1000]
    assert (quarters[0]["new"], quarters[0]["new_customers"]) == (2000, 2)
    assert (quarters[2]["churn"], quarters[2]["churn_customers"]) == (-1000, 1)
    # Movements compare period ends: cust_m comes and goes within 2024, so the year shows neither.
    (year,) = _sdk(simple, "?date=20240301-20240301&interval=year")["result"]
    assert (year["date"], year["end_date"], year["total_mrr"], year["new"], year["churn"]) == (
        "2024-01-01", "2024-12-31", 1000, 1000, 0,
    )  # fmt: skip


def test_week_and_day_intervals(simple: Api) -> None:
    # 2024-01-03 is a Wednesday: its week starts on Monday 2024-01-01.
    weeks = _sdk(simple, "?date=20240103-20240110&interval=week")["result"]
    assert [(w["date"], w["end_date"]) for w in weeks] == [("2024-01-01", "2024-01-07"), ("2024-01-08", "2024-01-14")]
    assert [w["new"] for w in weeks] == [1000, 0] and weeks[1]["total_mrr"] == 1000
    days = _sdk(simple, "?date=20240214-20240216&interval=day")["result"]
    assert [(d["date"], d["end_date"]) for d in days] == [(f"2024-02-{n}",) * 2 for n in (14, 15, 16)]
    assert [d["total_mrr"] for d in days] == [1000, 2000, 2000]
    assert [d["new"] for d in days] == [0, 1000, 0]


def test_default_range_is_the_last_12_months(simple: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "today", lambda: date(2024, 6, 15))
    periods = _sdk(simple)["result"]
    assert [p["date"] for p in periods] == [f"2023-{m:02d}-01" for m in range(7, 13)] + [
        f"2024-{m:02d}-01" for m in range(1, 7)
    ]
    assert periods[-1]["end_date"] == "2024-06-30" and periods[-1]["total_mrr"] == 2000
    weeks = _sdk(simple, "?interval=week")["result"]
    assert weeks[0]["date"] == "2023-06-26" and weeks[-1]["date"] == "2024-06-10"


@pytest.fixture
def currencies(api: Api) -> Api:
    """1000/month each in usd (cust_u), eur (cust_e), jpy (cust_j, whole yen) and xts (no rate)."""
    _load(
        api,
        [plan(id=f"p_{c}", currency=c) for c in ("usd", "eur", "jpy", "xts")],
        [customer(id=f"cust_{c[0]}") for c in ("usd", "eur", "jpy", "xts")],
        [
            sub(f"i_{c}", f"cust_{c[0]}", f"p_{c}", 1000, "2024-01-01", "2024-02-01", currency=c)
            for c in ("usd", "eur", "jpy", "xts")
        ],
    )
    return api


def _total(api: Api, query: str) -> tuple[Any, str]:
    body = _sdk(api, "?date=20240101-20240131" + query)
    return body["result"][0]["total_mrr"], body["currency"]


def test_currency_filter_and_fx(currencies: Api) -> None:
    # Same currency asked for and reported in: no FX at all, even for a currency without a rate.
    assert _total(currencies, "&currency=xts&baseCurrency=xts") == (1000, "xts")
    assert _total(currencies, "&currency=eur&baseCurrency=eur") == (1000, "eur")
    assert _total(currencies, "&currency=usd") == (1000, "usd")
    # eur 10.00 × 1.10 = usd 11.00; jpy 1000 (whole yen) × 0.0065 = usd 6.50.
    assert _total(currencies, "&currency=eur") == (1100, "usd")
    assert _total(currencies, "&currency=jpy") == (650, "usd")
    assert _total(currencies, "&currency=usd%20eur%20jpy") == (2750, "usd")
    # usd 10.00 / 1.10 = eur 9.09; into yen: usd 10.00 / 0.0065 = 1538.46 → 1538 (whole yen).
    assert _total(currencies, "&currency=usd&baseCurrency=eur") == (909, "eur")
    assert _total(currencies, "&currency=usd&baseCurrency=jpy") == (1538, "jpy")
    # Converting xts is impossible: a 400 that says how to avoid it.
    response = currencies.get("/reports/mrr?date=20240101-20240131")
    assert response.status_code == 400 and "xts" in response.json()["error"]
    assert "baseCurrency" in response.json()["error"]


def test_customer_plan_and_data_source_filters(currencies: Api) -> None:
    assert _total(currencies, "&customer=cust_u") == (1000, "usd")
    assert _total(currencies, "&customer=cust_e") == (1100, "usd")
    assert _total(currencies, "&plan=p_eur") == (1100, "usd")
    assert _total(currencies, "&plan=p_usd%20p_eur") == (2100, "usd")
    assert _total(currencies, "&currency=usd&data_source=ds_1") == (1000, "usd")
    assert _total(currencies, "&data_source=ds_2") == (0, "usd")
    assert _total(currencies, "&data_source=~ds_1") == (0, "usd")
    assert currencies.get("/reports/mrr?customer=a%20b").status_code == 400


def test_mrr_unit_units(currencies: Api) -> None:
    assert currencies.post("/_sandbox/faults", {"mrr_unit": "units"}).status_code == 200
    period = _sdk(currencies, "?date=20240101-20240131&currency=usd%20eur")["result"][0]
    assert (period["total_mrr"], period["total_arr"], period["new"]) == (21.0, 252.0, 21.0)
    assert period["total_customers"] == 2  # counts are not money
    assert _total(currencies, "&currency=jpy&baseCurrency=jpy") == (1000, "jpy")  # no minor unit
    legacy = currencies.post("/_sandbox/faults", {"wire": "legacy"}).json()
    assert legacy["mrr_unit"] == "units"
    data = currencies.get("/reports/mrr?date=20240101-20240131").json()["result"]
    assert data["currency_note"] == "amounts in units (cents / 100), not converted"
    assert data["data"][0]["total_mrr"] == 40.0  # 4 × 1000 cents added as they are


@pytest.mark.parametrize(
    "query",
    [
        "?interval=hour",
        "?interval=Month",
        "?baseCurrency=USD",
        "?baseCurrency=dollars",
        "?interval=day&date=00010101-99991231",
        "?breakdown=plan",
        "?date=20240301-20240201",
    ],
)
def test_bad_parameters_are_400(simple: Api, query: str) -> None:
    response = simple.get(f"/reports/mrr{query}")
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}


def test_the_report_needs_a_key(simple: Api, make_api: Callable[..., Api]) -> None:
    assert simple.get("/reports/mrr", key=None).status_code == 401
