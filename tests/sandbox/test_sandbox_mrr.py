"""`GET /reports/mrr`: a hand-worked history, ranges, a random history against a naive reading of
docs/mrr.md, parameter errors, auth, the digest mode and faults."""

from __future__ import annotations

import calendar
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import httpx
import pytest
from sandbox_helpers import DROP, Api, customer, invoice, plan

from sandbox import StoreMode
from sandbox.reports.customer_mrr import monthly, plan_factor
from sandbox.wire import WireConfig

MOVEMENTS = ("new", "expansion", "contraction", "churn", "reactivation")
NOTE = "amounts in cents, not converted"


# These tests pin the MRR rules through the legacy answer shape ({"result": {..., "data"}}), kept as
# wire=legacy; the SDK shape of the same figures is tested in test_sandbox_mrr_sdk.py.
@pytest.fixture
def make_api(make_api: Callable[..., Api]) -> Callable[..., Api]:
    """The conftest's builder, with the legacy wire unless a test says otherwise."""

    def build(**overrides: Any) -> Api:
        return make_api(**{"wire": WireConfig(shape="legacy"), **overrides})

    return build


def sub(
    id: str, customer_id: str, plan_id: str, amount: int, start: str, end: str, **changes: Any
) -> dict[str, Any]:
    """A subscription invoice dated (and paid) on its start unless `changes` say otherwise."""
    fields = {"date": start, "payment_date": start, **changes}
    return invoice(
        id=id, customer_id=customer_id, plan_id=plan_id, type="subscription", amount_cents=amount,
        start_date=start, end_date=end, **fields,
    )  # fmt: skip


def other(id: str, customer_id: str, kind: str, amount: int, date: str, **changes: Any) -> dict[str, Any]:
    """A one-time, refund or cancellation invoice (no plan unless given), its period the date alone."""
    fields = {"plan_id": DROP, "start_date": date, "end_date": date, **changes}
    return invoice(
        id=id, customer_id=customer_id, type=kind, amount_cents=amount, date=date, payment_date=date, **fields
    )


def entry(
    period: str, total_mrr: int, total_customers: int, source: str = "ds_1", **moves: int
) -> dict[str, Any]:
    """One expected report entry; movements not named are 0."""
    return {
        "period": period,
        "data_source": source,
        **{name: moves.get(name, 0) for name in MOVEMENTS},
        "total_mrr": total_mrr,
        "total_customers": total_customers,
    }


# --- The hand-worked history (ds_1) -------------------------------------------------------------

