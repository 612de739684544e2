"""A hostile or broken server against the client and the whole importer (issue 12, items 4 and 5).

A tiny stand-in server (here, in the test: the sandbox is well-behaved by design) echoes the
Authorization header raw, JSON-escaped, URL-encoded, base64-encoded and cut at the truncation limit,
and answers bodies that are oversized or never end. The key must end up in no table, log, alert or
message, and no answer may grow a worker's memory beyond MAX_RESPONSE_BYTES.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import orjson
import pytest

from backfill.api import BODY_LIMIT, MAX_RESPONSE_BYTES, MAX_RETRY_AFTER, GrowPanelClient, body_text, classify
from backfill.errors import RetriableApiError, ThrottledError
from tests.integration.scenarios import CUSTOMERS, INVOICES, PLANS
from tests.support.services import Database
from tests.support.sources import build_source, mapping_file
from tests.support.stack import Stack

# Characters that JSON, percent-encoding and base64 each turn into something else.
KEY = f'gpk_live_{uuid.uuid4().hex}/+"\\=&?'
BEARER = f"Bearer {KEY}"


def forms(key: str) -> dict[str, str]:
    """The encodings a server could echo the key in."""
    return {
        "raw": key,
        "json": json.dumps(key)[1:-1],
        "quote": quote(key, safe=""),
        "quote_default": quote(key),
        "quote_plus": quote_plus(key),
        "base64_bearer": base64.b64encode(f"Bearer {key}".encode()).decode(),
        "base64_key": base64.b64encode(key.encode()).decode(),
        "base64_urlsafe": base64.urlsafe_b64encode(key.encode()).decode().rstrip("="),
    }


def fragments(key: str) -> list[str]:
    """What must not survive either: the random part of the key, whole or cut."""
    random_part = key.removeprefix("gpk_live_")[:32]
    return [random_part[:12], random_part[-12:]]


def echo_text(authorization: str) -> str:
    """Every encoding of the header, then the raw key again straddling the BODY_LIMIT boundary."""
    key = authorization.removeprefix("Bearer ")
    head = " ".join(f"{name}={value}" for name, value in forms(key).items())
    head += f" header_base64={base64.b64encode(authorization.encode()).decode()}"
    pad = "x" * (BODY_LIMIT - len(head) - len(key) // 2)
    return head + pad + key + " and more" + "y" * 4096


class Hostile(http.server.BaseHTTPRequestHandler):
    """Answers by `mode`; records webhook posts."""

    protocol_version = "HTTP/1.1"
    mode = "echo400"
    hooks: list[dict[str, Any]] = []
    auths: list[str] = []

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._answer()

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/hook":
            Hostile.hooks.append(orjson.loads(body))
            self._send(200, b"{}")
            return
        self._answer(body)

    def _answer(self, body: bytes = b"") -> None:
        auth = self.headers.get("Authorization", "")
        Hostile.auths.append(auth)
        text = echo_text(auth)
        mode = Hostile.mode
        if mode == "echo400":
            self._send(400, text.encode())
        elif mode == "echo401":
            self._send(401, orjson.dumps({"error": text}))
        elif mode == "echo500":
            self._send(500, orjson.dumps({"error": text}))
        elif mode == "rows":
            rows = orjson.loads(body) if body else []
            result = [{"id": r.get("id"), "export_status": "error", "export_error": text} for r in rows]
            self._send(200, orjson.dumps({"result": result}))
        elif mode == "retry_after":
            self._send(429, orjson.dumps({"error": "slow down"}), {"Retry-After": "999999"})
        elif mode == "declared_huge":
            self.send_response(200)
            self.send_header("Content-Length", str(64 * 1024 * 1024))
            self.end_headers()
            self._pour(lambda: b"[" * 65536)
        elif mode == "endless":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self._pour(lambda: (text[:1000]).encode() * 64)
            self.close_connection = True

    def _pour(self, chunk: Any) -> None:
        """Write until the client hangs up (an endless body) or 1 GiB (a safety stop for a broken client)."""
        sent = 0
        try:
            while sent < 1024**3:
                data = chunk()
                self.wfile.write(data)
                sent += len(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def hostile() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Hostile.mode, Hostile.hooks, Hostile.auths = "echo400", [], []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def assert_no_key(text: str, where: str) -> None:
    for name, form in forms(KEY).items():
        assert form not in text, f"the key ({name}) is in {where}"
    for fragment in fragments(KEY):
        assert fragment not in text, f"a fragment of the key is in {where}"


def test_every_echoed_encoding_is_redacted_before_the_body_is_cut(hostile: str) -> None:
    client = GrowPanelClient(hostile, timeout=5, connect_timeout=5)
    try:
        exchange = client.post_rows("plans", b"[]", KEY)
    finally:
        client.close()
    # The server really echoed every form, with the raw key straddling the limit at which bodies are cut
    received = exchange.content.decode()
    assert all(form in received for form in forms(KEY).values())
    assert received.index(KEY, BODY_LIMIT - len(KEY)) < BODY_LIMIT < received.index(KEY, BODY_LIMIT - len(KEY)) + len(KEY)
    kept = body_text(exchange, KEY)
    assert_no_key(kept, "the kept body")
    assert kept.count("[redacted]") >= len(forms(KEY)) and "bytes in all" in kept
    with pytest.raises(Exception) as caught:
        classify(exchange, KEY)
    assert_no_key(str(caught.value), "the error message")


def test_an_endless_body_stops_at_the_default_cap_and_is_a_retriable_error(hostile: str) -> None:
    # At the documented default (8 MiB) and with the default timeouts
    Hostile.mode = "endless"
    client = GrowPanelClient(hostile)
    assert client.max_response_bytes == MAX_RESPONSE_BYTES == 8 * 1024 * 1024
    try:
        exchange = client.post_rows("plans", b"[]", KEY)
    finally:
        client.close()
    assert exchange.status == 200 and len(exchange.content) == MAX_RESPONSE_BYTES
    assert exchange.error == f"response over MAX_RESPONSE_BYTES ({MAX_RESPONSE_BYTES} bytes): stopped reading"
    with pytest.raises(RetriableApiError, match="MAX_RESPONSE_BYTES") as caught:
        classify(exchange, KEY)
    assert_no_key(str(caught.value) + body_text(exchange, KEY), "the record of an endless body")


def test_a_declared_oversized_body_is_not_read_at_all(hostile: str) -> None:
    Hostile.mode = "declared_huge"
    client = GrowPanelClient(hostile)
    started = time.monotonic()
    try:
        exchange = client.post_rows("plans", b"[]", KEY)
    finally:
        client.close()
    assert exchange.content == b"" and time.monotonic() - started < 5
    assert exchange.error == f"response of {64 * 1024 * 1024} bytes refused: over MAX_RESPONSE_BYTES ({MAX_RESPONSE_BYTES})"


def test_retry_after_is_capped_at_the_default_300_seconds(hostile: str) -> None:
    Hostile.mode = "retry_after"
    client = GrowPanelClient(hostile)
    try:
        exchange = client.post_rows("plans", b"[]", KEY)
    finally:
        client.close()
    assert (exchange.retry_after, exchange.retry_after_asked) == (MAX_RETRY_AFTER, 999999.0) == (300.0, 999999.0)
    with pytest.raises(ThrottledError) as caught:
        classify(exchange, KEY)
    assert caught.value.retry_after == 300.0


def _dump(stack: Stack) -> str:
    """Every row of every table the importer writes, as text."""
    tables = [r.table_name for r in stack.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
    return "\n".join(str(row) for table in tables for row in stack.sql(f'SELECT t::text AS row FROM "{table}" t'))  # noqa: S608


@pytest.mark.slow
def test_the_key_echoed_every_way_is_in_no_table_log_alert_or_message(make_stack, hostile: str, source_db: Database, source_schema: str, workdir: Path) -> None:
    # Given workers and the CLI pointed at a server that echoes the key in every answer
    stack: Stack = make_stack(
        GROWPANEL_API_URL=hostile, GROWPANEL_API_KEY=KEY, ALERT_WEBHOOK_URL=f"{hostile}/hook",
        RETRY_BACKOFF="0.05,0.1", HTTP_TIMEOUT="5",
    )
    worker = stack.start_worker(concurrency=4)
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    mapping = mapping_file(workdir, source_schema)
    outputs: list[str] = []

    def run(mode: str, *extra: str) -> dict[str, Any]:
        Hostile.mode = mode
        result = stack.cli("start", "--mapping", mapping, "--wait", "--json", *extra)
        outputs.append(result.stdout + result.stderr)
        doc = result.json()
        if doc["state"] == "paused":
            outputs.append(stack.cli("errors", str(doc["run_id"])).stdout)
            assert stack.cli("cancel", str(doc["run_id"])).code == 0
        else:
            outputs.append(stack.cli("errors", str(doc["run_id"])).stdout)
        return doc  # type: ignore[no-any-return]

    # 400s (rows rejected with the body as message), per-row errors in a 200, a refused key (pause, alert),
    # 5xx past every retry (pause, alert), and an endless 200 body (pause, alert)
    rejected = run("echo400")
    assert rejected["state"] == "completed_with_errors"
    assert run("rows")["state"] == "completed_with_errors"
    refused = run("echo401")
    assert refused["state"] == "paused" and "HTTP 401" in refused["paused_reason"]
    assert run("echo500")["state"] == "paused"
    endless = run("endless")
    assert endless["state"] == "paused" and "MAX_RESPONSE_BYTES" in endless["paused_reason"]
    # The CLI's own calls: a reset refused with the key echoed back
    Hostile.mode = "echo500"
    reset = stack.cli("start", "--mapping", mapping, "--reset-data-source", "--yes")
    assert reset.code == 2 and "the reset of data source" in reset.stderr
    outputs.append(reset.stdout + reset.stderr)
    # Then the server did receive the key, and echoed it in every answer...
    assert Hostile.auths and all(a == BEARER for a in Hostile.auths)
    # ...and it is in no table, no log line, no alert, no message
    tables = _dump(stack)
    assert "[redacted]" in tables
    assert_no_key(tables, "a table")
    assert_no_key(worker.log(), "the worker's log")
    assert_no_key("\n".join(outputs), "the CLI's output")
    assert len(Hostile.hooks) >= 3
    assert_no_key(orjson.dumps(Hostile.hooks).decode(), "an alert")


class Odd(http.server.BaseHTTPRequestHandler):
    """Accepts every row, and answers the read endpoints with shapes nobody documented."""

    protocol_version = "HTTP/1.1"
    answers: dict[str, Any] = {}

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        rows = orjson.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"[]")
        if self.path.startswith("/data/data-sources/"):
            self._send({"success": True})
        else:
            self._send({"result": [{"id": r.get("id"), "export_status": "inserted"} for r in rows]})

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        if path.endswith("/progress"):
            self._send(Odd.answers["progress"])
        elif path == "/reports/mrr":
            self._send(Odd.answers["mrr"])
        else:
            self._send(Odd.answers.get(path, {"result": {"count": 0, "list": []}}))

    def _send(self, doc: Any) -> None:
        body = orjson.dumps(doc)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_answers_nobody_documented_are_one_line_and_exit_2(make_stack, source_db: Database, source_schema: str, workdir: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Odd)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        stack: Stack = make_stack(GROWPANEL_API_URL=url)
        stack.start_worker(concurrency=2)
        build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
        mapping = mapping_file(workdir, source_schema)
        ds = stack.env["GROWPANEL_DATA_SOURCE_ID"]
        # A progress answer without a phase
        Odd.answers = {"progress": {"processedCount": 3}, "mrr": {"result": [{"end_date": "2024-01-31"}], "currency": "usd"}}
        waited = stack.cli("start", "--mapping", mapping, "--wait-processing")
        assert waited.code == 2
        assert waited.stderr.strip().splitlines()[-1] == (
            f"growpanel-backfill: --wait-processing: GET /data/data-sources/{ds}/progress answered without a `phase` (keys: processedCount)"
        )
        # A plan listing whose entries carry neither external_id nor id
        Odd.answers["/data/plans"] = {"result": {"count": 1, "list": [{"name": "Pro"}]}}
        listed = stack.cli("verify")
        assert (listed.code, listed.stderr.strip()) == (
            2, "growpanel-backfill: verify could not complete: GET /data/plans: entry 0 of the list has no `id` or `external_id`"
        )
        # An MRR report whose periods have no date
        del Odd.answers["/data/plans"]
        months = stack.cli("verify", "--mrr")
        assert (months.code, months.stderr.strip()) == (
            2, "growpanel-backfill: verify could not complete: GET /reports/mrr: period 0 has no `date` (YYYY-MM-DD)"
        )
        assert "Traceback" not in waited.stderr + listed.stderr + months.stderr
    finally:
        server.shutdown()
        server.server_close()
