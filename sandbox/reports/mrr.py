"""`GET /reports/mrr`: the MRR movements report computed from the stored plans and invoices."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sandbox import clock
from sandbox.config import StoreMode
from sandbox.dates import parse_instant
from sandbox.errors import ApiError
from sandbox.gate import admit, lose_if_planned
from sandbox.reports.customer_mrr import CustomerMrr, plan_factor
from sandbox.reports.months import Month, month_of, parse_range
from sandbox.reports.mrr_query import MrrQuery
from sandbox.reports.mrr_series import PeriodFigures, mrr_figures, mrr_series
from sandbox.reports.mrr_wire import in_unit, sdk_period
from sandbox.reports.periods import Interval, interval_named, period_range
from sandbox.responses import JSONResponse
from sandbox.state import SandboxState

LEGACY_INTERVALS = ("month",)
BREAKDOWNS = ("data_source",)
MAX_PERIODS = 10_000
"""Most periods one answer may have (a day interval over 27 years); more is a 400."""
DIGEST_MODE_ERROR = (
    "The MRR report needs amounts, which --store digest does not keep: start the sandbox with --store full"
)
_MOVED = ("new", "expansion", "contraction", "churn", "reactivation", "total_mrr")


def routes(state: SandboxState) -> list[BaseRoute]:
    """The MRR report route."""

    async def report(request: Request) -> Response:
        admission = await admit(state, request)
        wire = state.wire
        query = request.query_params
        breakdown = _choice(query.get("breakdown"), "breakdown", BREAKDOWNS)
        if wire.shape == "legacy":
            interval_name = _choice(query.get("interval"), "interval", LEGACY_INTERVALS) or "month"
            raw_range = query.get("date")
            months = parse_range(raw_range) if raw_range is not None else None
        else:
            interval = interval_named(query.get("interval"))
            first, last = period_range(query.get("date"), interval, clock.today())
            if last - first + 1 > MAX_PERIODS:
                raise ApiError(400, f"date range has more than {MAX_PERIODS} {interval.name} periods")
            mrr_query = MrrQuery.parse(query)
        if state.store.mode is not StoreMode.FULL:
            raise ApiError(409, DIGEST_MODE_ERROR)
        # Both copied with no await in between, so no batch lands half-way through; stored objects
        # are replaced on update, never changed in place, so the copies hold while a thread computes.
        invoices = list(state.store.table(admission.data_source, "invoices").values())
        plans = dict(state.store.table(admission.data_source, "plans"))
        # A big history takes a second or so: computed off the event loop, other requests go on.
        if wire.shape == "legacy":
            data = await run_in_threadpool(mrr_report, invoices, plans, months, admission.data_source)
            for entry in data:
                entry.update({name: in_unit(entry[name], wire.mrr_unit, "usd") for name in _MOVED})
            note = "amounts in cents" if wire.mrr_unit == "cents" else "amounts in units (cents / 100)"
            legacy = {
                "interval": interval_name,
                "breakdown": breakdown or "data_source",
                "currency_note": f"{note}, not converted",
                "data": data,
            }
            return lose_if_planned(admission, JSONResponse({"result": legacy}))
        figures = await run_in_threadpool(
            sdk_figures, mrr_query, invoices, plans, admission.data_source, interval, first, last
        )
        shown_source = admission.data_source if breakdown else None
        base = mrr_query.base_currency
        body: dict[str, Any] = {
            "result": [sdk_period(f, interval, wire.mrr_unit, base, shown_source) for f in figures],
            "currency": base,
        }
        if breakdown:
            body["breakdown"] = breakdown
        return lose_if_planned(admission, JSONResponse(body))

    return [Route("/reports/mrr", report, methods=["GET"])]


def sdk_figures(
    query: MrrQuery,
    invoices: Iterable[Mapping[str, Any]],
    plans: Mapping[str, Mapping[str, Any]],
    data_source: str,
    interval: Interval,
    first: int,
    last: int,
) -> list[PeriodFigures]:
    """The figures of periods first..last of `interval` from the invoices the query selects."""
    invoices = query.select(invoices, data_source)
    factors: dict[str, Fraction] = {plan_id: plan_factor(plan) for plan_id, plan in plans.items()}
    changes = (
        CustomerMrr(customer, factors, interval.of_instant).changes()
        for customer in _by_customer(invoices).values()
    )
    return mrr_figures(changes, first, last)


def mrr_report(
    invoices: Iterable[Mapping[str, Any]],
    plans: Mapping[str, Mapping[str, Any]],
    months: tuple[Month, Month] | None,
    data_source: str,
) -> list[dict[str, Any]]:
    """The legacy entries over `months` (first, last), or over the stored invoices' months when None."""
    by_customer = _by_customer(invoices)
    if months is None:
        # Clarification 2: from the month of the earliest invoice `date` to the latest's, any type.
        dates = [_month(invoice["date"]) for customer in by_customer.values() for invoice in customer]
        if not dates:
            return []
        months = min(dates), max(dates)
    factors: dict[str, Fraction] = {plan_id: plan_factor(plan) for plan_id, plan in plans.items()}
    changes = (CustomerMrr(customer, factors).changes() for customer in by_customer.values())
    return mrr_series(changes, months[0], months[1], data_source)


def _by_customer(invoices: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """The invoices grouped by customer id."""
    by_customer: dict[str, list[Mapping[str, Any]]] = {}
    for invoice in invoices:
        by_customer.setdefault(invoice["customer_id"], []).append(invoice)
    return by_customer


def _month(value: str) -> Month:
    """The UTC month of a stored date."""
    instant = parse_instant(value)
    assert instant is not None, f"stored date {value!r} does not parse"
    return month_of(instant)


def _choice(raw: str | None, name: str, allowed: tuple[str, ...]) -> str | None:
    """A query parameter that must be one of `allowed` (None when absent); else a 400."""
    if raw is None:
        return None
    if raw not in allowed:
        raise ApiError(400, f"{name} must be {' or '.join(allowed)}, got {raw!r}")
    return raw
