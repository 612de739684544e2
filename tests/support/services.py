"""Real services for tests: those of `devservices` (shared with the benchmark) and a webhook receiver."""

from __future__ import annotations

from pathlib import Path

from devservices import ADMIN_URL, Database, RedisServer, free_port, wait_until

__all__ = ["ADMIN_URL", "Database", "RedisServer", "WebhookReceiver", "free_port", "wait_until", "PROJECT_ROOT"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class WebhookReceiver:
    """A local HTTP endpoint that records the JSON bodies POSTed to it (for alert webhooks)."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received: list[dict] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
