"""Helpers for tests elsewhere: run the sandbox as a subprocess, or reach an app in-process."""

from __future__ import annotations

import os
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx
from starlette.applications import Starlette

from sandbox.config import TOKEN_ENV
from sandbox.routes.guard import TOKEN_HEADER
from sandbox.server import READY_PREFIX

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The checkout holding the sandbox package (the subprocess's working directory)."""


def child_env() -> dict[str, str]:
    """This process's environment with the project root on PYTHONPATH (works uninstalled too)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


class SandboxProcess:
    """`python -m sandbox --port 0 ...` in a subprocess; `url` is set once it listens.

    >>> with SandboxProcess({"key_1": "ds_1"}, "--inspect", "--error-rate", "0.1") as sandbox:
    ...     httpx.get(sandbox.url + "/_sandbox/faults", headers=sandbox.inspect_headers)

    A random inspection token is made unless one is given, and passed in SANDBOX_INSPECT_TOKEN
    (not on the command line, where other users of the machine could read it).
    """

    def __init__(
        self,
        keys: dict[str, str],
        *args: str,
        host: str = "127.0.0.1",
        start_timeout: float = 20.0,
        python: str = sys.executable,
        inspect_token: str | None = None,
    ) -> None:
        """Remember how to start; `args` are extra CLI flags (e.g. "--inspect")."""
        self.inspect_token = inspect_token or secrets.token_urlsafe(24)
        self.command = cli_command(keys, "--host", host, *args, python=python)
        self.start_timeout = start_timeout
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        # stderr goes to a file: an unread pipe would block the server once it fills up.
        self._stderr: IO[bytes] | None = None
        self._stderr_text = ""

    def start(self) -> str:
        """Start the process and wait for its address line; return the base URL."""
        self._stderr = tempfile.TemporaryFile()
        env = child_env()
        env[TOKEN_ENV] = self.inspect_token
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=self._stderr, cwd=PROJECT_ROOT, env=env
        )
        line = read_line(self.process, self.start_timeout)
        if not line.startswith(READY_PREFIX):
            self.stop()
            raise RuntimeError(f"sandbox did not start: {line!r}; stderr: {self.stderr()[-2000:]}")
        self.url = line[len(READY_PREFIX) :].strip()
        return self.url

    @property
    def inspect_headers(self) -> dict[str, str]:
        """The header `/_sandbox/*` requests need."""
        return {TOKEN_HEADER: self.inspect_token}

    def stop(self, timeout: float = 10.0) -> int | None:
        """Send SIGTERM and wait for the exit status (killing it past `timeout`)."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        return process.returncode

    def stderr(self) -> str:
        """What the process logged so far (kept after the context exits)."""
        if self._stderr is None or self._stderr.closed:
            return self._stderr_text
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def __enter__(self) -> SandboxProcess:
        """Start on entry."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop on exit."""
        self.stop()
        if self._stderr is not None:
            self._stderr_text = self.stderr()
            self._stderr.close()


def read_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The first stdout line of `process`, or "" if it exits or stays silent for `timeout`."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    fd = process.stdout.fileno()
    while not buffer.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            break
        chunk = os.read(fd, 1)
        if not chunk:
            break
        buffer += chunk
    return buffer.decode(errors="replace")


def asgi_client(
    app: Starlette, api_key: str | None = None, inspect_token: str | None = None, **kwargs: object
) -> httpx.AsyncClient:
    """An httpx AsyncClient talking to `app` in-process, with the Bearer key and token set if given."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    if inspect_token:
        headers[TOKEN_HEADER] = inspect_token
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://sandbox",
        headers=headers,
        **kwargs,  # type: ignore[arg-type]
    )


def cli_command(keys: dict[str, str], *args: str, python: str = sys.executable) -> list[str]:
    """The argv that starts the sandbox on a free port with these keys and extra flags."""
    command = [python, "-m", "sandbox", "--port", "0"]
    for key, data_source in keys.items():
        command += ["--key", f"{key}={data_source}"]
    return command + list(args)
