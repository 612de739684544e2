"""The rules of docs/mrr.md, checked against figures worked out by hand.

The story (all amounts in cents, all dates midnight UTC, 2024):

c_story   Jan 15 monthly 10000 (to Feb 15) -> Feb 15 monthly 10000 (to Mar 15)
          Mar 15 upgrade: quarterly 36000 (to Jun 15) = 12000/month; a proration invoice on Mar 20 is ignored
          Jun 15 downgrade: monthly 9000; Jul 15 monthly 9000 (to Aug 15); cancelled Jul 20 -> churn in July
          Oct 1 back on the annual plan 120000 (to 2025-10-01) = 10000/month -> reactivation
          Nov 20 refund 6000 without a plan -> the annual plan of s: 500 off November only
          Dec 5 a one-time 50000: no MRR effect (it only extends the range to December)
c_two     Feb 1 quarterly 30000 (to May 1) = 10000/month; never renewed: still active at the end of April
          (end_date == T), implicit churn in May
c_three   Jun 10 annual 99900 (to 2025-06-10) = 8325/month
          Sep 5 refund 3000 on the monthly plan: 3000 off September
          Nov 8 refund 20000 on the monthly plan: more than the MRR, floored at 0 -> churn, then
          reactivation in December

End-of-month MRR:      Jan    Feb    Mar    Apr    May    Jun    Jul    Aug    Sep    Oct    Nov    Dec
c_story              10000  10000  12000  12000  12000   9000      0      0      0  10000   9500  10000
c_two                    0  10000  10000  10000      0      0      0      0      0      0      0      0
c_three                  0      0      0      0      0   8325   8325   8325   5325   8325      0   8325
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from typing import Any

import pytest

from console.verify.instants import month_label, months_between, parse_instant
from console.verify.mrr import CustomerHistory, Invoice, MonthTotals, Plan, monthly, round_half_away


def iso(day: str) -> str:
    """'YYYY-MM-DD' -> the importer's ISO form."""
    return f"{day}T00:00:00Z"


PLANS = [
    {"id": "p_month", "name": "Monthly", "billing_freq": "month", "currency": "usd"},
    {"id": "p_quarter", "name": "Quarterly", "billing_freq": "month", "billing_freq_count": 3, "currency": "usd"},
    {"id": "p_annual", "name": "Annual", "billing_freq": "year", "currency": "usd"},
]
CUSTOMERS = [
    {"id": "c_story", "name": "Story Ltd", "created_date": iso("2024-01-15"), "country": "us"},
    {"id": "c_two", "name": "Two GmbH", "created_date": iso("2024-02-01"), "country": "de"},
    {"id": "c_three", "name": "Three ApS", "created_date": iso("2024-06-10"), "country": "dk"},
]


def inv(iid: str, customer: str, kind: str, day: str, amount: int, plan: str | None = None, end: str | None = None, **extra: Any) -> dict[str, Any]:
    """An invoice as the importer sends it (the period starts on `day`)."""
    row = {
        "id": iid,
        "customer_id": customer,
        "type": kind,
        "date": iso(day),
        "amount_cents": amount,
        "currency": "usd",
        "start_date": iso(day),
        "end_date": iso(end or day),
        **extra,
    }
    if plan is not None:
        row["plan_id"] = plan
    return row


INVOICES = [
    inv("s01", "c_story", "subscription", "2024-01-15", 10000, "p_month", "2024-02-15"),
    inv("s02", "c_story", "subscription", "2024-02-15", 10000, "p_month", "2024-03-15"),
    inv("s03", "c_story", "subscription", "2024-03-15", 36000, "p_quarter", "2024-06-15"),
    inv("s03p", "c_story", "subscription", "2024-03-20", 5000, "p_month", "2024-04-15", proration=True),
    inv("s04", "c_story", "subscription", "2024-06-15", 9000, "p_month", "2024-07-15"),
    inv("s05", "c_story", "subscription", "2024-07-15", 9000, "p_month", "2024-08-15"),
    inv("s06", "c_story", "cancellation", "2024-07-20", 0),
    inv("s07", "c_story", "subscription", "2024-10-01", 120000, "p_annual", "2025-10-01"),
    inv("s08", "c_story", "refund", "2024-11-20", 6000),
    inv("s09", "c_story", "one-time", "2024-12-05", 50000),
    inv("t01", "c_two", "subscription", "2024-02-01", 30000, "p_quarter", "2024-05-01"),
    inv("u01", "c_three", "subscription", "2024-06-10", 99900, "p_annual", "2025-06-10"),
    inv("u02", "c_three", "refund", "2024-09-05", 3000, "p_month"),
    inv("u03", "c_three", "refund", "2024-11-08", 20000, "p_month"),
]