HAND_PLANS = [
    plan(id="plan_basic", billing_freq_count=DROP),  # month, count absent = 1: factor 1
    plan(id="plan_pro"),  # month × 1: factor 1
    plan(id="plan_quarterly", billing_freq_count=3),  # month × 3: factor 1/3
    plan(id="plan_annual", billing_freq="year", billing_freq_count=DROP),  # year: factor 1/12
]
HAND_CUSTOMERS = [customer(id=name) for name in ("cust_a", "cust_q", "cust_y", "cust_l", "cust_e")]
HAND_INVOICES = [
    # cust_a: monthly, upgrades, downgrades, is refunded, cancels, comes back.
    sub("a01", "cust_a", "plan_basic", 1000, "2024-01-01", "2024-02-01"),
    sub("a02", "cust_a", "plan_pro", 3000, "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"),
    # Proration: starts after a02, so it would be `s` in February (5000) if it were not ignored.
    sub("a02_prorate", "cust_a", "plan_pro", 5000, "2024-02-15", "2024-03-01", proration=True),
    sub("a03", "cust_a", "plan_basic", 1500, "2024-03-01", "2024-04-01"),
    # One-time: starts after a03, so it would be `s` in March (lapsed the same day) if it counted.
    other("a03_setup", "cust_a", "one-time", 20000, "2024-03-10", plan_id="plan_basic"),
    sub("a04", "cust_a", "plan_basic", 1500, "2024-04-01", "2024-05-01"),
    # A refund on its own plan (annual, not s's basic): 7200 / 12 = 600.
    other("a04_refund", "cust_a", "refund", 7200, "2024-04-10", plan_id="plan_annual"),
    sub("a05", "cust_a", "plan_basic", 1500, "2024-05-01", "2024-06-01"),
    other("a05_refund", "cust_a", "refund", 700, "2024-05-10", proration=True),  # ignored
    sub("a06", "cust_a", "plan_basic", 1500, "2024-06-01", "2024-07-01"),
    other("a06_cancel", "cust_a", "cancellation", 0, "2024-06-01"),  # on s's start: cancels
    # Back in September after two empty months; the June cancellation is before this start.
    sub("a09", "cust_a", "plan_basic", 1000, "2024-09-01", "2024-10-01"),
    sub("a10", "cust_a", "plan_basic", 1000, "2024-10-01", "2024-11-01"),
    sub("a11", "cust_a", "plan_basic", 1000, "2024-11-01", "2024-12-01"),
    sub("a12", "cust_a", "plan_basic", 1000, "2024-12-01", "2025-01-01"),
    # cust_q: quarterly (month × 3), renewed on the 15th; a refund without a plan in November.
    sub("q01", "cust_q", "plan_quarterly", 30000, "2024-01-15", "2024-04-15"),
    sub("q04", "cust_q", "plan_quarterly", 30000, "2024-04-15", "2024-07-15"),
    sub("q07", "cust_q", "plan_quarterly", 30000, "2024-07-15", "2024-10-15"),
    sub("q10", "cust_q", "plan_quarterly", 30002, "2024-10-15", "2025-01-15"),
    other("q11_refund", "cust_q", "refund", 3000, "2024-11-05"),  # no plan_id: the plan of s, quarterly
    # cust_y: annual.
    sub("y02", "cust_y", "plan_annual", 120018, "2024-02-10", "2025-02-10"),
    # cust_l: two months, then no renewal (implicit churn); the second period ends on May 1st exactly.
    sub("l03", "cust_l", "plan_basic", 2000, "2024-03-01", "2024-04-01"),
    sub("l04", "cust_l", "plan_basic", 2000, "2024-04-01", "2024-05-01"),
    # cust_e: only a one-time invoice, never a customer with MRR.
    other("e03", "cust_e", "one-time", 5000, "2024-03-20"),
]
# Every customer's MRR at the end of each 2024 month (docs/mrr.md section 2), in cents:
#   cust_a: Jan 1000 (a01) | Feb 3000 (a02; a02_prorate ignored) | Mar 1500 (a03; a03_setup is one-time)
#           | Apr 1500 − 7200 / 12 = 900 (a04_refund in April, on its own annual plan) | May 1500 (a05;
#           a05_refund is a proration) | Jun 0 (a06_cancel: 06-01 <= 06-01 < 07-01) | Jul 0, Aug 0 (a06
#           lapsed: 07-01 < T) | Sep–Dec 1000 (a09..a12; 06-01 < a09's start, so not cancelled)
#   cust_q: Jan–Sep 30000 / 3 = 10000 | Oct 30002 / 3 = 10000.67 → 10001 | Nov 10001 − 3000 / 3
#           = 9001 (the refund has no plan: q10's quarterly plan) | Dec 10001
#   cust_y: Feb–Dec 120018 / 12 = 10001.5 → 10002 (half away from zero)
#   cust_l: Mar 2000 | Apr 2000 (l04 ends 05-01 == T: still active) | May on 0 (05-01 < T: lapsed)
#   cust_e: 0 (one-time only)
HAND_REPORT = [
    # a 0 → 1000 new; q 0 → 10000 new. Total 1000 + 10000.
    entry("2024-01", 11000, 2, new=11000),
    # a 1000 → 3000 expansion 2000; y 0 → 10002 new. Total 3000 + 10000 + 10002.
    entry("2024-02", 23002, 3, new=10002, expansion=2000),
    # a 3000 → 1500 contraction 1500; l 0 → 2000 new. Total 1500 + 10000 + 10002 + 2000.
    entry("2024-03", 23502, 4, new=2000, contraction=1500),
    # a 1500 → 900 contraction 600. Total 900 + 10000 + 10002 + 2000.
    entry("2024-04", 22902, 4, contraction=600),
    # a 900 → 1500 expansion 600; l 2000 → 0 churn 2000. Total 1500 + 10000 + 10002.
    entry("2024-05", 21502, 3, expansion=600, churn=2000),
    # a 1500 → 0 churn 1500. Total 10000 + 10002.
    entry("2024-06", 20002, 2, churn=1500),
    # q renews (q07): no change.
    entry("2024-07", 20002, 2),
    # No invoice at all in August.
    entry("2024-08", 20002, 2),
    # a 0 → 1000, had MRR before: reactivation 1000. Total 1000 + 10000 + 10002.
    entry("2024-09", 21002, 3, reactivation=1000),
    # q 10000 → 10001 expansion 1. Total 1000 + 10001 + 10002.
    entry("2024-10", 21003, 3, expansion=1),
    # q 10001 → 9001 contraction 1000. Total 1000 + 9001 + 10002.
    entry("2024-11", 20003, 3, contraction=1000),
    # q 9001 → 10001 expansion 1000. Total 1000 + 10001 + 10002.
    entry("2024-12", 21003, 3, expansion=1000),
]


