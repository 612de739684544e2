"""The benchmark's own services: throwaway databases, a private Redis, the sandbox, worker processes.

Everything here is started by the benchmark and stopped by it (by the process ids it holds), so a
benchmark never touches the shared Redis on 6379 or anybody else's database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from devservices import Database, RedisServer, free_port, wait_until
from sandbox.testing import SandboxProcess

__all__ = ["Database", "RedisServer", "free_port", "wait_until", "start_sandbox", "ServiceProcess", "run_cli"]

ROOT = Path(__file__).resolve().parent.parent


def start_sandbox(keys: dict[str, str], latency_ms: float, rate_limit: float | None) -> SandboxProcess:
    """The sandbox in its own process: digest store, inspection on (the request log), quiet logs.

    SandboxProcess gives it a random inspection token by environment (never on the command line);
    its `inspect_headers` carry it back on /_sandbox/ requests.
    """
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
        wait_until(lambda: "ready." in self.log() or self.process.poll() is not None, timeout, 0.1, message=f"{self.name} to start")
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
    return [sys.executable, "-m", "console", "worker", "--concurrency", str(concurrency), "--pool", pool]


def producer_argv() -> list[str]:
    """A worker on the produce queue only (`celery -A workers`), so the producer's memory is its own."""
    from backfill.messages import PRODUCE_QUEUE

    return [
        sys.executable, "-m", "celery", "-A", "workers", "worker", "--pool", "solo", "--concurrency", "1",
        f"--queues={PRODUCE_QUEUE}", "--hostname", f"producer@%h-{uuid.uuid4().hex[:6]}", "--loglevel", "INFO",
    ]


def batch_worker_argv(concurrency: int, pool: str) -> list[str]:
    """A worker on the batch queue only (`celery -A workers`), used when the producer has its own."""
    from backfill.messages import BATCH_QUEUE

    return [
        sys.executable, "-m", "celery", "-A", "workers", "worker", "--pool", pool, "--concurrency", str(concurrency),
        f"--queues={BATCH_QUEUE}", "--hostname", f"poster@%h-{uuid.uuid4().hex[:6]}", "--loglevel", "INFO",
        "--task-events",
    ]


def run_cli(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`growpanel-backfill ARGS`, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "console", *args], env={**os.environ, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=timeout, check=False,
    )
