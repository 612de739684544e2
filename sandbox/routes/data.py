"""`POST /data/{plans,customers,invoices}` (upserts) and their `GET` raw listings."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sandbox.bodies import parse_rows, read_body
from sandbox.errors import ApiError
from sandbox.gate import admit, lose_if_planned
from sandbox.ingest import ingest
from sandbox.responses import JSONResponse
from sandbox.state import SandboxState
from sandbox.store import KINDS

Endpoint = Callable[[Request], Awaitable[Response]]
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
"""Largest `limit` of a listing: big enough to read a whole test data source in one request."""


def routes(state: SandboxState) -> list[BaseRoute]:
    """The upsert and listing routes of the three kinds."""
    table: list[BaseRoute] = []
    for kind in KINDS:
        table.append(Route(f"/data/{kind}", _upsert_endpoint(state, kind), methods=["POST"]))
        table.append(Route(f"/data/{kind}", _listing_endpoint(state, kind), methods=["GET"]))
    return table


def _upsert_endpoint(state: SandboxState, kind: str) -> Endpoint:
    """The POST handler of one kind."""

    async def upsert(request: Request) -> Response:
        admission = await admit(state, request)
        body = await read_body(request, state.config.max_body_bytes)
        rows = parse_rows(body, state.max_batch)
        admission.info["rows"] = len(rows)
        per_row = admission.plan.per_row_s
        if per_row > 0 and rows:
            await asyncio.sleep(per_row * len(rows))
        # No await from here to the answer: a batch is applied atomically between other requests.
        results, counts = ingest(state, kind, admission.data_source, rows)
        admission.info["results"] = counts
        return lose_if_planned(admission, JSONResponse({"result": results}))

    return upsert


def _listing_endpoint(state: SandboxState, kind: str) -> Endpoint:
    """The GET raw-listing handler of one kind."""

    async def listing(request: Request) -> Response:
        admission = await admit(state, request)
        query = request.query_params
        source = query.get("source") or admission.data_source
        if source != admission.data_source:
            raise ApiError(
                403, f"API key of data source {admission.data_source} cannot read data source {source}"
            )
        limit = _int_param(query.get("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _int_param(query.get("offset"), "offset", 0, 0, None)
        after = query.get("after")
        if state.wire.listing_offset == "ignore":
            # As the spec: no paging parameter at all, every request starts at the first id.
            offset, after = 0, None
        count, items = state.store.listing(source, kind, limit, offset, after)
        admission.info["rows"] = len(items)
        return lose_if_planned(admission, JSONResponse({"result": {"count": count, "list": items}}))

    return listing


def _int_param(raw: str | None, name: str, default: int, low: int, high: int | None) -> int:
    """An integer query parameter within [low, high]; raises a 400 ApiError otherwise."""
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ApiError(400, f"{name} must be {bound}, got {value}")
    return value
