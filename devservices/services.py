"""Throwaway PostgreSQL databases, private redis-servers, free ports and a polling helper."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import redis
from psycopg import sql

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL") or os.environ.get("BENCH_POSTGRES_URL") or "postgresql://127.0.0.1:5432/postgres"
"""An admin connection to the local server; each Database is created and dropped through it."""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.05, message: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy; AssertionError naming `message` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message}")
        time.sleep(interval)


class Database:
    """A database created for one test session or benchmark, and dropped by it."""

    def __init__(self, label: str, prefix: str = "gpbt") -> None:
        self.name = f"{prefix}_{label}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{self.name}"

    def drop(self) -> None:
        """Drop the database (closing any connection still open to it)."""
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))


class RedisServer:
    """A private redis-server on a free port (nothing on disk) that its owner may flush, kill and restart.

    Redis 7.0 keeps `used_memory_peak` across `CONFIG RESETSTAT` and `MEMORY PURGE` (checked on 7.0.15;
    7.2 resets it), so a benchmark that wants a peak per scenario starts a server per scenario.
    """

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: the tests and the benchmark need a real Redis")
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="gp-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        """redis://127.0.0.1:PORT/DB"""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        """Start (or restart) on the same port, empty; returns self once it answers."""
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--maxmemory-policy", "noeviction", "--databases", "64"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        wait_until(lambda: _pings(client), 10, message="redis-server to answer")
        client.close()
        return self

    def client(self, db: int = 0) -> redis.Redis:
        """A new client of this server."""
        return redis.Redis(port=self.port, db=db, socket_connect_timeout=2)

    def memory(self) -> dict[str, int]:
        """used_memory and used_memory_peak, in bytes."""
        with self.client() as client:
            info = client.info("memory")
        return {"used": int(info["used_memory"]), "peak": int(info["used_memory_peak"])}

    def stop(self) -> None:
        """Kill it (like a crash: nothing is saved)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def cleanup(self) -> None:
        """Stop and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