# period: (new, expansion, contraction, churn, reactivation, total_mrr, total_customers), by hand.
EXPECTED = {
    "2024-01": (10000, 0, 0, 0, 0, 10000, 1),
    "2024-02": (10000, 0, 0, 0, 0, 20000, 2),
    "2024-03": (0, 2000, 0, 0, 0, 22000, 2),
    "2024-04": (0, 0, 0, 0, 0, 22000, 2),
    "2024-05": (0, 0, 0, 10000, 0, 12000, 1),
    "2024-06": (8325, 0, 3000, 0, 0, 17325, 2),
    "2024-07": (0, 0, 0, 9000, 0, 8325, 1),
    "2024-08": (0, 0, 0, 0, 0, 8325, 1),
    "2024-09": (0, 0, 3000, 0, 0, 5325, 1),
    "2024-10": (0, 3000, 0, 0, 10000, 18325, 2),
    "2024-11": (0, 0, 500, 8325, 0, 9500, 1),
    "2024-12": (0, 500, 0, 0, 8325, 18325, 2),
}
FIELDS = ("new", "expansion", "contraction", "churn", "reactivation", "total_mrr", "total_customers")


def expected_months() -> list[dict[str, Any]]:
    """EXPECTED as GET /reports/mrr entries (without data_source)."""
    return [{"period": period, **dict(zip(FIELDS, values))} for period, values in EXPECTED.items()]


def month_table(plans: list[dict[str, Any]], invoices: list[dict[str, Any]], first: str, last: str) -> dict[str, tuple[int, ...]]:
    """Run the rules over payloads: per period, the figures in FIELDS order."""
    plan_of = {p["id"]: Plan.from_payload(p) for p in plans}
    by_customer: dict[str, list[Invoice]] = defaultdict(list)
    for payload in invoices:
        invoice = Invoice.from_payload(payload)
        if invoice is not None:
            by_customer[payload["customer_id"]].append(invoice)
    totals = MonthTotals()
    for history in by_customer.values():
        totals.add_customer(CustomerHistory(history, plan_of))
    months = months_between((int(first[:4]), int(first[5:])), (int(last[:4]), int(last[5:])))
    return {month_label(m): tuple(totals.figures(m).as_dict()[f] for f in FIELDS) for m in months}


def test_the_story_gives_the_hand_worked_month_table() -> None:
    assert month_table(PLANS, INVOICES, "2024-01", "2024-12") == EXPECTED


def test_movements_add_up_to_the_change_in_total_mrr() -> None:
    table = month_table(PLANS, INVOICES, "2024-01", "2025-12")
    previous = 0
    for new, expansion, contraction, churn, reactivation, total, _customers in table.values():
        assert total - previous == new + expansion + reactivation - contraction - churn
        previous = total
    # The annual plans lapse at their end_date: c_three churns in June 2025 (end 2025-06-10),
    # c_story in October 2025 (end 2025-10-01 is still active at the end of September).
    assert table["2025-06"][3] == 8325
    assert table["2025-09"][5] == 10000
    assert table["2025-10"][3] == 10000
    assert table["2025-11"][5] == 0


@pytest.mark.parametrize(
    ("freq", "count", "amount", "expected"),
    [
        ("month", 1, 9900, 9900),
        ("month", 3, 1000, 333),  # 333.33...
        ("month", 3, 1001, 334),  # 333.66...
        ("month", 12, 119988, 9999),
        ("year", 1, 119988, 9999),
        ("year", 2, 100, 4),  # 4.1666...
        ("year", 1, 6, 1),  # 0.5: halves away from zero
        ("week", 1, 1000, 4333),  # 4333.33...
        ("week", 2, 1000, 2167),  # 2166.66...
        ("day", 1, 100, 3042),  # 3041.66...
        ("day", 7, 700, 3042),
    ],
)
def test_monthly_value_of_an_amount(freq: str, count: int, amount: int, expected: int) -> None:
    assert monthly(amount, Plan(freq, count)) == expected


def test_unknown_plan_is_monthly_and_rounding_is_half_away_from_zero() -> None:
    assert monthly(12345, None) == 12345
    assert monthly(12345, Plan("fortnight")) == 12345
    assert [round_half_away(Fraction(n, 2)) for n in (-3, -1, 1, 3, 5)] == [-2, -1, 1, 2, 3]


def _mrr(invoices: list[dict[str, Any]], month: str, plans: list[dict[str, Any]] = PLANS) -> int:
    history = CustomerHistory([i for i in map(Invoice.from_payload, invoices) if i is not None], {p["id"]: Plan.from_payload(p) for p in plans})
    return history.mrr_at_end_of((int(month[:4]), int(month[5:])))


