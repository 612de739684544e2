"""Typed answers of the read endpoints, parsed tolerantly: the SDK's wire shapes and the older ones.

The official SDK (generated from the API's OpenAPI spec) is our evidence of the real API; the older
shapes are what the sandbox answered before it, kept so that either kind of server can be read.
An answer we cannot read raises `UnexpectedAnswer` with one line naming the endpoint and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from backfill.errors import FatalApiError

PHASES = ("idle", "enqueueing", "processing", "done", "stuck", "aborted")
FINAL_PHASES = ("done", "stuck", "aborted", "idle")
# The movements and levels `verify --mrr` compares; churn is reported positive, as docs/mrr.md counts it.
MRR_FIGURES = ("new", "expansion", "contraction", "churn", "reactivation", "total_mrr", "total_customers")


class UnexpectedAnswer(FatalApiError):
    """A 2xx answer whose shape we cannot read: every retry would get the same."""


def _number(value: Any, where: str) -> int | float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UnexpectedAnswer(f"{where} is {type(value).__name__} {str(value)[:40]!r}, not a number")
    return value


@dataclass(frozen=True, slots=True)
class ResetResult:
    """POST /data/data-sources/{id}/reset: `{"success": true}` (optionally an `id`)."""

    success: bool
    id: str | None = None


def reset_result(body: Any, data_source: str) -> ResetResult:
    """The reset answer; a `success: false` is an error, a 2xx without `success` counts as done."""
    if not isinstance(body, dict):
        raise UnexpectedAnswer(f"POST /data/data-sources/{data_source}/reset answered {type(body).__name__}, not an object")
    success = body.get("success", True)
    if success is not True:
        error = body.get("error") if isinstance(body.get("error"), str) else None
        raise UnexpectedAnswer(f"POST /data/data-sources/{data_source}/reset answered success {success!r}" + (f": {error}" if error else ""))
    ident = body.get("id")
    return ResetResult(True, str(ident) if ident is not None else None)


@dataclass(frozen=True, slots=True)
class Progress:
    """GET /data/data-sources/{id}/progress; counts are None when the answer did not give them."""

    phase: str
    enqueued: int | float | None
    processed: int | float | None
    failed: int | float | None
    started_at: str | None
    last_activity_at: str | None
    wire: str  # "camelCase" (the SDK's) or "snake_case" (the older sandbox)

    @property
    def final(self) -> bool:
        """Nothing more will happen without a new import."""
        return self.phase in FINAL_PHASES

    def to_json(self) -> dict[str, Any]:
        """As `start --wait-processing --json` reports it (snake_case, like every document of ours)."""
        return {
            "phase": self.phase,
            "enqueued_count": self.enqueued,
            "processed_count": self.processed,
            "failed_count": self.failed,
            "started_at": self.started_at,
            "last_activity_at": self.last_activity_at,
            "wire": self.wire,
        }


_PROGRESS_FIELDS = (
    ("enqueued", "enqueuedCount", "enqueued_count"),
    ("processed", "processedCount", "processed_count"),
    ("failed", "failedCount", "failed_count"),
    ("started_at", "startedAt", "started_at"),
    ("last_activity_at", "lastActivityAt", "last_activity_at"),
)


def progress(body: Any, data_source: str = "{id}") -> Progress:
    """The progress answer in camelCase (the SDK's wire names) or snake_case."""
    where = f"GET /data/data-sources/{data_source}/progress"
    if not isinstance(body, dict):
        raise UnexpectedAnswer(f"{where} answered {type(body).__name__}, not an object")
    phase = body.get("phase")
    if not isinstance(phase, str):
        raise UnexpectedAnswer(f"{where} answered without a `phase` (keys: {', '.join(sorted(map(str, body))[:8]) or 'none'})")
    camel = any(camel in body for _, camel, _ in _PROGRESS_FIELDS)
    values: dict[str, Any] = {}
    for name, camel_name, snake_name in _PROGRESS_FIELDS:
        wire = camel_name if camel else snake_name
        value = body.get(wire)
        if name.endswith("_at"):
            if value is not None and not isinstance(value, str):
                raise UnexpectedAnswer(f"{where}: `{wire}` is {type(value).__name__}, not a date string")
            values[name] = value
        else:
            values[name] = _number(value, f"{where}: `{wire}`")
    return Progress(phase=phase, wire="camelCase" if camel else "snake_case", **values)


@dataclass(frozen=True, slots=True)
class ListingPage:
    """One answer of GET /data/{kind}: the rows (plans keyed by their source id) and the announced `count`."""

    items: list[dict[str, Any]]
    count: int | None


def listing_page(body: Any, kind: str) -> ListingPage:
    """`{"result": {"count": n, "list": [...]}}` (or a bare `result` list); plans by `external_id`, else `id`."""
    where = f"GET /data/{kind}"
    result = body.get("result") if isinstance(body, dict) else None
    if isinstance(result, list):
        items, count = result, None
    elif isinstance(result, dict) and isinstance(result.get("list"), list):
        items = result["list"]
        raw_count = result.get("count")
        count = int(raw_count) if isinstance(raw_count, (int, float)) and not isinstance(raw_count, bool) else None
        if isinstance(raw_count, str) and raw_count.isdigit():
            count = int(raw_count)
    else:
        raise UnexpectedAnswer(f"{where} answered without a `result.list` of rows")
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise UnexpectedAnswer(f"{where}: entry {n} of the list is {type(item).__name__}, not an object")
        if kind == "plans" and item.get("external_id") is not None:
            # The SDK's plan has `external_id` (the id in the source) and maybe GrowPanel's own `id`.
            if "id" in item and item["id"] != item["external_id"]:
                item["growpanel_id"] = item["id"]
            item["id"] = item["external_id"]
        if item.get("id") is None:
            raise UnexpectedAnswer(f"{where}: entry {n} of the list has no `id`" + (" or `external_id`" if kind == "plans" else ""))
    return ListingPage(items, count)


Month = tuple[int, int]


@dataclass(frozen=True, slots=True)
class MrrQuery:
    """What GET /reports/mrr is asked: a month range and the filters of the SDK's operation."""

    first: Month
    last: Month
    data_source: str | None = None
    currency: str | None = None
    base_currency: str | None = None
    customer: str | None = None
    interval: str = "month"

    def params(self) -> dict[str, str]:
        """The query string, with the spec's wire names."""
        end = date(self.last[0] + self.last[1] // 12, self.last[1] % 12 + 1, 1).toordinal() - 1
        out = {
            "date": f"{self.first[0]:04d}{self.first[1]:02d}01-{date.fromordinal(end).strftime('%Y%m%d')}",
            "interval": self.interval,
        }
        for name, value in (("data_source", self.data_source), ("currency", self.currency), ("baseCurrency", self.base_currency), ("customer", self.customer)):
            if value is not None:
                out[name] = value
        return out


@dataclass
class MrrReport:
    """The report by month `YYYY-MM`: the figures of MRR_FIGURES present, churn made positive."""

    periods: dict[str, dict[str, int | float]]
    currency: str | None
    wire: str  # "periods" (the SDK's list) or "legacy" (`{"interval", "data": [...]}`)
    ignored: list[str] = field(default_factory=list)


def mrr_report(body: Any, query: MrrQuery) -> MrrReport:
    """Either shape of the MRR report, this data source's entries only."""
    where = "GET /reports/mrr"
    if not isinstance(body, dict) or "result" not in body:
        raise UnexpectedAnswer(f"{where} answered without a `result`")
    result = body["result"]
    if isinstance(result, list):
        currency = body.get("currency")
        if currency is not None and not isinstance(currency, str):
            raise UnexpectedAnswer(f"{where}: `currency` is {type(currency).__name__}, not a string")
        report = MrrReport({}, currency.lower() if currency else None, "periods")
        for n, entry in enumerate(result):
            if not isinstance(entry, dict) or not isinstance(entry.get("date"), str) or len(entry["date"]) < 7:
                raise UnexpectedAnswer(f"{where}: period {n} has no `date` (YYYY-MM-DD)")
            report.periods[entry["date"][:7]] = _figures(entry, f"{where}: period {entry['date']}", negative_churn=True)
        return report
    if isinstance(result, dict) and isinstance(result.get("data"), list):
        report = MrrReport({}, None, "legacy")
        for n, entry in enumerate(result["data"]):
            if not isinstance(entry, dict) or not isinstance(entry.get("period"), str):
                raise UnexpectedAnswer(f"{where}: entry {n} has no `period`")
            if entry.get("data_source") not in (None, query.data_source) and query.data_source is not None:
                continue
            report.periods[entry["period"][:7]] = _figures(entry, f"{where}: period {entry['period']}", negative_churn=False)
        return report
    raise UnexpectedAnswer(f"{where}: `result` is neither a list of periods nor an object with `data`")


def _figures(entry: dict[str, Any], where: str, negative_churn: bool) -> dict[str, int | float]:
    out: dict[str, int | float] = {}
    for name in MRR_FIGURES:
        value = _number(entry.get(name), f"{where}: `{name}`")
        if value is None:
            continue
        if name == "churn" and negative_churn:
            value = -value
        out[name] = value
    return out
