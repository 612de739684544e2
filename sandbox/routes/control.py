"""`/_sandbox/faults`: read and change faults, limits and wire settings at run time (token required)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sandbox.bodies import read_body
from sandbox.errors import ApiError
from sandbox.faults import apply_changes, fault_config_as_json
from sandbox.responses import JSONResponse
from sandbox.state import SandboxState
from sandbox.wire import WIRE_SETTINGS, apply_wire_changes, wire_config_as_json


def routes(state: SandboxState) -> list[BaseRoute]:
    """The fault-control routes."""

    async def show(request: Request) -> Response:
        return JSONResponse(_current(state))

    async def change(request: Request) -> Response:
        try:
            changes = orjson.loads(await read_body(request, state.config.control_body_bytes))
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"Request body is not valid JSON: {exc}") from None
        if type(changes) is not dict:
            raise ApiError(400, "Request body must be a JSON object of fault settings")
        _apply(state, changes)
        return JSONResponse(_current(state))

    async def restore(request: Request) -> Response:
        state.faults.replace(state.config.faults)
        state.max_batch = state.config.max_batch
        state.limiter.set_rate(state.config.rate_limit)
        state.wire = state.config.wire
        return JSONResponse(_current(state))

    return [
        Route("/_sandbox/faults", show, methods=["GET"]),
        Route("/_sandbox/faults", change, methods=["POST"]),
        Route("/_sandbox/faults", restore, methods=["DELETE"]),
    ]


def _current(state: SandboxState) -> dict[str, Any]:
    """The fault settings plus the run-time limits."""
    data = fault_config_as_json(state.faults.config)
    data["max_batch"] = state.max_batch
    data["rate_limit"] = state.limiter.rate
    data.update(wire_config_as_json(state.wire))
    return data


def _apply(state: SandboxState, changes: dict[str, Any]) -> None:
    """Validate every change first, then apply them all (nothing changes on a 400)."""
    limits = {name: changes.pop(name) for name in ("max_batch", "rate_limit") if name in changes}
    wire_changes = {name: changes.pop(name) for name in WIRE_SETTINGS if name in changes}
    max_batch = limits.get("max_batch", state.max_batch)
    if type(max_batch) is not int or max_batch < 1:
        raise ApiError(400, f"max_batch must be a positive integer, got {max_batch!r}")
    rate = limits.get("rate_limit", state.limiter.rate)
    if rate is not None and (type(rate) not in (int, float) or rate <= 0):
        raise ApiError(400, f"rate_limit must be a positive number or null, got {rate!r}")
    try:
        apply_changes(state.faults.config, changes)
        wire = apply_wire_changes(state.wire, wire_changes)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    state.faults.update(changes)
    state.max_batch = max_batch
    state.wire = wire
    if "rate_limit" in limits:
        state.limiter.set_rate(float(rate) if rate is not None else None)
