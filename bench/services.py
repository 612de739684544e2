"""The benchmark's own services: throwaway databases, a private Redis, the sandbox, worker processes.

Everything here is started by the benchmark and stopped by it (by the process ids it holds), so a
benchmark never touches the shared Redis on 6379 or anybody else's database.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import redis
from psycopg import sql

from sandbox.testing import SandboxProcess

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://127.0.0.1:5432/postgres")


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `condition` until it is truthy; RuntimeError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Database:
    """A database created for the benchmark and dropped by it."""

    def __init__(self, label: str) -> None:
        self.name = f"gpbench_{label}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{self.name}"

    def drop(self) -> None:
        """Drop it, closing whatever is still connected."""
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))


class RedisServer:
    """A private redis-server on a free port, nothing on disk; a fresh one per scenario.

    Redis 7.0 keeps `used_memory_peak` across `CONFIG RESETSTAT` and `MEMORY PURGE` (checked on
    7.0.15; 7.2 resets it), so a peak per scenario needs a server per scenario.
    """

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="gpbench-redis-")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = redis.Redis(port=self.port, socket_connect_timeout=2)
        wait_for(self._pings, 10, "redis-server to answer")

    def _pings(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    @property
    def url(self) -> str:
        """redis://127.0.0.1:PORT/0"""
        return f"redis://127.0.0.1:{self.port}/0"

    def memory(self) -> dict[str, int]:
        """used_memory and used_memory_peak, in bytes."""
        info = self.client.info("memory")
        return {"used": int(info["used_memory"]), "peak": int(info["used_memory_peak"])}

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_sandbox(keys: dict[str, str], latency_ms: float, rate_limit: float | None) -> SandboxProcess:
    """The sandbox in its own process: digest store, inspection on (the request log), quiet logs."""
    args = ["--store", "digest", "--inspect", "--log-level", "warning", "--progress-delay", "0.1", "--latency-ms", f"{latency_ms:g}"]
    if rate_limit:
        args += ["--rate-limit", f"{rate_limit:g}"]
    process = SandboxProcess(keys, *args)
    process.start()
    return process


class ServiceProcess:
    """A `growpanel-backfill worker` (or `celery -A workers worker`) process with its log in a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            argv, env={**os.environ, **env}, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        """The process id (the Celery main process)."""
        return self.process.pid

    def log(self) -> str:
        """What it logged so far."""
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> None:
        """Until Celery says `ready.`; RuntimeError with the log's tail if it exits first."""
        wait_for(lambda: "ready." in self.log() or self.process.poll() is not None, timeout, f"{self.name} to start", 0.1)
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        """Warm shutdown of its process group, then a kill if it does not go."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
            except ProcessLookupError:
                pass
        self._log.close()


def worker_argv(concurrency: int, pool: str) -> list[str]:
    """The command a user runs to start a worker on both queues."""
    return [sys.executable, "-m", "backfill", "worker", "--concurrency", str(concurrency), "--pool", pool]


def producer_argv() -> list[str]:
    """A worker on the produce queue only (`celery -A workers`), so the producer's memory is its own."""
    from workers.celery_app import PRODUCE_QUEUE

    return [
        sys.executable, "-m", "celery", "-A", "workers", "worker", "--pool", "solo", "--concurrency", "1",
        f"--queues={PRODUCE_QUEUE}", "--hostname", f"producer@%h-{uuid.uuid4().hex[:6]}", "--loglevel", "INFO",
    ]


def batch_worker_argv(concurrency: int, pool: str) -> list[str]:
    """A worker on the batch queue only (`celery -A workers`), used when the producer has its own."""
    from workers.celery_app import BATCH_QUEUE

    return [
        sys.executable, "-m", "celery", "-A", "workers", "worker", "--pool", pool, "--concurrency", str(concurrency),
        f"--queues={BATCH_QUEUE}", "--hostname", f"poster@%h-{uuid.uuid4().hex[:6]}", "--loglevel", "INFO",
        "--task-events",
    ]


def run_cli(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`growpanel-backfill ARGS`, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "backfill", *args], env={**os.environ, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=timeout, check=False,
    )
