"""MRR movements and totals per month from customers' MRR change points (docs/mrr.md, section 3)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sandbox.reports.months import Month, period

MOVEMENTS = ("new", "expansion", "contraction", "churn", "reactivation")


def mrr_series(
    customers: Iterable[list[tuple[Month, int]]], first: Month, last: Month, data_source: str
) -> list[dict[str, Any]]:
    """One report entry per month from `first` to `last`, from each customer's `CustomerMrr.changes()`."""
    moved: dict[Month, dict[str, int]] = {}
    # Changes of total_mrr and total_customers per month, summed later into running totals.
    mrr_steps: dict[Month, int] = {}
    customer_steps: dict[Month, int] = {}
    for changes in customers:
        previous = 0
        had_mrr = False  # MRR > 0 at the end of some month before the one looked at
        for month, current in changes:
            if month > last:
                break
            mrr_steps[month] = mrr_steps.get(month, 0) + current - previous
            customer_steps[month] = customer_steps.get(month, 0) + (current > 0) - (previous > 0)
            if month >= first:
                name, amount = _movement(previous, current, had_mrr)
                counts = moved.get(month)
                if counts is None:
                    counts = moved[month] = dict.fromkeys(MOVEMENTS, 0)
                counts[name] += amount
            had_mrr = had_mrr or current > 0
            previous = current
    # Totals at the end of the month before the range: every step taken before it.
    total_mrr = sum(step for month, step in mrr_steps.items() if month < first)
    total_customers = sum(step for month, step in customer_steps.items() if month < first)
    entries: list[dict[str, Any]] = []
    for month in range(first, last + 1):
        total_mrr += mrr_steps.get(month, 0)
        total_customers += customer_steps.get(month, 0)
        counts = moved.get(month) or dict.fromkeys(MOVEMENTS, 0)
        entries.append(
            {
                "period": period(month),
                "data_source": data_source,
                **counts,
                "total_mrr": total_mrr,
                "total_customers": total_customers,
            }
        )
    return entries


def _movement(previous: int, current: int, had_mrr: bool) -> tuple[str, int]:
    """The movement (name, non-negative amount) of a customer whose MRR went from previous to current."""
    if previous == 0:
        return ("reactivation" if had_mrr else "new"), current
    if current == 0:
        return "churn", previous
    if current > previous:
        return "expansion", current - previous
    return "contraction", previous - current
