"""The log of requests received, and the ASGI middleware that fills it (inspection mode only)."""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.clock import iso

# Routes put what they learn about a request (data source, rows, per-row statuses, fault) here.
INFO_KEY = "sandbox.info"


class RequestLog:
    """A bounded list of request records plus running totals that survive the bound."""

    def __init__(self, limit: int) -> None:
        """Keep at most `limit` records."""
        self._records: deque[dict[str, Any]] = deque(maxlen=limit)
        self._seq = 0
        self._by_status: Counter[str] = Counter()
        self._rows: Counter[str] = Counter()

    def add(self, record: dict[str, Any]) -> None:
        """Append one finished request."""
        self._seq += 1
        record["seq"] = self._seq
        self._records.append(record)
        self._by_status[str(record["status"])] += 1
        for status, count in (record.get("results") or {}).items():
            self._rows[status] += count

    def snapshot(self) -> dict[str, Any]:
        """Every kept record, oldest first, and totals over all requests since the last clear."""
        return {
            "count": self._seq,
            "dropped": self._seq - len(self._records),
            "by_http_status": dict(self._by_status),
            "rows_by_export_status": dict(self._rows),
            "requests": list(self._records),
        }

    def clear(self) -> None:
        """Forget every record and total."""
        self._records.clear()
        self._seq = 0
        self._by_status.clear()
        self._rows.clear()


class RequestLogMiddleware:
    """Records every HTTP request outside `/_sandbox/` with its final status."""

    def __init__(self, app: ASGIApp, log: RequestLog) -> None:
        """Wrap `app`, writing to `log`."""
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through, noting the status sent and whether the body completed."""
        if scope["type"] != "http" or scope["path"].startswith("/_sandbox/"):
            await self.app(scope, receive, send)
            return
        arrived = time.time()
        started = time.perf_counter()
        info: dict[str, Any] = {}
        scope[INFO_KEY] = info
        sent = {"status": 0, "complete": False}

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                sent["complete"] = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            record: dict[str, Any] = {
                "method": scope["method"],
                "path": scope["path"],
                "query": scope.get("query_string", b"").decode("latin-1"),
                "status": sent["status"],
                "response_complete": sent["complete"],
                "arrived_at": iso(arrived),
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "data_source": info.get("data_source"),
                "rows": info.get("rows"),
                "results": info.get("results"),
                "fault": info.get("fault"),
            }
            self.log.add(record)