def test_latest_start_wins_then_latest_date_then_greatest_id() -> None:
    a = inv("a", "c", "subscription", "2024-03-01", 1000, "p_month", "2024-04-01")
    b = inv("b", "c", "subscription", "2024-03-01", 2000, "p_month", "2024-04-01")
    assert _mrr([b, a], "2024-03") == 2000  # same start and date: the greater id
    later_date = {**a, "date": iso("2024-03-02")}
    assert _mrr([b, later_date], "2024-03") == 1000  # same start: the later date
    earlier_start = {**b, "start_date": iso("2024-02-28"), "date": iso("2024-03-05")}
    assert _mrr([a, earlier_start], "2024-03") == 1000  # the later start, whatever the dates


def test_a_period_ending_on_the_first_is_active_at_the_snapshot_and_lapses_after() -> None:
    sub = inv("s", "c", "subscription", "2024-03-01", 5000, "p_month", "2024-04-01")
    assert _mrr([sub], "2024-03") == 5000
    assert _mrr([sub], "2024-04") == 0
    one_second_early = {**sub, "end_date": "2024-03-31T23:59:59Z"}
    assert _mrr([one_second_early], "2024-03") == 0
    # A start exactly at T is not a candidate yet.
    assert _mrr([inv("n", "c", "subscription", "2024-04-01", 5000, "p_month", "2024-05-01")], "2024-03") == 0


def test_cancellation_counts_only_from_the_start_of_s_until_the_snapshot() -> None:
    sub = inv("s", "c", "subscription", "2024-03-10", 5000, "p_quarter", "2024-06-10")
    assert _mrr([sub, inv("x", "c", "cancellation", "2024-03-09", 0)], "2024-03") == 1667  # before s: ignored
    assert _mrr([sub, inv("x", "c", "cancellation", "2024-03-10", 0)], "2024-03") == 0  # at s's start
    assert _mrr([sub, inv("x", "c", "cancellation", "2024-04-01", 0)], "2024-03") == 1667  # at T: next month
    assert _mrr([sub, inv("x", "c", "cancellation", "2024-04-01", 0)], "2024-04") == 0
    proration = inv("x", "c", "cancellation", "2024-03-15", 0, proration=True)
    assert _mrr([sub, proration], "2024-03") == 1667  # rule 7: proration invoices are ignored


def test_refunds_use_their_own_plan_else_the_plan_of_s_and_floor_at_zero() -> None:
    sub = inv("s", "c", "subscription", "2024-01-01", 120000, "p_annual", "2025-01-01")
    assert _mrr([sub, inv("r", "c", "refund", "2024-05-20", 1200)], "2024-05") == 9900  # 1200/12 off
    assert _mrr([sub, inv("r", "c", "refund", "2024-05-20", 1200, "p_month")], "2024-05") == 8800
    assert _mrr([sub, inv("r", "c", "refund", "2024-05-20", 1200, "p_gone")], "2024-05") == 8800  # unknown: monthly
    assert _mrr([sub, inv("r", "c", "refund", "2024-05-20", 1200)], "2024-06") == 10000  # only its own month
    assert _mrr([sub, inv("r", "c", "refund", "2024-05-20", 999999, "p_month")], "2024-05") == 0
    assert _mrr([sub, inv("r", "c", "refund", "2024-05-20", 1200, proration=True)], "2024-05") == 10000


def test_one_time_invoices_and_proration_subscriptions_never_make_mrr() -> None:
    assert _mrr([inv("o", "c", "one-time", "2024-03-01", 5000, "p_month", "2024-04-01")], "2024-03") == 0
    assert _mrr([inv("p", "c", "subscription", "2024-03-01", 5000, "p_month", "2024-04-01", proration=True)], "2024-03") == 0


def test_instants_compare_exactly_across_forms() -> None:
    assert parse_instant("2024-03-01") == parse_instant("2024-03-01T00:00:00Z") == parse_instant("2024-03-01T01:00:00+01:00")
    assert parse_instant("2024-03-01T00:00:00.5Z") == parse_instant("2024-03-01T00:00:00.500000Z")
    assert parse_instant("2024-03-01T00:00:00.000000001Z") > parse_instant("2024-03-01T00:00:00Z")  # type: ignore[operator]
    assert parse_instant("2024-02-30") is None
    # A period ending a nanosecond after T is still active at the snapshot.
    sub = inv("s", "c", "subscription", "2024-03-01", 5000, "p_month", "2024-04-01")
    assert _mrr([{**sub, "end_date": "2024-03-31T23:59:59.999999999Z"}], "2024-03") == 0


def test_reactivation_looks_at_every_earlier_month() -> None:
    first = inv("a", "c", "subscription", "2023-01-01", 1000, "p_month", "2023-02-01")
    again = inv("b", "c", "subscription", "2024-06-01", 1000, "p_month", "2024-07-01")
    table = month_table(PLANS, [first, again], "2024-05", "2024-07")
    assert table["2024-06"] == (0, 0, 0, 0, 1000, 1000, 1)
    assert table["2024-07"] == (0, 0, 0, 1000, 0, 0, 0)
