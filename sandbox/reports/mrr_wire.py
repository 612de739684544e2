"""The MRR report's answer in the SDK's shape (GetReportsMrrResponse200) and the unit of amounts."""

from __future__ import annotations

from typing import Any

from sandbox.reports.fx import exponent
from sandbox.reports.mrr_series import PeriodFigures
from sandbox.reports.periods import Interval


def in_unit(cents: int, unit: str, currency: str) -> int | float:
    """An amount in minor units as the report shows it: as is ("cents"), or in major units ("units")."""
    if unit == "cents":
        return cents
    digits = exponent(currency)
    return cents if digits == 0 else round(cents / 10**digits, digits)


def sdk_period(
    figures: PeriodFigures, interval: Interval, unit: str, currency: str, data_source: str | None
) -> dict[str, Any]:
    """One period of the SDK's `result` list.

    Signs: only `churn` is negative (the spec says so of churn and paused, not of contraction,
    which stays a non-negative amount); mrr_diff is the net change, so it equals the change of
    total_mrr. The sandbox's rates are fixed: fx_adjustment is 0 and net_mrr_diff == mrr_diff.
    """
    a = figures.amounts
    diff = a["new"] + a["expansion"] - a["contraction"] - a["churn"] + a["reactivation"]

    def money(cents: int) -> int | float:
        return in_unit(cents, unit, currency)

    period: dict[str, Any] = {
        "date": interval.first_day(figures.index).isoformat(),
        "end_date": interval.last_day(figures.index).isoformat(),
        "new": money(a["new"]),
        "expansion": money(a["expansion"]),
        "contraction": money(a["contraction"]),
        "churn": money(-a["churn"]),
        "reactivation": money(a["reactivation"]),
        "paused": 0,
        "resumed": 0,
        "mrr_diff": money(diff),
        "fx_adjustment": 0,
        "net_mrr_diff": money(diff),
        "total_mrr": money(figures.total_mrr),
        "total_arr": money(12 * figures.total_mrr),
        "total_customers": figures.total_customers,
        "customers_diff": figures.customers_diff,
        **{f"{name}_customers": count for name, count in figures.customers.items()},
        "paused_customers": 0,
        "resumed_customers": 0,
        "arpa": money(round(figures.total_mrr / figures.total_customers)) if figures.total_customers else 0,
    }
    if data_source is not None:
        period["data_source"] = data_source
    return period
