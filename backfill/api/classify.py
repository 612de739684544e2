"""The one place where answers are classified: status and body -> a value or the ApiError to act on."""

from __future__ import annotations

import email.utils
import random
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from backfill.redact import redact, truncate
from backfill.errors import (
    AuthError,
    FatalApiError,
    RejectedError,
    RetriableApiError,
    ThrottledError,
    TooLargeError,
)

if TYPE_CHECKING:
    from backfill.api.client import Exchange

BODY_LIMIT = 64 * 1024


def body_text(exchange: Exchange, secret: str | None, limit: int = BODY_LIMIT) -> str:
    """The response body as text for the record: redacted whole, then bounded."""
    text = redact(exchange.content.decode("utf-8", "replace"), secret) or ""
    total = len(exchange.content)
    if len(text) <= limit:
        return text
    return truncate(text, limit, total)


def parse_retry_after(headers: httpx.Headers | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds, a decimal, or an HTTP date); uncapped."""
    if headers is None:
        return None
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        seconds = float(raw.strip())
        return max(0.0, seconds) if seconds == seconds else None  # NaN is no answer
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _error_message(exchange: Exchange, secret: str | None) -> str:
    """`{"error": "..."}` bodies give their message; anything else a short excerpt."""
    if not exchange.truncated:
        try:
            data = orjson.loads(exchange.content)
            if isinstance(data, dict) and isinstance(data.get("error"), str):
                return truncate(redact(data["error"], secret) or "", 1000)
        except orjson.JSONDecodeError:
            pass
    return body_text(exchange, secret, 300).strip() or "(empty body)"


def _retry_after(exchange: Exchange) -> float | None:
    if exchange.retry_after is not None or exchange.retry_after_asked is not None:
        return exchange.retry_after
    # An Exchange built by hand (tests, bench) carries only headers.
    return parse_retry_after(exchange.headers)


def json_body(exchange: Exchange, secret: str | None) -> Any:
    """The decoded body of a 2xx answer, or the ApiError that says what to do about this answer."""
    status = exchange.status
    if status is None:
        raise RetriableApiError(redact(exchange.error, secret) or "no response")
    if exchange.error is not None and 200 <= status < 300:
        # A 2xx we stopped reading: whether the rows were taken is unknown; posting them again is an upsert.
        raise RetriableApiError(f"HTTP {status}: {exchange.error}", status)
    if 200 <= status < 300:
        try:
            return orjson.loads(exchange.content)
        except orjson.JSONDecodeError:
            raise RetriableApiError(f"HTTP {status} with a body that is not JSON", status) from None
    message = f"HTTP {status}: {_error_message(exchange, secret)}"
    if status == 429:
        raise ThrottledError(message, _retry_after(exchange), status)
    if status == 413:
        raise TooLargeError(message, status)
    if status in (401, 403):
        raise AuthError(message, status)
    if status in (404, 405) or 300 <= status < 400:
        # Every batch would get the same answer: the URL, not the data, is wrong.
        location = exchange.headers.get("location") if exchange.headers is not None else None
        hint = f" (redirect to {redact(location, secret)})" if location else ""
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
