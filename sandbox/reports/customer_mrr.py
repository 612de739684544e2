"""One customer's MRR at the end of each month (docs/mrr.md, sections 1 and 2), as change points."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from typing import Any, NamedTuple

from sandbox.dates import Instant, parse_instant
from sandbox.reports.months import Month, month_of

MONTHLY = Fraction(1)
"""The factor of an amount already per month, and of an invoice whose plan is not stored."""


def plan_factor(plan: Mapping[str, Any]) -> Fraction:
    """What one billed amount of this plan is worth per month (rule 1's table), exactly."""
    count = plan.get("billing_freq_count") or 1
    freq = plan["billing_freq"]
    if freq == "year":
        return Fraction(1, 12 * count)
    if freq == "week":
        return Fraction(52, 12 * count)
    if freq == "day":
        return Fraction(365, 12 * count)
    return Fraction(1, count)


def monthly(amount: int, factor: Fraction) -> int:
    """`amount × factor` rounded to a whole cent, halves away from zero."""
    # Integer arithmetic on the factor's terms: Fraction's own operators cost ten times more, and a
    # big history calls this once per invoice.
    numerator, denominator = amount * factor.numerator, factor.denominator
    whole, rest = divmod(abs(numerator), denominator)
    if 2 * rest >= denominator:
        whole += 1
    return whole if numerator >= 0 else -whole


class _Subscription(NamedTuple):
    """A candidate subscription invoice, ordered by rule 2.2's key (start_date, date, id)."""

    start: Instant
    date: Instant
    id: str
    start_month: Month
    end_month: Month
    level: int
    """monthly(amount, its plan): the MRR it sets while active."""
    factor: Fraction
    """Its plan's factor, which a refund without a plan_id uses too."""


class _Refund(NamedTuple):
    """A refund: its amount and the factor of its own plan, or None to use the plan of `s`."""

    amount: int
    factor: Fraction | None


class CustomerMrr:
    """The invoices of one customer that can move MRR, indexed to answer rule 2 for any month."""

    __slots__ = ("_subscriptions", "_start_months", "_cancellations", "_cancellation_months", "_refunds")

    def __init__(
        self,
        invoices: Iterable[Mapping[str, Any]],
        factors: Mapping[str, Fraction],
        period_of: Callable[[Instant], Month] = month_of,
    ) -> None:
        """Index a customer's stored invoices; `factors` maps each stored plan id to its factor.

        `period_of` maps an instant to its period; the rules are written for months and read the
        same with any other period (sandbox.reports.periods): "the month" becomes "the period".
        """
        subscriptions: list[_Subscription] = []
        cancellations: list[Instant] = []
        self._refunds: dict[Month, list[_Refund]] = {}
        for invoice in invoices:
            # Rule 7 and clarification 3: a proration invoice counts for nothing, whatever its type.
            if invoice.get("proration") is True:
                continue
            kind = invoice["type"]
            if kind == "subscription":
                factor = factors.get(invoice["plan_id"], MONTHLY)
                start = _instant(invoice["start_date"])
                subscriptions.append(
                    _Subscription(
                        start,
                        _instant(invoice["date"]),
                        invoice["id"],
                        period_of(start),
                        period_of(_instant(invoice["end_date"])),
                        monthly(invoice["amount_cents"], factor),
                        factor,
                    )
                )
            elif kind == "cancellation":
                cancellations.append(_instant(invoice["date"]))
            elif kind == "refund":
                plan_id = invoice.get("plan_id")
                # Clarification 5: a plan_id that names no stored plan is monthly, not the plan of s.
                own = None if plan_id is None else factors.get(plan_id, MONTHLY)
                month = period_of(_instant(invoice["date"]))
                self._refunds.setdefault(month, []).append(_Refund(invoice["amount_cents"], own))
        subscriptions.sort()
        cancellations.sort()
        self._subscriptions = subscriptions
        # Sorted by start instant, so the start months are sorted too: the candidates of a month
        # (start_date < T, i.e. start month <= M) are always a prefix of the list.
        self._start_months = [sub.start_month for sub in subscriptions]
        self._cancellations = cancellations
        self._cancellation_months = [period_of(instant) for instant in cancellations]

    def at_end_of(self, month: Month) -> int:
        """The customer's MRR just before the first instant of the next month (rule 2)."""
        index = bisect_right(self._start_months, month) - 1
        if index < 0:
            return 0
        s = self._subscriptions[index]
        # end_date < T  <=>  the end falls in this month or earlier (T is a whole-second month start).
        active = s.end_month > month and not self._cancelled(s.start, month)
        value = s.level if active else 0
        for refund in self._refunds.get(month, ()):
            value -= monthly(refund.amount, s.factor if refund.factor is None else refund.factor)
        return max(value, 0)

    def changes(self) -> list[tuple[Month, int]]:
        """(month, MRR at its end) wherever the MRR differs from the month before, oldest first.

        MRR is 0 before the first change and keeps each change's value until the next one.
        """
        result: list[tuple[Month, int]] = []
        previous = 0
        for month in sorted(self._turning_months()):
            value = self.at_end_of(month)
            if value != previous:
                result.append((month, value))
                previous = value
        return result

    def _turning_months(self) -> set[Month]:
        """The only months whose MRR can differ from the month before's.

        Rule 2 reads a subscription from its start month on, lapses it from its end month on,
        cancels from a cancellation's month on, and applies a refund in its own month only.
        """
        months = set(self._start_months)
        months.update(sub.end_month for sub in self._subscriptions)
        months.update(self._cancellation_months)
        for month in self._refunds:
            months.update((month, month + 1))
        return months

    def _cancelled(self, start: Instant, month: Month) -> bool:
        """Whether a cancellation is dated at or after `start` and before the end of `month`."""
        index = bisect_left(self._cancellations, start)
        # The first cancellation at or after `start` is the earliest one, so the only one to check.
        return index < len(self._cancellations) and self._cancellation_months[index] <= month


def _instant(value: str) -> Instant:
    """The instant of a stored (hence already validated) date."""
    instant = parse_instant(value)
    assert instant is not None, f"stored date {value!r} does not parse"
    return instant