def _load(api: Api, plans: list[Any], customers: list[Any], invoices: list[Any], key: str = "key_1") -> None:
    """POST a history, asserting every row is stored."""
    for path, rows in (("/data/plans", plans), ("/data/customers", customers), ("/data/invoices", invoices)):
        for start in range(0, len(rows), 1000):
            results = api.rows(path, rows[start : start + 1000], key=key)
            assert all(r["export_status"] != "error" for r in results), results


def _report(api: Api, query: str = "", key: str | None = "key_1") -> list[dict[str, Any]]:
    """The report's entries, asserting a 200 and the fixed envelope."""
    response = api.get(f"/reports/mrr{query}", key=key)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert {k: v for k, v in result.items() if k != "data"} == {
        "interval": "month",
        "breakdown": "data_source",
        "currency_note": NOTE,
    }
    return result["data"]  # type: ignore[no-any-return]


@pytest.fixture
def hand(api: Api) -> Api:
    """The in-process sandbox loaded with the hand-worked history."""
    _load(api, HAND_PLANS, HAND_CUSTOMERS, HAND_INVOICES)
    return api


def test_hand_worked_history_month_by_month(hand: Api) -> None:
    # No date: from the earliest invoice's month (a01, January) to the latest's (a12, December).
    assert _report(hand) == HAND_REPORT
    assert _report(hand, "?interval=month&breakdown=data_source") == HAND_REPORT


def test_date_range_selects_months_and_keeps_history(hand: Api) -> None:
    # Months overlapping the range, the days inside them do not matter.
    assert _report(hand, "?date=20240415-20240920") == HAND_REPORT[3:9]
    # A range starting after the first invoices: prev comes from the real history, so September is
    # still a reactivation (cust_a had MRR in January–May) and June a churn of May's 1500.
    assert _report(hand, "?date=20240901-20240901") == [HAND_REPORT[8]]
    assert _report(hand, "?date=20240601-20240630") == [HAND_REPORT[5]]
    # Before any invoice: zero months.
    assert _report(hand, "?date=20231101-20231231") == [entry("2023-11", 0, 0), entry("2023-12", 0, 0)]


def test_range_past_the_last_invoice_shows_implicit_churn(hand: Api) -> None:
    assert _report(hand, "?date=20241201-20250331") == [
        HAND_REPORT[11],
        # a12 ended 2025-01-01 and q10 2025-01-15, both before 2025-02-01: churn 1000 + 10001.
        entry("2025-01", 10002, 1, churn=11001),
        # The annual y02 ends 2025-02-10 < 2025-03-01: churn 10002.
        entry("2025-02", 0, 0, churn=10002),
        entry("2025-03", 0, 0),
    ]


