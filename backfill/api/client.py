"""The GrowPanel HTTP client: every endpoint the importer calls, with bounded answers.

One `GrowPanelClient` per process (created in a worker start-up hook, or by a command): a pooled httpx
client with explicit timeouts. The key is passed per request, so one client serves runs of several
data sources, and is never part of anything we log or store (`redact` scrubs it from what we keep).

Answers are read in chunks and abandoned beyond `max_response_bytes` (a misbehaving proxy must not
exhaust a worker's memory), and a `Retry-After` is capped at `max_retry_after` seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import httpx

from backfill.api.answers import ListingPage, MrrQuery, MrrReport, Progress, ResetResult
from backfill.api.answers import listing_page, mrr_report, progress, reset_result
from backfill.api.classify import json_body, parse_retry_after

if TYPE_CHECKING:
    from backfill.settings import Settings

USER_AGENT = "growpanel-backfill/0.1"
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
MAX_RETRY_AFTER = 300.0
_CHUNK = 64 * 1024


@dataclass(slots=True)
class Exchange:
    """One HTTP attempt: when it started, how long it took, what came back.

    `error` is set for a network failure (no status) and for an answer we stopped reading (status set,
    `content` the part read). `retry_after` is the server's Retry-After, already capped; `retry_after_asked`
    what the server asked for, when that was more than the cap.
    """

    started_at: datetime
    latency_ms: float
    status: int | None
    content: bytes
    headers: httpx.Headers | None
    error: str | None = None
    retry_after: float | None = None
    retry_after_asked: float | None = None
    truncated: bool = False


class GrowPanelClient:
    """Every GrowPanel endpoint the importer calls; the transport is injectable (sandbox in-process, tests)."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        max_connections: int = 100,
        transport: httpx.BaseTransport | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_retry_after: float = MAX_RETRY_AFTER,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.max_retry_after = max_retry_after
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

    @classmethod
    def from_settings(cls, settings: Settings, max_connections: int = 2, transport: httpx.BaseTransport | None = None) -> GrowPanelClient:
        """The client these settings describe (timeouts and caps)."""
        return cls(
            settings.growpanel_api_url,
            timeout=settings.http_timeout,
            connect_timeout=settings.http_connect_timeout,
            max_connections=max_connections,
            transport=transport,
            max_response_bytes=settings.max_response_bytes,
            max_retry_after=settings.max_retry_after,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    # --- endpoints -------------------------------------------------------------------------------

    def post_rows(self, entity: str, body: bytes, api_key: str) -> Exchange:
        """POST a JSON array to /data/<entity>; network failures come back as an Exchange with `error`."""
        return self.request("POST", f"/data/{entity}", api_key, content=body)

    def reset_data_source(self, data_source: str, api_key: str) -> ResetResult:
        """POST /data/data-sources/{id}/reset; ApiError when it did not succeed."""
        exchange = self.request("POST", f"/data/data-sources/{data_source}/reset", api_key)
        return reset_result(json_body(exchange, api_key), data_source)

    def progress(self, data_source: str, api_key: str) -> Progress:
        """GET /data/data-sources/{id}/progress (camelCase or snake_case counters)."""
        exchange = self.request("GET", f"/data/data-sources/{data_source}/progress", api_key)
        return progress(json_body(exchange, api_key), data_source)

    def listing(self, kind: str, data_source: str, api_key: str, limit: int, offset: int | None = None) -> ListingPage:
        """GET /data/{kind}?source=DS&limit=N[&offset=K] (the spec documents only `source` and `limit`)."""
        params: dict[str, Any] = {"source": data_source, "limit": limit}
        if offset is not None:
            params["offset"] = offset
        exchange = self.request("GET", f"/data/{kind}", api_key, params=params)
        return listing_page(json_body(exchange, api_key), kind)

    def mrr_report(self, query: MrrQuery, api_key: str) -> MrrReport:
        """GET /reports/mrr (the SDK's list of periods, or the older `{"interval", "data"}` object)."""
        exchange = self.request("GET", "/reports/mrr", api_key, params=query.params())
        return mrr_report(json_body(exchange, api_key), query)

    # --- one exchange ----------------------------------------------------------------------------

    def request(
        self, method: str, path: str, api_key: str, content: bytes | None = None, params: dict[str, Any] | None = None
    ) -> Exchange:
        """One exchange; never raises for network errors or oversized answers (they are data for the retry policy)."""
        started = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        request = self._client.build_request(
            method, path, content=content, params=params, headers={"Authorization": f"Bearer {api_key}"}
        )
        try:
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            return Exchange(started, _ms(t0), None, b"", None, f"timeout ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return Exchange(started, _ms(t0), None, b"", None, f"network error ({type(exc).__name__}: {exc})")
        try:
            content_bytes, error = self._read(response, t0)
        finally:
            response.close()
        exchange = Exchange(started, _ms(t0), response.status_code, content_bytes, response.headers, error, truncated=error is not None)
        asked = parse_retry_after(response.headers)
        if asked is not None:
            exchange.retry_after = min(asked, self.max_retry_after)
            if asked > self.max_retry_after:
                exchange.retry_after_asked = asked
        return exchange

    def _read(self, response: httpx.Response, t0: float) -> tuple[bytes, str | None]:
        """The body, or what was read of it and why reading stopped (too big, too slow, cut)."""
        limit = self.max_response_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return b"", f"response of {int(declared)} bytes refused: over MAX_RESPONSE_BYTES ({limit})"
        parts: list[bytes] = []
        size = 0
        # A body trickled forever would pass every per-read timeout: the whole body gets 4 timeouts.
        deadline = t0 + 4 * self.timeout
        try:
            for chunk in response.iter_bytes(_CHUNK):
                parts.append(chunk)
                size += len(chunk)
                if size > limit:
                    return b"".join(parts)[:limit], f"response over MAX_RESPONSE_BYTES ({limit} bytes): stopped reading"
                if time.perf_counter() > deadline:
                    return b"".join(parts), f"response still arriving after {4 * self.timeout:g} s: stopped reading"
        except httpx.TimeoutException as exc:
            return b"".join(parts), f"timeout while reading the response ({type(exc).__name__})"
        except httpx.TransportError as exc:
            return b"".join(parts), f"network error while reading the response ({type(exc).__name__})"
        return b"".join(parts), None


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)
