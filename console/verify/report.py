"""The results of a check and their two renderings: the `--json` document and the text for people."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from models.states import STAGES

# The kinds of examples, in the order they are printed.
DIFFERENCE_KINDS = ("missing", "extra", "different")
EXAMPLE_KINDS = (*DIFFERENCE_KINDS, "expected_missing")


@dataclass
class EntityResult:
    """Counts and a few examples of each kind of difference for one entity."""

    entity: str
    max_examples: int = 5
    source: int = 0
    growpanel: int = 0
    matching: int = 0
    missing: int = 0
    extra: int = 0
    different: int = 0
    expected_missing: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    _shown: Counter[str] = field(default_factory=Counter)

    def record(self, kind: str, example: dict[str, Any]) -> None:
        """Count one row of `kind` and keep it as an example while there is room."""
        setattr(self, kind, getattr(self, kind) + 1)
        if self._shown[kind] < self.max_examples:
            self._shown[kind] += 1
            self.examples.append({"kind": kind, **example})

    @property
    def differences(self) -> int:
        """Rows that should match and do not (expected-missing rows are not differences)."""
        return self.missing + self.extra + self.different

    def to_json(self) -> dict[str, Any]:
        """This entity's part of the `rows` document."""
        order = {kind: i for i, kind in enumerate(EXAMPLE_KINDS)}
        return {
            "source": self.source,
            "growpanel": self.growpanel,
            "matching": self.matching,
            "missing": self.missing,
            "extra": self.extra,
            "different": self.different,
            "expected_missing": self.expected_missing,
            "examples": sorted(self.examples, key=lambda e: order[e["kind"]]),
        }


@dataclass
class MonthLine:
    """One month: the source's figures, GrowPanel's, and whether they differ by more than the tolerance."""

    period: str
    source: dict[str, int]
    growpanel: dict[str, int] | None
    difference: int | None
    difference_percent: float | None
    flagged: bool
    currency: str | None = None  # None: every currency summed, unconverted (an answer without filters)

    def to_json(self) -> dict[str, Any]:
        """One entry of the `months` list."""
        return {
            "period": self.period,
            "currency": self.currency,
            "source": self.source,
            "growpanel": self.growpanel,
            "difference": self.difference,
            "difference_percent": self.difference_percent,
            "flagged": self.flagged,
        }


@dataclass
class VerifyReport:
    """Everything one `verify` found."""

    run_id: int
    data_source: str
    entities: dict[str, EntityResult]
    months: list[MonthLine] | None = None
    tolerance_percent: float | None = None
    warnings: list[str] = field(default_factory=list)
    listings: dict[str, dict[str, Any]] = field(default_factory=dict)
    mrr_unit: dict[str, str] | None = None
    drilldown: list[dict[str, Any]] = field(default_factory=list)

    @property
    def row_differences(self) -> int:
        """Missing, extra and different rows over every entity."""
        return sum(e.differences for e in self.entities.values())

    @property
    def flagged_months(self) -> int:
        """Months whose difference exceeds the tolerance."""
        return sum(1 for m in self.months or () if m.flagged)

    @property
    def exit_code(self) -> int:
        """0 when everything matches, 1 when something differs."""
        return 1 if self.row_differences or self.flagged_months else 0

    def to_json(self) -> dict[str, Any]:
        """The `--json` document."""
        return {
            "run_id": self.run_id,
            "data_source": self.data_source,
            "ok": self.exit_code == 0,
            "rows": {entity: self.entities[entity].to_json() for entity in STAGES if entity in self.entities},
            "months": [m.to_json() for m in self.months or ()],
            "tolerance_percent": self.tolerance_percent,
            "mrr_unit": self.mrr_unit,
            "drilldown": self.drilldown,
            "listings": self.listings,
            "warnings": self.warnings,
        }


