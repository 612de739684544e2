"""`verify --mrr`, GrowPanel's side: GET /reports/mrr per currency, the unit, and the drill-down.

Rules (docs/mrr.md, "Comparing with GrowPanel"):
- each currency the source bills in is compared on its own, `currency=X&baseCurrency=X` filtered by
  `data_source` (no FX); an answer in the older shape (no filters) is compared with the unconverted sum;
- the unit of GrowPanel's amounts is MRR_REPORT_UNIT, or detected (`auto`) against the source's figures;
- a month beyond the tolerance is drilled down: the customers whose source MRR moved most that month
  (then the largest) are compared one by one with GrowPanel's `customer=ID` series.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import psycopg

from backfill.api import MrrQuery, MrrReport
from console.verify.instants import Month, month_label, previous_month
from console.verify.months import SourceMonths, customer_histories
from console.verify.mrr import MonthTotals
from console.verify.remote import RemoteApi
from console.verify.report import MonthLine
from console.verify.target import Target

MONEY = ("new", "expansion", "contraction", "churn", "reactivation", "total_mrr")
DRILL_CUSTOMERS = 5
DRILL_MONTHS = 12


@dataclass(frozen=True)
class MrrUnit:
    """How GrowPanel's amounts become cents, and why that unit was chosen."""

    unit: str  # "cents" or "units"
    how: str

    def cents(self, figures: dict[str, int | float] | None) -> dict[str, int] | None:
        """Figures with money in cents (customers counted as they are)."""
        if figures is None:
            return None
        scale = 100 if self.unit == "units" else 1
        return {k: round(v * scale) if k in MONEY else round(v) for k, v in figures.items()}

    def to_json(self) -> dict[str, str]:
        """The report's `mrr_unit`."""
        return {"unit": self.unit, "how": self.how}


def choose_unit(setting: str, pairs: list[tuple[int, int | float]]) -> MrrUnit:
    """MRR_REPORT_UNIT, or (auto) the unit that makes GrowPanel's totals closest to the source's cents."""
    if setting in ("cents", "units"):
        return MrrUnit(setting, f"MRR_REPORT_UNIT={setting}")
    if any(isinstance(theirs, float) and not theirs.is_integer() for _, theirs in pairs):
        return MrrUnit("units", "detected: GrowPanel's amounts have fractions of a unit")
    mine = sum(m for m, _ in pairs)
    theirs = sum(t for _, t in pairs)
    if mine == 0 or theirs == 0:
        return MrrUnit("cents", "assumed: no month with MRR on both sides to detect it from (set MRR_REPORT_UNIT)")
    as_cents, as_units = abs(theirs - mine), abs(theirs * 100 - mine)
    unit = "cents" if as_cents <= as_units else "units"
    return MrrUnit(unit, f"detected: GrowPanel's total MRR over the months is {theirs:g}, the source's {mine} cents")


@dataclass
class RemoteMonths:
    """GrowPanel's answers: one per currency, or one for every currency (older shape)."""

    by_currency: dict[str | None, MrrReport]
    warnings: list[str]
    filtered: bool = True  # False for the older shape: no `currency` or `customer` filter was applied


def growpanel_months(api: RemoteApi, data_source: str, source: SourceMonths) -> RemoteMonths:
    """GET /reports/mrr for the source's range, per currency with `currency=X&baseCurrency=X`."""
    assert source.first is not None and source.last is not None
    out = RemoteMonths({}, [])
    currencies = source.currencies
    for currency in currencies:
        report = api.mrr_report(MrrQuery(source.first, source.last, data_source, currency, currency))
        if report.wire == "legacy":
            # The older answer has no filters: one series for every currency, in cents, unconverted.
            key = currencies[0] if len(currencies) == 1 else None
            out.by_currency = {key: report}
            out.filtered = False
            if key is None:
                out.warnings.append(
                    f"the source bills in {len(currencies)} currencies ({', '.join(currencies)}) and GET /reports/mrr "
                    "answers in its older shape, without currency filters: the months compare unconverted sums"
                )
            return out
        if report.currency is not None and report.currency.lower() != currency.lower():
            out.warnings.append(
                f"GET /reports/mrr answered in {report.currency} when asked for currency={currency}&baseCurrency={currency}"
            )
        out.by_currency[currency] = report
    return out


