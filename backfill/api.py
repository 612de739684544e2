"""The GrowPanel HTTP client, and the one place where answers are classified.

One `GrowPanelClient` per process (created in a worker start-up hook): a pooled httpx client with
explicit timeouts. The key is passed per request, so one client serves runs of several data sources,
and is never part of anything we log or store (`redact` scrubs it from bodies we keep).
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx
import orjson

from backfill.errors import (
    ApiError,
    AuthError,
    FatalApiError,
    RejectedError,
    RetriableApiError,
    ThrottledError,
    TooLargeError,
)

USER_AGENT = "growpanel-backfill/0.1"
BODY_LIMIT = 64 * 1024


@dataclass(slots=True)
class Exchange:
    """One HTTP attempt: when it started, how long it took, what came back."""

    started_at: datetime
    latency_ms: float
    status: int | None
    content: bytes
    headers: httpx.Headers | None
    error: str | None = None


class GrowPanelClient:
    """Posts rows and reads listings; the transport is injectable (sandbox in-process, tests)."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        max_connections: int = 100,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"User-Agent": USER_AGENT, "Content-Type": "application/json", "Accept": "application/json"},
            transport=transport,
            # TLS verification stays on: there is deliberately no switch for it.
            verify=True,
            follow_redirects=False,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def post_rows(self, entity: str, body: bytes, api_key: str) -> Exchange:
        """POST a JSON array to /data/<entity>; network failures come back as an Exchange with `error`."""
        return self.request("POST", f"/data/{entity}", api_key, content=body)

    def request(
        self, method: str, path: str, api_key: str, content: bytes | None = None, params: dict[str, Any] | None = None
    ) -> Exchange:
        """One exchange; never raises for network errors (they are data for the retry policy)."""
        started = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        try:
            response = self._client.request(
                method, path, content=content, params=params, headers={"Authorization": f"Bearer {api_key}"}
            )
        except httpx.TimeoutException as exc:
            return Exchange(started, _ms(t0), None, b"", None, f"timeout ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return Exchange(started, _ms(t0), None, b"", None, f"network error ({type(exc).__name__}: {exc})")
        return Exchange(started, _ms(t0), response.status_code, response.content, response.headers)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)


def redact(value: str | None, secret: str | None) -> str | None:
    """Remove the key from text we are about to keep (a hostile or buggy server could echo it)."""
    if value is None or not secret:
        return value
    return value.replace(secret, "[redacted]")


def body_text(exchange: Exchange, secret: str | None, limit: int = BODY_LIMIT) -> str:
    """The response body as text for the record, bounded and redacted."""
    text = exchange.content[:limit].decode("utf-8", "replace")
    if len(exchange.content) > limit:
        text += f"... ({len(exchange.content)} bytes in all)"
    return redact(text, secret) or ""


def parse_retry_after(headers: httpx.Headers | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds, a decimal, or an HTTP date)."""
    if headers is None:
        return None
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _error_message(exchange: Exchange, secret: str | None) -> str:
    """`{"error": "..."}` bodies give their message; anything else a short excerpt."""
    try:
        data = orjson.loads(exchange.content)
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return redact(data["error"], secret) or ""
    except orjson.JSONDecodeError:
        pass
    return body_text(exchange, secret, 300).strip() or "(empty body)"


def json_body(exchange: Exchange, secret: str | None) -> Any:
    """The decoded body of a 2xx answer, or the ApiError that says what to do about this answer."""
    status = exchange.status
    if status is None:
        raise RetriableApiError(exchange.error or "no response")
    if 200 <= status < 300:
        try:
            return orjson.loads(exchange.content)
        except orjson.JSONDecodeError:
            raise RetriableApiError(f"HTTP {status} with a body that is not JSON", status) from None
    message = f"HTTP {status}: {_error_message(exchange, secret)}"
    if status == 429:
        raise ThrottledError(message, parse_retry_after(exchange.headers), status)
    if status == 413:
        raise TooLargeError(message, status)
    if status in (401, 403):
        raise AuthError(message, status)
    if status in (404, 405) or 300 <= status < 400:
        # Every batch would get the same answer: the URL, not the data, is wrong.
        location = exchange.headers.get("location") if exchange.headers is not None else None
        hint = f" (redirect to {location})" if location else ""
        raise FatalApiError(f"{message}{hint}; check GROWPANEL_API_URL", status)
    if status == 408 or status >= 500:
        raise RetriableApiError(message, status)
    raise RejectedError(message, status)


def classify(exchange: Exchange, secret: str | None) -> list[Any]:
    """The per-row result list of a bulk POST's clean answer, or the ApiError for this answer."""
    data = json_body(exchange, secret)
    result = data.get("result") if isinstance(data, dict) else None
    if not isinstance(result, list):
        raise RetriableApiError(f"HTTP {exchange.status} without a `result` list", exchange.status)
    return result


def backoff_delay(delays: list[float], n: int, jitter: float, rng: random.Random) -> float:
    """The delay before retry number `n` (1-based) of RETRY_BACKOFF, with ± `jitter` (a fraction)."""
    base = (delays or [1.0])[min(n, len(delays or [1.0])) - 1]
    return max(0.0, base * (1 + rng.uniform(-jitter, jitter)))


__all__ = ["ApiError", "Exchange", "GrowPanelClient", "backoff_delay", "body_text", "classify", "json_body", "parse_retry_after", "redact"]
