"""Helpers of the sandbox tests: an in-process client and valid example rows (ds_1)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import orjson

from sandbox import SandboxConfig, create_app
from sandbox.state import SandboxState
from sandbox.testing import asgi_client

KEYS = {"key_1": "ds_1", "key_2": "ds_2", "key_1b": "ds_1"}
"""Test keys: two for ds_1, one for ds_2."""
TOKEN = "test-inspect-token"
"""The X-Sandbox-Token of the in-process sandboxes."""


def _dumps(body: Any) -> bytes:
    """JSON bytes; the stdlib also writes integers past 64 bits, which orjson refuses."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body).encode()


class Api:
    """Synchronous calls to an in-process sandbox app (each call runs its own short event loop)."""

    def __init__(self, config: SandboxConfig, key: str = "key_1") -> None:
        self.app = create_app(config)
        self.key = key

    @property
    def state(self) -> SandboxState:
        """The app's in-memory state."""
        return self.app.state.sandbox  # type: ignore[no-any-return]

    def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = "default",
        token: str | None = "default",
        **kwargs: Any,
    ) -> httpx.Response:
        """One request; key=None sends no Authorization header, token=None no X-Sandbox-Token."""
        api_key = self.key if key == "default" else key
        inspect_token = self.app.state.sandbox.config.inspect_token if token == "default" else token

        async def call() -> httpx.Response:
            async with asgi_client(self.app, api_key, inspect_token) as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(call())

    def post(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        """POST a JSON body (bytes are sent as they are)."""
        content = body if isinstance(body, bytes) else _dumps(body)
        return self.request("POST", path, content=content, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """GET a path."""
        return self.request("GET", path, **kwargs)

    def rows(self, path: str, body: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """POST and return the result array, asserting a 200."""
        response = self.post(path, body, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()["result"]  # type: ignore[no-any-return]

    def ledger(self, source: str = "ds_1") -> dict[str, list[Any]]:
        """The stored objects of one data source (empty kinds when none)."""
        found = self.get("/_sandbox/ledger").json()
        return found.get(source, {"plans": [], "customers": [], "invoices": []})  # type: ignore[no-any-return]


DROP = object()
"""Marks a field to remove in `with_changes`."""


def with_changes(row: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of `row` with `changes` applied (DROP removes a field)."""
    result = dict(row)
    for field, value in changes.items():
        if value is DROP:
            result.pop(field, None)
        else:
            result[field] = value
    return result


def plan(**changes: Any) -> dict[str, Any]:
    """A valid plan."""
    row = {
        "id": "plan_pro",
        "name": "Pro",
        "billing_freq": "month",
        "billing_freq_count": 1,
        "currency": "usd",
        "data_source": "ds_1",
    }
    return with_changes(row, changes)


def customer(**changes: Any) -> dict[str, Any]:
    """A valid customer."""
    row = {
        "id": "cust_123",
        "name": "Acme Inc",
        "email": "[email protected]",
        "created_date": "2024-01-15T00:00:00Z",
        "country": "us",
        "state": "ca",
        "trial_started": "2024-01-10T00:00:00Z",
        "custom_variables": {"industry": "Technology", "company_size": "50-100"},
        "data_source": "ds_1",
    }
    return with_changes(row, changes)


def invoice(**changes: Any) -> dict[str, Any]:
    """A valid subscription invoice of cust_123 on plan_pro."""
    row = {
        "id": "inv_456",
        "customer_id": "cust_123",
        "plan_id": "plan_pro",
        "type": "subscription",
        "date": "2024-02-01T00:00:00Z",
        "amount_cents": 9900,
        "currency": "usd",
        "start_date": "2024-02-01T00:00:00Z",
        "end_date": "2024-03-01T00:00:00Z",
        "payment_date": "2024-02-01T00:00:00Z",
        "quantity": 1,
        "proration": False,
        "data_source": "ds_1",
    }
    return with_changes(row, changes)
