"""The MRR rules of docs/mrr.md as pure functions: a customer's month-end MRR and the month movements.

Written from that page alone (the sandbox implements it separately, on purpose). Section numbers in
the comments refer to it.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from console.verify.instants import Instant, Month, month_of, month_start, months_between, next_month, parse_instant

MOVEMENTS = ("new", "expansion", "contraction", "churn", "reactivation")
# Section 1: the monthly factor of each billing frequency, before dividing by the count.
_FACTORS = {
    "month": Fraction(1),
    "year": Fraction(1, 12),
    "week": Fraction(52, 12),
    "day": Fraction(365, 12),
}


@dataclass(frozen=True, slots=True)
class Plan:
    """What the rules need of a plan."""

    billing_freq: str
    billing_freq_count: int = 1

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Plan:
        """From a plan as the importer sends it (absent count = 1)."""
        return cls(str(payload.get("billing_freq")), int(payload.get("billing_freq_count") or 1))


def round_half_away(value: Fraction) -> int:
    """To a whole number, halves away from zero."""
    magnitude = (abs(value.numerator) * 2 + value.denominator) // (2 * value.denominator)
    return magnitude if value >= 0 else -magnitude


def monthly(amount: int, plan: Plan | None) -> int:
    """Section 1: an amount normalised to one month, exactly, rounded to a whole cent."""
    if plan is None or plan.billing_freq not in _FACTORS:
        return amount
    return round_half_away(Fraction(amount) * _FACTORS[plan.billing_freq] / plan.billing_freq_count)


@dataclass(frozen=True, slots=True)
class Invoice:
    """What the rules need of an invoice."""

    id: str
    type: str
    date: Instant
    start_date: Instant
    end_date: Instant
    amount_cents: int
    plan_id: str | None

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Invoice | None:
        """From an invoice as the importer sends it; None when the rules ignore it (proration, rule 7)."""
        if payload.get("proration") is True:
            return None
        date = parse_instant(payload["date"])
        start = parse_instant(payload["start_date"])
        end = parse_instant(payload["end_date"])
        if date is None or start is None or end is None:
            return None
        amount = payload.get("amount_cents", payload.get("amount"))
        return cls(str(payload["id"]), payload["type"], date, start, end, int(amount), payload.get("plan_id"))


class CustomerHistory:
    """One customer's invoices, indexed to answer "MRR at the end of month M" in O(log n)."""

    def __init__(self, invoices: Iterable[Invoice], plans: Mapping[str, Plan]) -> None:
        self.plans = plans
        self.subscriptions: list[Invoice] = []
        cancellations: list[Instant] = []
        self.refunds: dict[Month, list[Invoice]] = defaultdict(list)
        for invoice in invoices:
            if invoice.type == "subscription":
                self.subscriptions.append(invoice)
            elif invoice.type == "cancellation":
                cancellations.append(invoice.date)
            elif invoice.type == "refund":
                self.refunds[month_of(invoice.date)].append(invoice)
        # 2.2: the candidates with start_date < T are a prefix of this order, and s is its last one.
        self.subscriptions.sort(key=lambda i: (i.start_date, i.date, i.id))
        self.starts = [i.start_date for i in self.subscriptions]
        self.cancellations = sorted(cancellations)

    def span(self) -> tuple[Month, Month] | None:
        """The months where this customer's MRR can be or become non-zero; None when it never can."""
        if not self.subscriptions:
            return None
        first = month_of(self.subscriptions[0].start_date)
        # After the month holding the last end_date every candidate has lapsed (2.3): MRR is 0 for good.
        last = month_of(max(i.end_date for i in self.subscriptions))
        return first, max(first, last)

    def mrr_at_end_of(self, month: Month) -> int:
        """Section 2: MRR just before the first instant of the next month."""
        t = month_start(next_month(month))
        n = bisect.bisect_left(self.starts, t)
        if n == 0:
            return 0  # 2.1: no candidate
        s = self.subscriptions[n - 1]
        level = 0
        lapsed = s.end_date < t  # 2.3 (a period ending exactly at T is still active)
        if not lapsed:
            k = bisect.bisect_left(self.cancellations, s.start_date)
            cancelled = k < len(self.cancellations) and self.cancellations[k] < t  # 2.4
            if not cancelled:
                level = monthly(s.amount_cents, self._plan(s.plan_id))  # 2.5
        for refund in self.refunds.get(month, ()):  # 2.6
            plan = self._plan(refund.plan_id) if refund.plan_id is not None else self._plan(s.plan_id)
            level -= monthly(refund.amount_cents, plan)
        return max(level, 0)

    def _plan(self, plan_id: str | None) -> Plan | None:
        return self.plans.get(plan_id) if plan_id is not None else None


@dataclass
class MonthFigures:
    """Section 3's figures for one month, summed over customers."""

    new: int = 0
    expansion: int = 0
    contraction: int = 0
    churn: int = 0
    reactivation: int = 0
    total_mrr: int = 0
    total_customers: int = 0

    def as_dict(self) -> dict[str, int]:
        """As GET /reports/mrr names them."""
        return {
            "new": self.new,
            "expansion": self.expansion,
            "contraction": self.contraction,
            "churn": self.churn,
            "reactivation": self.reactivation,
            "total_mrr": self.total_mrr,
            "total_customers": self.total_customers,
        }


class MonthTotals:
    """Figures per month, built one customer at a time (memory grows with months, not customers)."""

    def __init__(self) -> None:
        self.by_month: dict[Month, MonthFigures] = defaultdict(MonthFigures)

    def add_customer(self, history: CustomerHistory) -> None:
        """Add one customer's month-end MRR and movements over its whole span."""
        span = history.span()
        if span is None:
            return
        prev = 0
        had_mrr = False  # MRR > 0 at the end of any earlier month
        # The span ends in a month whose MRR is 0 (every candidate lapsed there), so its churn is
        # counted and nothing is left for the months after it.
        for month in months_between(*span):
            cur = history.mrr_at_end_of(month)
            figures = self.by_month[month]
            if cur > 0:
                figures.total_mrr += cur
                figures.total_customers += 1
            if prev == 0 and cur > 0:
                if had_mrr:
                    figures.reactivation += cur
                else:
                    figures.new += cur
            elif prev > 0 and cur == 0:
                figures.churn += prev
            elif prev > 0 and cur > prev:
                figures.expansion += cur - prev
            elif prev > 0 and cur < prev:
                figures.contraction += prev - cur
            had_mrr = had_mrr or cur > 0
            prev = cur

    def figures(self, month: Month) -> MonthFigures:
        """The figures of one month (zeros when nothing happened)."""
        return self.by_month.get(month) or MonthFigures()