def month_lines(source: SourceMonths, remote: RemoteMonths, unit: MrrUnit, tolerance_percent: float) -> list[MonthLine]:
    """Side by side, currency by currency and month by month, flagging a total MRR beyond the tolerance."""
    lines = []
    for currency, report in remote.by_currency.items():
        for month in source.months():
            period = month_label(month)
            mine = source.figures(month, currency).as_dict()
            theirs = unit.cents(report.periods.get(period))
            their_total = theirs.get("total_mrr", 0) if theirs is not None else 0
            difference = their_total - mine["total_mrr"]
            percent = difference * 100.0 / mine["total_mrr"] if mine["total_mrr"] else (0.0 if difference == 0 else None)
            flagged = abs(difference) * 100 > tolerance_percent * abs(mine["total_mrr"])
            lines.append(
                MonthLine(period, mine, theirs, difference, None if percent is None else round(percent, 4), flagged, currency)
            )
    return lines


def unit_pairs(source: SourceMonths, remote: RemoteMonths) -> list[tuple[int, int | float]]:
    """(source cents, GrowPanel's raw amount) of total MRR, for every month and series."""
    pairs = []
    for currency, report in remote.by_currency.items():
        for month in source.months():
            theirs = report.periods.get(month_label(month), {}).get("total_mrr")
            if theirs is not None:
                pairs.append((source.figures(month, currency).total_mrr, theirs))
    return pairs


def drill_down(
    api: RemoteApi, conn: psycopg.Connection[Any], target: Target, lines: list[MonthLine], unit: MrrUnit, top: int = DRILL_CUSTOMERS
) -> list[dict[str, Any]]:
    """For each flagged month (of a single currency), the customers responsible, as far as `top` of them can tell."""
    flagged = [line for line in lines if line.flagged and line.currency is not None][:DRILL_MONTHS]
    if not flagged or top <= 0:
        return []
    wanted: dict[str, dict[Month, MonthLine]] = defaultdict(dict)
    for line in flagged:
        year, month = line.period.split("-")
        wanted[line.currency][(int(year), int(month))] = line  # type: ignore[index]
    # Per (currency, month): a heap of the `top` customers by (|movement|, month-end MRR).
    heaps: dict[tuple[str, Month], list[tuple[int, int, str, dict[str, int]]]] = defaultdict(list)
    for customer, currency, history in customer_histories(conn, target):
        months = wanted.get(currency)
        if not months:
            continue
        one = MonthTotals()
        one.add_customer(history)
        for month in months:
            figures = one.figures(month).as_dict()
            movement = abs(figures["total_mrr"] - one.figures(previous_month(month)).total_mrr)
            if movement == 0 and figures["total_mrr"] == 0:
                continue
            heap = heaps[(currency, month)]
            item = (movement, figures["total_mrr"], customer, figures)
            if len(heap) < top:
                heapq.heappush(heap, item)
            else:
                heapq.heappushpop(heap, item)
    out = []
    for currency, months in wanted.items():
        for month, line in sorted(months.items()):
            candidates = sorted(heaps.get((currency, month), []), reverse=True)
            customers = []
            for _movement, _level, customer, mine in candidates:
                report = api.mrr_report(MrrQuery(month, month, target.data_source, currency, currency, customer))
                theirs = unit.cents(report.periods.get(line.period)) or {}
                difference = theirs.get("total_mrr", 0) - mine["total_mrr"]
                responsible = difference != 0 or any(theirs.get(k, 0) != mine[k] for k in MONEY)
                customers.append({"customer": customer, "source": mine, "growpanel": theirs, "difference": difference, "responsible": responsible})
            explained = sum(c["difference"] for c in customers if c["responsible"])
            out.append({
                "currency": currency,
                "period": line.period,
                "difference": line.difference,
                "checked": len(customers),
                "customers": customers,
                "responsible": [c["customer"] for c in customers if c["responsible"]],
                "unexplained": (line.difference or 0) - explained,
            })
    return out
