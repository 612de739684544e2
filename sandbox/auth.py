"""Bearer-key authentication: which data source a request's key belongs to."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request

from sandbox.errors import ApiError


def authenticate(request: Request, keys: Mapping[str, str]) -> tuple[str, str]:
    """Return (api key, data source id) of the request; raises a 401 ApiError otherwise."""
    header = request.headers.get("authorization")
    if header is None:
        raise ApiError(401, "Missing Authorization header; send 'Authorization: Bearer <api key>'")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise ApiError(401, "Malformed Authorization header; expected 'Bearer <api key>'")
    data_source = keys.get(key)
    if data_source is None:
        raise ApiError(401, "Unknown API key")
    return key, data_source