def test_a_key_reads_its_own_data_source(hand: Api) -> None:
    # key_1b shares ds_1; key_2's ds_2 has its own, smaller history.
    assert _report(hand, key="key_1b") == HAND_REPORT
    assert _report(hand, key="key_2") == []
    _load(
        hand,
        [plan(id="plan_basic", data_source="ds_2")],
        [customer(id="cust_a", data_source="ds_2")],
        [sub("a01", "cust_a", "plan_basic", 700, "2024-03-01", "2024-04-01", data_source="ds_2")],
        key="key_2",
    )
    assert _report(hand, key="key_2") == [entry("2024-03", 700, 1, source="ds_2", new=700)]
    assert _report(hand, "?date=20240301-20240430", key="key_2") == [
        entry("2024-03", 700, 1, source="ds_2", new=700),
        entry("2024-04", 0, 0, source="ds_2", churn=700),
    ]
    assert _report(hand) == HAND_REPORT


def test_no_invoices(api: Api) -> None:
    assert _report(api) == []
    assert _report(api, "?date=20240101-20240229") == [entry("2024-01", 0, 0), entry("2024-02", 0, 0)]


def test_utc_months_offsets_and_fractions(api: Api) -> None:
    # 2024-03-01T00:30+01:00 is 2024-02-29T23:30Z: the period starts in February. It ends half a
    # second after April starts, so it is still active at the end of March and lapsed at April's.
    start, end = "2024-03-01T00:30:00+01:00", "2024-04-01T00:00:00.5Z"
    z1 = sub("z1", "cust_z", "plan_basic", 4000, start, end)
    _load(api, [plan(id="plan_basic")], [customer(id="cust_z")], [z1])
    assert _report(api) == [entry("2024-02", 4000, 1, new=4000)]
    assert _report(api, "?date=20240201-20240430") == [
        entry("2024-02", 4000, 1, new=4000),
        entry("2024-03", 4000, 1),
        entry("2024-04", 0, 0, churn=4000),
    ]


def test_latest_subscription_by_start_then_date_then_id(api: Api) -> None:
    invoices = [
        # Same start: the later `date` wins over an earlier one, whatever the ids...
        sub("inv_z", "cust_t", "plan_basic", 3000, "2024-01-01", "2024-02-01", date="2023-12-20"),
        # ...and on equal start and date, the greater id by code point: "inv_a" > "inv_Z".
        sub("inv_Z", "cust_t", "plan_basic", 2000, "2024-01-01", "2024-02-01"),
        sub("inv_a", "cust_t", "plan_basic", 1000, "2024-01-01", "2024-02-01"),
    ]
    _load(api, [plan(id="plan_basic")], [customer(id="cust_t")], invoices)
    assert _report(api, "?date=20240101-20240131") == [entry("2024-01", 1000, 1, new=1000)]


def test_a_cancellation_amount_is_no_refund(api: Api) -> None:
    invoices = [
        sub("k1", "cust_k", "plan_basic", 1000, "2024-01-01", "2024-03-01"),
        # Dated before k3 starts, so it cancels nothing; its 500 must not be subtracted in March.
        other("k_cancel", "cust_k", "cancellation", 500, "2024-03-05", plan_id="plan_basic"),
        sub("k3", "cust_k", "plan_basic", 2000, "2024-03-10", "2024-04-10"),
    ]
    _load(api, [plan(id="plan_basic")], [customer(id="cust_k")], invoices)
    assert _report(api, "?date=20240101-20240430") == [
        entry("2024-01", 1000, 1, new=1000),
        entry("2024-02", 1000, 1),  # k1 ends 03-01 == T: still active
        entry("2024-03", 2000, 1, expansion=1000),  # k3: 2000, not 2000 − 500
        entry("2024-04", 0, 0, churn=2000),  # k3 ended 04-10 < 05-01
    ]


def test_plans_count_as_stored_now(api: Api) -> None:
    x1 = sub("x1", "cust_x", "plan_x", 1200, "2024-01-01", "2025-01-01")
    _load(api, [plan(id="plan_x")], [customer(id="cust_x")], [x1])
    assert _report(api) == [entry("2024-01", 1200, 1, new=1200)]
    # The same plan made annual re-values the invoice already stored: 1200 / 12.
    assert api.rows("/data/plans", plan(id="plan_x", billing_freq="year"))[0]["export_status"] == "updated"
    assert _report(api) == [entry("2024-01", 100, 1, new=100)]


