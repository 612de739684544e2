"""Turning a POST body into the list of rows to apply, or a 400/413."""

from __future__ import annotations

from typing import Any

import orjson

from sandbox.errors import ApiError


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
