"""Reading a request body within a size cap, and turning a POST body into rows, or a 400/413."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from sandbox.errors import ApiError


async def read_body(request: Request, cap: int) -> bytes:
    """The request body, or a 413 ApiError when it is over `cap` bytes.

    A declared Content-Length over the cap is refused before a byte is read; without one (chunked)
    the body is streamed and reading stops as soon as the cap is passed, so an oversized body never
    sits in memory whole.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, f"Content-Length must be a whole number of bytes, got {declared!r}")
        if int(declared) > cap:
            raise ApiError(413, f"Request body exceeds {cap} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise ApiError(413, f"Request body exceeds {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_rows(body: bytes, max_batch: int) -> list[dict[str, Any]]:
    """Parse one JSON object or an array of objects; raises ApiError 400 or 413."""
    try:
        # orjson reads integers past 64 bits as floats: they then fail the integer checks per row.
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"Request body is not valid JSON: {exc}") from None
    if type(payload) is dict:
        return [payload]
    if type(payload) is not list:
        raise ApiError(400, "Request body must be a JSON object or an array of objects")
    if len(payload) > max_batch:
        raise ApiError(413, f"Batch of {len(payload)} rows exceeds the maximum of {max_batch} rows")
    for index, row in enumerate(payload):
        if type(row) is not dict:
            raise ApiError(400, f"Array element {index} is not a JSON object")
    return payload
