"""The app factory: one Starlette app with its own in-memory state per call."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from sandbox.config import SandboxConfig
from sandbox.errors import ApiError
from sandbox.reports import report_routes
from sandbox.requestlog import RequestLogMiddleware
from sandbox.responses import error_response
from sandbox.routes import control, data, datasources, inspection
from sandbox.routes.guard import guarded
from sandbox.state import SandboxState

logger = logging.getLogger("sandbox")


def create_app(config: SandboxConfig) -> Starlette:
    """Build a sandbox app; its state is reachable as `app.state.sandbox` (a SandboxState)."""
    state = SandboxState(config)
    table: list[BaseRoute] = [
        *data.routes(state),
        *datasources.routes(state),
        *report_routes(state),
    ]
    middleware: list[Middleware] = []
    # No token, no /_sandbox/* route at all (404): control and inspection are never open.
    if config.inspect_token:
        table += guarded(control.routes(state), config.inspect_token)
        if config.inspect:
            table += guarded(inspection.routes(state), config.inspect_token)
    if config.inspect:
        middleware.append(Middleware(RequestLogMiddleware, log=state.requests))
    app = Starlette(
        routes=table,
        middleware=middleware,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
    )
    app.state.sandbox = state
    return app


async def _api_error(request: Request, exc: Exception) -> Response:
    """Answer an ApiError with its status, message and headers."""
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Answer Starlette's own 404/405 as JSON errors too."""
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail, dict(exc.headers or {}))


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    """Answer a bug with a JSON 500 (it is logged with its traceback)."""
    logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, f"Internal sandbox error: {type(exc).__name__}")
