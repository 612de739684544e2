"""What every `/data/*` and `/reports/*` request goes through: auth, rate limit, faults."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sandbox.auth import authenticate
from sandbox.bodies import read_body
from sandbox.errors import ApiError
from sandbox.faults import FaultPlan
from sandbox.requestlog import INFO_KEY
from sandbox.responses import TruncatedResponse, error_response
from sandbox.state import SandboxState

_EARLY_MESSAGES = {
    "outage": "Service unavailable (sandbox outage)",
    "error": "Internal error (sandbox fault)",
}


@dataclass(slots=True)
class Admission:
    """An admitted request: its key, data source, fault plan and log notes."""

    key: str
    data_source: str
    plan: FaultPlan
    info: dict[str, Any]


async def admit(state: SandboxState, request: Request) -> Admission:
    """Authenticate, rate-limit and play the early faults; raises ApiError when the request stops."""
    info: dict[str, Any] = request.scope.get(INFO_KEY, {})
    key, data_source = authenticate(request, state.keys)
    info["data_source"] = data_source
    wait = state.limiter.acquire(key)
    if wait:
        raise ApiError(429, "Rate limit exceeded", {"Retry-After": str(wait)})
    plan = state.faults.draw(request.url.path)
    if plan.delay_s > 0:
        await asyncio.sleep(plan.delay_s)
    if plan.early is not None:
        info["fault"] = plan.early
        await _play_early(state, request, plan)
    if plan.lost is not None:
        info["fault"] = f"lost_{plan.lost}"
    return Admission(key, data_source, plan, info)


async def _play_early(state: SandboxState, request: Request, plan: FaultPlan) -> None:
    """Answer an early fault (always by raising ApiError), after a hang if that is the fault."""
    early = plan.early
    if early == "throttle":
        retry_after = str(state.faults.config.throttle_retry_after)
        raise ApiError(429, "Too many requests (sandbox fault)", {"Retry-After": retry_after})
    if early == "hang":
        # Read the body first so the client is waiting for the answer, not still sending.
        await read_body(request, state.config.max_body_bytes)
        await _wait_for_disconnect(request, state.faults.config.hang_seconds)
        raise ApiError(504, "Gateway timeout (sandbox hang)")
    message = _EARLY_MESSAGES.get(early or "", "Internal error (sandbox fault)")
    raise ApiError(plan.status, message)


async def _wait_for_disconnect(request: Request, seconds: float) -> None:
    """Wait `seconds`, or less if the client goes away first (so a hang costs nothing after it)."""

    async def disconnected() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    try:
        await asyncio.wait_for(disconnected(), seconds)
    except TimeoutError:
        pass


def lose_if_planned(admission: Admission, response: Response) -> Response:
    """Replace an applied request's answer by a 502 or a cut-off body when the plan says so."""
    lost = admission.plan.lost
    if lost is None:
        return response
    if lost == "502":
        return error_response(502, "Bad gateway")
    return TruncatedResponse(response)