def test_default_range_follows_invoice_dates(api: Api) -> None:
    # Billed in arrears: dated in February for January. The default range starts with the month of
    # the earliest invoice *date*, February; January's MRR is still February's `prev`.
    late = sub("late", "cust_r", "plan_basic", 1000, "2024-01-01", "2024-02-01", date="2024-02-05")
    _load(api, [plan(id="plan_basic")], [customer(id="cust_r")], [late])
    assert _report(api) == [entry("2024-02", 0, 0, churn=1000)]
    assert _report(api, "?date=20240101-20240229") == [
        entry("2024-01", 1000, 1, new=1000),
        entry("2024-02", 0, 0, churn=1000),
    ]


@pytest.mark.parametrize(
    ("freq", "count", "amount", "expected"),
    [
        ("week", None, 1000, 4333),  # 1000 × 52 / 12 = 4333.33
        ("day", None, 100, 3042),  # 100 × 365 / 12 = 3041.67
        ("month", 3, 1000, 333),  # 333.33
        ("month", 3, 1001, 334),  # 333.67
        ("month", 2, 1, 1),  # 0.5: half away from zero
        ("month", 4, 2, 1),  # 0.5
        ("month", 3, 1, 0),  # 0.33
        ("year", None, 6, 1),  # 0.5
        ("year", 2, 2400, 100),  # 2400 / 24
        ("week", 2, 600, 1300),  # 600 × 52 / 24 = 1300
        ("month", None, 0, 0),
    ],
)
def test_monthly_value_rounding(freq: str, count: int | None, amount: int, expected: int) -> None:
    row: dict[str, Any] = {"billing_freq": freq}
    if count is not None:
        row["billing_freq_count"] = count
    assert monthly(amount, plan_factor(row)) == expected


# --- A random history against a naive, month-by-month reading of docs/mrr.md --------------------


def _utc(value: str) -> datetime:
    """The UTC instant of an ISO date (a date alone is midnight UTC)."""
    instant = datetime.fromisoformat(value)
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


def _month_start(index: int) -> datetime:
    """The first instant of a month counted as year × 12 + month − 1."""
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


NAIVE_FACTORS = {
    "month": Fraction(1),
    "year": Fraction(1, 12),
    "week": Fraction(52, 12),
    "day": Fraction(365, 12),
}


def _naive_monthly(amount: int, plan_row: dict[str, Any] | None) -> int:
    """Rule 1 read literally: amount × factor, exactly, rounded half up (amounts are >= 0)."""
    if plan_row is None:
        exact = Fraction(amount)
    else:
        count = plan_row.get("billing_freq_count", 1)
        exact = amount * NAIVE_FACTORS[plan_row["billing_freq"]] / count
    return int(exact + Fraction(1, 2))  # int() floors a non-negative Fraction


def _naive_mrr(
    invoices: list[dict[str, Any]], plans: dict[str, Any], month_start: datetime, t: datetime
) -> int:
    """Rule 2 read literally, for one customer's invoices and the month [month_start, t)."""
    counted = [i for i in invoices if not i.get("proration")]
    candidates = [i for i in counted if i["type"] == "subscription" and _utc(i["start_date"]) < t]
    if not candidates:
        return 0
    s = max(candidates, key=lambda i: (_utc(i["start_date"]), _utc(i["date"]), i["id"]))
    cancelled = any(
        i["type"] == "cancellation" and _utc(s["start_date"]) <= _utc(i["date"]) < t for i in counted
    )
    value = 0
    if not _utc(s["end_date"]) < t and not cancelled:
        value = _naive_monthly(s["amount_cents"], plans.get(s["plan_id"]))
    for refund in counted:
        if refund["type"] == "refund" and month_start <= _utc(refund["date"]) < t:
            plan_id = refund["plan_id"] if "plan_id" in refund else s["plan_id"]
            value -= _naive_monthly(refund["amount_cents"], plans.get(plan_id))
    return max(value, 0)