def text_lines(report: VerifyReport) -> list[str]:
    """The human report: a verdict, per entity counts, examples, then the month table if any."""
    lines = [_verdict(report)]
    lines += [f"warning: {w}" for w in report.warnings]
    lines.append("")
    lines.append(
        f"{'entity':<10} {'source':>10} {'growpanel':>10} {'matching':>10} {'missing':>8} {'extra':>8} "
        f"{'different':>10} {'expected missing':>17}"
    )
    for entity in STAGES:
        e = report.entities.get(entity)
        if e is None:
            continue
        lines.append(
            f"{entity:<10} {e.source:>10} {e.growpanel:>10} {e.matching:>10} {e.missing:>8} {e.extra:>8} "
            f"{e.different:>10} {e.expected_missing:>17}"
        )
    for entity in STAGES:
        e = report.entities.get(entity)
        if e is None or not e.examples:
            continue
        lines.append("")
        for kind in EXAMPLE_KINDS:
            shown = [x for x in e.examples if x["kind"] == kind]
            if not shown:
                continue
            total = getattr(e, kind)
            more = f" (first {len(shown)} of {total})" if total > len(shown) else ""
            lines.append(f"{entity} {_KIND_TITLES[kind]}{more}:")
            lines += [f"  {_example_text(x)}" for x in shown]
    if report.listings:
        lines.append("")
        lines.append("listings read by " + ", ".join(f"{kind}: {info['strategy']} ({info['requests']} requests)" for kind, info in report.listings.items()))
    if report.months is not None:
        lines.append("")
        if report.mrr_unit is not None:
            lines.append(f"GrowPanel's MRR unit: {report.mrr_unit['unit']} ({report.mrr_unit['how']})")
        currencies = list(dict.fromkeys(m.currency for m in report.months))
        for currency in currencies:
            if len(currencies) > 1 or currency is None:
                lines.append(f"currency {currency}:" if currency is not None else "every currency, summed unconverted:")
            lines += month_table([m for m in report.months if m.currency == currency], report.tolerance_percent or 0.0)
        lines += drilldown_lines(report.drilldown)
    return lines


def drilldown_lines(drilldown: list[dict[str, Any]]) -> list[str]:
    """Per flagged month, the customers whose GrowPanel MRR differs from the source's."""
    lines = []
    for month in drilldown:
        lines.append("")
        lines.append(
            f"{month['period']} ({month['currency']}) differs by {_money(month['difference'] or 0)}: "
            f"{len(month['responsible'])} of the {month['checked']} customers checked differ"
            + (f", {_money(month['unexplained'])} unexplained" if month["unexplained"] else "")
        )
        for c in month["customers"]:
            if c["responsible"]:
                lines.append(
                    f"  customer {c['customer']}: MRR {_money(c['source']['total_mrr'])} in the source, "
                    f"{_money(c['growpanel'].get('total_mrr', 0))} in GrowPanel ({_money(c['difference'])})"
                )
    return lines


_KIND_TITLES = {
    "missing": "missing in GrowPanel",
    "extra": "in GrowPanel but not in the source",
    "different": "different",
    "expected_missing": "missing as expected (rejected in the run)",
}


def _verdict(report: VerifyReport) -> str:
    head = f"run {report.run_id}, data source {report.data_source}: "
    parts = []
    rows, months = report.row_differences, report.flagged_months
    if rows:
        parts.append(f"{rows} rows differ" if rows != 1 else "1 row differs")
    if months:
        what = f"{months} months differ" if months != 1 else "1 month differs"
        parts.append(f"{what} by more than {report.tolerance_percent:g}%")
    if parts:
        return head + "DIFFERENCES — " + ", ".join(parts)
    expected = sum(e.expected_missing for e in report.entities.values())
    tail = f" ({expected} rows rejected in the run are missing, as expected)" if expected else ""
    within = " and every month is within tolerance" if report.months is not None else ""
    return head + f"GrowPanel holds exactly what the source says{within}{tail}"


def _example_text(example: dict[str, Any]) -> str:
    kind = example["kind"]
    text = str(example["id"])
    if kind == "different":
        fields = example.get("fields", {})
        shown = ", ".join(f"{name}: {_v(d['source'])} in the source, {_v(d['growpanel'])} in GrowPanel" for name, d in fields.items())
        text += f" — {shown}" if shown else ""
    if example.get("reason"):
        text += f" — {example['reason']}"
    if kind == "expected_missing":
        text += f" — {example.get('outcome')}: {example.get('message')}"
    return text


def _v(value: Any) -> str:
    if value is None:
        return "(absent)"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def month_table(months: list[MonthLine], tolerance: float) -> list[str]:
    """The month-by-month table (amounts in currency units: cents / 100)."""
    lines = [
        f"{'month':<8} {'source MRR':>14} {'GrowPanel MRR':>14} {'difference':>12} {'diff %':>8} "
        f"{'customers':>10} {'GP cust.':>9}  flag (> {tolerance:g}%)"
    ]
    for m in months:
        gp_total = "-" if m.growpanel is None else _money(m.growpanel.get("total_mrr", 0))
        gp_customers = "-" if m.growpanel is None else str(m.growpanel.get("total_customers", 0))
        diff = "-" if m.difference is None else _money(m.difference)
        pct = "-" if m.difference_percent is None else f"{m.difference_percent:.2f}%"
        lines.append(
            f"{m.period:<8} {_money(m.source['total_mrr']):>14} {gp_total:>14} {diff:>12} {pct:>8} "
            f"{m.source['total_customers']:>10} {gp_customers:>9}  {'!!' if m.flagged else ''}".rstrip()
        )
    return lines


def _money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100:,}.{cents % 100:02d}"
