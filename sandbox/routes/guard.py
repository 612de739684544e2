"""The `X-Sandbox-Token` check every `/_sandbox/*` route goes through."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sandbox.errors import ApiError

TOKEN_HEADER = "X-Sandbox-Token"
Endpoint = Callable[[Request], Awaitable[Response]]


def guarded(routes: list[BaseRoute], token: str) -> list[BaseRoute]:
    """The same routes, each answering 401 unless the request carries `token` in X-Sandbox-Token."""
    expected = token.encode()

    def wrap(endpoint: Endpoint) -> Endpoint:
        async def checked(request: Request) -> Response:
            sent = request.headers.get(TOKEN_HEADER, "").encode("latin-1")
            # Constant-time: the answer's timing must not tell how much of a guess was right.
            if not hmac.compare_digest(sent, expected):
                # The same answer for a missing and a wrong token, and nothing about the sandbox.
                raise ApiError(401, f"Missing or wrong {TOKEN_HEADER}")
            return await endpoint(request)

        return checked

    result: list[BaseRoute] = []
    for route in routes:
        assert isinstance(route, Route)
        result.append(Route(route.path, wrap(route.endpoint), methods=sorted(route.methods or ())))
    return result
