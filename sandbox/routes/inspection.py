"""`/_sandbox/ledger`, `requests`, `violations` and `reset-all`: served only in inspection mode."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sandbox.responses import JSONResponse
from sandbox.state import SandboxState


def routes(state: SandboxState) -> list[BaseRoute]:
    """The inspection routes."""

    async def ledger(request: Request) -> Response:
        return JSONResponse(state.store.ledger(request.query_params.get("source")))

    async def requests(request: Request) -> Response:
        return JSONResponse(state.requests.snapshot())

    async def clear_requests(request: Request) -> Response:
        state.requests.clear()
        return JSONResponse({"success": True})

    async def violations(request: Request) -> Response:
        found = state.order.violations
        return JSONResponse({"count": len(found), "violations": found})

    async def reset_all(request: Request) -> Response:
        state.reset_all()
        return JSONResponse({"success": True})

    return [
        Route("/_sandbox/ledger", ledger, methods=["GET"]),
        Route("/_sandbox/requests", requests, methods=["GET"]),
        Route("/_sandbox/requests", clear_requests, methods=["DELETE"]),
        Route("/_sandbox/violations", violations, methods=["GET"]),
        Route("/_sandbox/reset-all", reset_all, methods=["POST"]),
    ]
