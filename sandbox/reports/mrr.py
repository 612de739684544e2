"""`GET /reports/mrr`: the MRR movements report computed from the stored plans and invoices."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sandbox.config import StoreMode
from sandbox.dates import parse_instant
from sandbox.errors import ApiError
from sandbox.gate import admit, lose_if_planned
from sandbox.reports.customer_mrr import CustomerMrr, plan_factor
from sandbox.reports.months import Month, month_of, parse_range
from sandbox.reports.mrr_series import mrr_series
from sandbox.responses import JSONResponse
from sandbox.state import SandboxState

INTERVALS = ("month",)
BREAKDOWNS = ("data_source",)
CURRENCY_NOTE = "amounts in cents, not converted"
DIGEST_MODE_ERROR = (
    "The MRR report needs amounts, which --store digest does not keep: start the sandbox with --store full"
)


def routes(state: SandboxState) -> list[BaseRoute]:
    """The MRR report route."""

    async def report(request: Request) -> Response:
        admission = await admit(state, request)
        query = request.query_params
        interval = _choice(query.get("interval"), "interval", INTERVALS)
        breakdown = _choice(query.get("breakdown"), "breakdown", BREAKDOWNS)
        raw_range = query.get("date")
        months = parse_range(raw_range) if raw_range is not None else None
        if state.store.mode is not StoreMode.FULL:
            raise ApiError(409, DIGEST_MODE_ERROR)
        # Both copied with no await in between, so no batch lands half-way through; stored objects
        # are replaced on update, never changed in place, so the copies hold while a thread computes.
        invoices = list(state.store.table(admission.data_source, "invoices").values())
        plans = dict(state.store.table(admission.data_source, "plans"))
        # A big history takes a second or so: computed off the event loop, other requests go on.
        data = await run_in_threadpool(mrr_report, invoices, plans, months, admission.data_source)
        body = {"interval": interval, "breakdown": breakdown, "currency_note": CURRENCY_NOTE, "data": data}
        return lose_if_planned(admission, JSONResponse({"result": body}))

    return [Route("/reports/mrr", report, methods=["GET"])]


def mrr_report(
    invoices: Iterable[Mapping[str, Any]],
    plans: Mapping[str, Mapping[str, Any]],
    months: tuple[Month, Month] | None,
    data_source: str,
) -> list[dict[str, Any]]:
    """The report's entries over `months` (first, last), or over the stored invoices' months when None."""
    by_customer: dict[str, list[Mapping[str, Any]]] = {}
    for invoice in invoices:
        by_customer.setdefault(invoice["customer_id"], []).append(invoice)
    if months is None:
        # Clarification 2: from the month of the earliest invoice `date` to the latest's, any type.
        dates = [_month(invoice["date"]) for customer in by_customer.values() for invoice in customer]
        if not dates:
            return []
        months = min(dates), max(dates)
    factors: dict[str, Fraction] = {plan_id: plan_factor(plan) for plan_id, plan in plans.items()}
    changes = (CustomerMrr(customer, factors).changes() for customer in by_customer.values())
    return mrr_series(changes, months[0], months[1], data_source)


def _month(value: str) -> Month:
    """The UTC month of a stored date."""
    instant = parse_instant(value)
    assert instant is not None, f"stored date {value!r} does not parse"
    return month_of(instant)


def _choice(raw: str | None, name: str, allowed: tuple[str, ...]) -> str:
    """A query parameter that must be one of `allowed` (the first when absent); else a 400."""
    if raw is None:
        return allowed[0]
    if raw not in allowed:
        raise ApiError(400, f"{name} must be {' or '.join(allowed)}, got {raw!r}")
    return raw
