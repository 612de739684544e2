"""`POST /data/data-sources/{id}/reset` and `GET /data/data-sources/{id}/progress`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sandbox.errors import ApiError
from sandbox.gate import Admission, admit, lose_if_planned
from sandbox.responses import JSONResponse
from sandbox.state import SandboxState


def routes(state: SandboxState) -> list[BaseRoute]:
    """The data-source routes."""

    async def reset(request: Request) -> Response:
        admission = await admit(state, request)
        state.reset_source(_own_source(request, admission))
        return lose_if_planned(admission, JSONResponse({"success": True}))

    async def progress(request: Request) -> Response:
        admission = await admit(state, request)
        snapshot = state.progress.snapshot(_own_source(request, admission), state.wire.shape)
        return lose_if_planned(admission, JSONResponse(snapshot))

    return [
        Route("/data/data-sources/{id}/reset", reset, methods=["POST"]),
        Route("/data/data-sources/{id}/progress", progress, methods=["GET"]),
    ]


def _own_source(request: Request, admission: Admission) -> str:
    """The {id} of the path, which must be the key's data source (else 403)."""
    wanted: str = request.path_params["id"]
    if wanted != admission.data_source:
        raise ApiError(
            403, f"API key of data source {admission.data_source} cannot act on data source {wanted}"
        )
    return wanted
