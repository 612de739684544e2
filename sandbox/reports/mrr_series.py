"""MRR movements and totals per period from customers' MRR change points (docs/mrr.md, section 3)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sandbox.reports.months import Month, period

MOVEMENTS = ("new", "expansion", "contraction", "churn", "reactivation")


@dataclass
class PeriodFigures:
    """One period of the report, every amount non-negative (signs are the wire's business)."""

    index: int
    amounts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MOVEMENTS, 0))
    """Movement name -> MRR moved (non-negative)."""
    customers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MOVEMENTS, 0))
    """Movement name -> customers with that movement (each customer moves at most once a period)."""
    total_mrr: int = 0
    total_customers: int = 0
    customers_diff: int = 0


def mrr_figures(customers: Iterable[list[tuple[int, int]]], first: int, last: int) -> list[PeriodFigures]:
    """One PeriodFigures per period from `first` to `last`, from each customer's `CustomerMrr.changes()`."""
    moved: dict[int, PeriodFigures] = {}
    # Changes of total_mrr and total_customers per period, summed later into running totals.
    mrr_steps: dict[int, int] = {}
    customer_steps: dict[int, int] = {}
    for changes in customers:
        previous = 0
        had_mrr = False  # MRR > 0 at the end of some period before the one looked at
        for index, current in changes:
            if index > last:
                break
            mrr_steps[index] = mrr_steps.get(index, 0) + current - previous
            customer_steps[index] = customer_steps.get(index, 0) + (current > 0) - (previous > 0)
            if index >= first:
                name, amount = _movement(previous, current, had_mrr)
                figures = moved.get(index)
                if figures is None:
                    figures = moved[index] = PeriodFigures(index)
                figures.amounts[name] += amount
                figures.customers[name] += 1
            had_mrr = had_mrr or current > 0
            previous = current
    # Totals at the end of the period before the range: every step taken before it.
    total_mrr = sum(step for index, step in mrr_steps.items() if index < first)
    total_customers = sum(step for index, step in customer_steps.items() if index < first)
    result: list[PeriodFigures] = []
    for index in range(first, last + 1):
        figures = moved.get(index) or PeriodFigures(index)
        total_mrr += mrr_steps.get(index, 0)
        figures.customers_diff = customer_steps.get(index, 0)
        total_customers += figures.customers_diff
        figures.total_mrr, figures.total_customers = total_mrr, total_customers
        result.append(figures)
    return result


def mrr_series(
    customers: Iterable[list[tuple[Month, int]]], first: Month, last: Month, data_source: str
) -> list[dict[str, Any]]:
    """The legacy report entries (`period` YYYY-MM, non-negative movements) of months first..last."""
    return [
        {
            "period": period(f.index),
            "data_source": data_source,
            **f.amounts,
            "total_mrr": f.total_mrr,
            "total_customers": f.total_customers,
        }
        for f in mrr_figures(customers, first, last)
    ]


def _movement(previous: int, current: int, had_mrr: bool) -> tuple[str, int]:
    """The movement (name, non-negative amount) of a customer whose MRR went from previous to current."""
    if previous == 0:
        return ("reactivation" if had_mrr else "new"), current
    if current == 0:
        return "churn", previous
    if current > previous:
        return "expansion", current - previous
    return "contraction", previous - current