def _naive_report(
    plans: list[dict[str, Any]], invoices: list[dict[str, Any]], first: int, last: int
) -> list[dict[str, Any]]:
    """Section 3 read literally for months first..last (year × 12 + month − 1): every customer's MRR
    at the end of every month from one month before anything happens."""
    by_plan = {p["id"]: p for p in plans}
    by_customer: dict[str, list[dict[str, Any]]] = {}
    for row in invoices:
        by_customer.setdefault(row["customer_id"], []).append(row)
    earliest = min(min(_utc(i["date"]), _utc(i["start_date"])) for i in invoices)
    origin = min(earliest.year * 12 + earliest.month - 1, first) - 1
    months = range(origin, last + 1)
    history = {
        name: [_naive_mrr(rows, by_plan, _month_start(m), _month_start(m + 1)) for m in months]
        for name, rows in by_customer.items()
    }
    report = []
    for index, month in enumerate(months):
        if month < first:
            continue
        moves = dict.fromkeys(MOVEMENTS, 0)
        for values in history.values():
            prev, cur = values[index - 1], values[index]
            if prev == 0 and cur > 0:
                moves["reactivation" if any(v > 0 for v in values[:index]) else "new"] += cur
            elif prev > 0 and cur == 0:
                moves["churn"] += prev
            elif 0 < prev < cur:
                moves["expansion"] += cur - prev
            elif 0 < cur < prev:
                moves["contraction"] += prev - cur
        totals = [values[index] for values in history.values()]
        period = f"{month // 12:04d}-{month % 12 + 1:02d}"
        report.append({**entry(period, sum(totals), sum(1 for v in totals if v > 0)), **moves})
    return report


def _random_history(seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Plans of every frequency and 40 customers with random invoices of every type, 2023–2024.

    Dates favour the 1st of a month and mix forms (date only, Z, fractions, +/- offsets that move
    an instant across a month boundary); some subscriptions share start and date to exercise ties.
    """
    rng = random.Random(seed)
    plans = [
        plan(id="p_day", billing_freq="day", billing_freq_count=DROP),
        plan(id="p_week2", billing_freq="week", billing_freq_count=2),
        plan(id="p_month", billing_freq="month", billing_freq_count=DROP),
        plan(id="p_quarter", billing_freq="month", billing_freq_count=3),
        plan(id="p_year", billing_freq="year", billing_freq_count=1),
        plan(id="p_year2", billing_freq="year", billing_freq_count=2),
    ]
    plan_ids = [p["id"] for p in plans]
    customers = [customer(id=f"c{n:02d}") for n in range(40)]

    def day() -> datetime:
        year, month = rng.choice((2023, 2024)), rng.randint(1, 12)
        last_day = calendar.monthrange(year, month)[1]
        return datetime(year, month, 1 if rng.random() < 0.4 else rng.randint(1, last_day))

    def text(moment: datetime) -> str:
        form = rng.randrange(5)
        if form == 0:
            return moment.strftime("%Y-%m-%d")
        if form == 1:
            return moment.strftime("%Y-%m-%dT00:00:00Z")
        if form == 2:
            return moment.strftime("%Y-%m-%dT00:00:00.") + rng.choice(("5", "25", "000001")) + "Z"
        if form == 3:
            return moment.strftime("%Y-%m-%dT00:30:00+01:00")  # the day before, in UTC
        return (moment - timedelta(days=1)).strftime("%Y-%m-%dT23:30:00-01:00")  # the day itself, 00:30Z

    invoices: list[dict[str, Any]] = []
    for owner in customers:
        subscriptions: list[dict[str, Any]] = []
        for n in range(rng.randint(1, 14)):
            ident = f"i_{owner['id']}_{rng.choice('aZb')}{n:02d}"
            kind = rng.choices(("subscription", "refund", "cancellation", "one-time"), (60, 14, 10, 16))[0]
            start = day()
            length = timedelta(days=rng.choice((1, 28, 31, 61, 92, 366)))
            start_text, end_text = text(start), text(start + length)
            if kind == "subscription" and subscriptions and rng.random() < 0.15:
                # Same start and date as an earlier one: the tie goes to the greater id.
                start_text, date_text = subscriptions[-1]["start_date"], subscriptions[-1]["date"]
            else:
                date_text = text(start + timedelta(days=rng.choice((0, 0, 0, 3, -3))))
            row = invoice(
                id=ident, customer_id=owner["id"], type=kind, date=date_text, start_date=start_text,
                end_date=end_text, payment_date=DROP, amount_cents=rng.choice((0, 990, 1001, 4999, 36001)),
                plan_id=rng.choice(plan_ids) if kind == "subscription" or rng.random() < 0.5 else DROP,
                proration=rng.choice((True, False, False, False, DROP)), quantity=DROP,
            )  # fmt: skip
            invoices.append(row)
            if kind == "subscription":
                subscriptions.append(row)
    return plans, customers, invoices


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_history_matches_a_naive_reading_and_the_identity(
    make_api: Callable[..., Api], seed: int
) -> None:
    api = make_api()
    plans, customers, invoices = _random_history(seed)
    _load(api, plans, customers, invoices)
    report = _report(api)
    dates = sorted(_utc(i["date"]) for i in invoices)
    first, last = (dates[0].year * 12 + dates[0].month - 1, dates[-1].year * 12 + dates[-1].month - 1)
    assert report == _naive_report(plans, invoices, first, last)
    assert any(row["reactivation"] for row in report) and any(row["contraction"] for row in report)
    # total(M) − total(M−1) = new + expansion + reactivation − contraction − churn, every month.
    for before, row in zip(report, report[1:], strict=False):
        moved = row["new"] + row["expansion"] + row["reactivation"] - row["contraction"] - row["churn"]
        assert row["total_mrr"] - before["total_mrr"] == moved
    # A range is those months of the whole report, whatever history it leaves out before it.
    for begin, stop in ((3, 9), (10, 11), (0, 1)):
        wanted = report[begin:stop]
        query = f"?date={wanted[0]['period'].replace('-', '')}01-{wanted[-1]['period'].replace('-', '')}01"
        assert _report(api, query) == wanted
    # Past the last invoice (lapses with nothing after them) and before the first, as read naively.
    start, end = _month_start(first - 2), _month_start(last + 12)
    query = f"?date={start:%Y%m%d}-{end:%Y%m}28"
    assert _report(api, query) == _naive_report(plans, invoices, first - 2, last + 12)


# --- Errors, auth, store mode, faults ------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "?date=2024-01-01",
        "?date=20240101",
        "?date=2024-01-01-2024-02-01",
        "?date=20240101-2024020",
        "?date=20241301-20241231",
        "?date=20240230-20240331",
        "?date=20240301-20240201",
        "?date=",
        "?date=２０２４０１０１-20240201",
        "?interval=week",
        "?interval=day",
        "?interval=quarter",
        "?interval=",
        "?interval=Month",
        "?breakdown=plan",
        "?breakdown=",
    ],
)
def test_bad_parameters_are_400(hand: Api, query: str) -> None:
    response = hand.get(f"/reports/mrr{query}")
    assert response.status_code == 400, response.text
    name = query[1:].split("=")[0]
    assert name in response.json()["error"]


def test_auth_is_required(hand: Api) -> None:
    assert hand.get("/reports/mrr", key=None).status_code == 401
    assert hand.get("/reports/mrr", key="nope").status_code == 401
    # Auth comes before the parameters.
    assert hand.get("/reports/mrr?interval=week", key=None).status_code == 401
    assert hand.request("POST", "/reports/mrr").status_code == 405


def test_digest_store_answers_409(make_api: Callable[..., Api]) -> None:
    api = make_api(store=StoreMode.DIGEST)
    _load(api, HAND_PLANS, HAND_CUSTOMERS, HAND_INVOICES)
    response = api.get("/reports/mrr")
    assert response.status_code == 409
    assert "--store full" in response.json()["error"]


def test_faults_apply_to_reports(hand: Api) -> None:
    def faults(**changes: Any) -> None:
        assert hand.request("DELETE", "/_sandbox/faults").status_code == 200
        assert hand.post("/_sandbox/faults", changes).status_code == 200

    faults(outage=True)
    assert hand.get("/reports/mrr").status_code == 503
    faults(outage=True, paths=["/reports/"])
    assert hand.get("/reports/mrr").status_code == 503
    assert hand.get("/data/plans").status_code == 200
    faults(outage=True, paths=["/data/"])
    assert _report(hand) == HAND_REPORT
    faults(throttle_rate=1, throttle_retry_after=7)
    throttled = hand.get("/reports/mrr")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    faults(error_rate=1, error_statuses=[502])
    assert hand.get("/reports/mrr").status_code == 502
    faults(lost_rate=1, lost_mode="502")
    lost = hand.get("/reports/mrr")
    assert lost.status_code == 502 and lost.json() == {"error": "Bad gateway"}
    faults(rate_limit=0.01)
    assert hand.get("/reports/mrr").status_code == 200
    assert hand.get("/reports/mrr").status_code == 429
    logged = hand.get("/_sandbox/requests").json()["requests"]
    assert [r["fault"] for r in logged if r["path"] == "/reports/mrr"][:6] == [
        "outage", "outage", None, "throttle", "error", "lost_502",
    ]  # fmt: skip


def test_big_history_is_answered_quickly(make_api: Callable[..., Api]) -> None:
    # 100,000 invoices: 4,000 customers × 25 consecutive months, every tenth invoice a refund.
    api = make_api()
    plans = [plan(id="p_month"), plan(id="p_year", billing_freq="year")]
    customers = [customer(id=f"c{n:04d}") for n in range(4000)]
    invoices = []
    for n, owner in enumerate(customers):
        for k in range(25):
            begins = 2022 * 12 + n % 12 + k
            start, end = f"{_month_start(begins):%Y-%m-%d}", f"{_month_start(begins + 1):%Y-%m-%d}"
            invoices.append(
                invoice(id=f"i{n:04d}_{k:02d}", customer_id=owner["id"], plan_id=("p_month", "p_year")[n % 2],
                        type="refund" if k % 10 == 9 else "subscription", date=start, start_date=start,
                        end_date=end, amount_cents=1200 + n)
            )  # fmt: skip
    _load(api, plans, customers, invoices)
    started = time.perf_counter()
    report = _report(api)
    elapsed = time.perf_counter() - started
    # From 2022-01 (customer 0's first month) to 2024-12 (customer 11's last).
    assert len(report) == 36 and (report[0]["period"], report[-1]["period"]) == ("2022-01", "2024-12")
    for before, row in zip(report, report[1:], strict=False):
        moved = row["new"] + row["expansion"] + row["reactivation"] - row["contraction"] - row["churn"]
        assert row["total_mrr"] - before["total_mrr"] == moved
    # A second or two on a quiet machine; the bound leaves room for a busy shared one and still
    # catches anything quadratic (minutes here).
    assert elapsed < 10, f"{elapsed:.1f} s"


# --- Over real HTTP --------------------------------------------------------------------------------


def test_report_over_http(live: httpx.Client) -> None:
    assert live.post("/_sandbox/faults", json={"wire": "legacy"}).status_code == 200
    for path, rows in (
        ("/data/plans", HAND_PLANS),
        ("/data/customers", HAND_CUSTOMERS),
        ("/data/invoices", HAND_INVOICES),
    ):
        response = live.post(path, json=rows)
        assert response.status_code == 200
        assert all(r["export_status"] == "inserted" for r in response.json()["result"])
    response = live.get("/reports/mrr", params={"date": "20240101-20241231", "interval": "month"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    envelope = {"interval": "month", "breakdown": "data_source", "currency_note": NOTE}
    assert response.json() == {"result": {**envelope, "data": HAND_REPORT}}
    assert live.get("/reports/mrr", headers={"Authorization": ""}).status_code == 401
    assert live.post("/_sandbox/faults", json={"lost_rate": 1, "lost_mode": "close"}).status_code == 200
    with pytest.raises(httpx.RemoteProtocolError):
        live.get("/reports/mrr")
