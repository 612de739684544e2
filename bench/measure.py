"""What the benchmark measures about processes: CPU seconds, resident memory over time, peaks.

A `Watched` process is a Celery main process together with its children (prefork pool processes);
CPU is read from the kernel (user + system of every process in the tree, plus reaped children), the
peak resident set both from sampling (the tree's sum) and from the kernel's VmHWM (per process, exact).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, its live descendants and its reaped children."""
    total = 0.0
    for n, proc in enumerate(_tree(pid)):
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
        if n == 0:
            total += times.children_user + times.children_system
    return total


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its live descendants, summed."""
    total = 0
    for proc in _tree(pid):
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def hwm_bytes(pid: int) -> int:
    """The kernel's peak resident set (VmHWM) of the largest process in the tree."""
    peak = 0
    for proc in _tree(pid):
        try:
            for line in open(f"/proc/{proc.pid}/status", encoding="ascii"):
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except (OSError, psutil.NoSuchProcess):
            continue
    return peak


@dataclass
class Series:
    """RSS samples of one watched process tree: (seconds since start, bytes)."""

    name: str
    pid: int
    samples: list[tuple[float, int]] = field(default_factory=list)

    @property
    def peak(self) -> int:
        """Largest sampled tree RSS."""
        return max((b for _, b in self.samples), default=0)

    def at(self, fraction: float) -> int:
        """The sample at `fraction` of the watched time (0 = first, 1 = last)."""
        if not self.samples:
            return 0
        index = min(len(self.samples) - 1, max(0, round(fraction * (len(self.samples) - 1))))
        return self.samples[index][1]


class Sampler:
    """A thread sampling the RSS of some process trees every `interval` seconds."""

    def __init__(self, pids: dict[str, int], interval: float = 0.2) -> None:
        self.series = {name: Series(name, pid) for name, pid in pids.items()}
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._t0 = time.monotonic()

    def __enter__(self) -> Sampler:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self) -> None:
        now = time.monotonic() - self._t0
        for series in self.series.values():
            series.samples.append((now, rss_bytes(series.pid)))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)


class CpuMeter:
    """CPU seconds used by some process trees between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def start(self) -> None:
        """Take the starting readings."""
        self._before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        """CPU seconds per name since `start()`."""
        self.used = {name: cpu_seconds(pid) - self._before[name] for name, pid in self.pids.items()}
        return self.used


def mib(n: float) -> float:
    """Bytes to MiB."""
    return n / (1024 * 1024)


class PostgresMeter:
    """CPU seconds of the PostgreSQL backends serving some databases, between `start()` and `stop()`.

    The server is shared with other sessions, so only backends whose `pg_stat_activity.datname` is one
    of ours are counted (processes named postgres, children of the postmaster). Backends are found by
    polling every `interval` seconds; one that appears after `start()` counts from its birth, one that
    exits between two polls loses at most its last interval.
    """

    def __init__(self, url: str, databases: list[str], interval: float = 0.2) -> None:
        self.url = url
        self.databases = databases
        self.interval = interval
        self._base: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-pgmeter", daemon=True)
        self.seconds = 0.0

    def _backends(self, conn: object) -> list[int]:
        rows = conn.execute(  # type: ignore[attr-defined]
            "SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s) AND pid <> pg_backend_pid()", (self.databases,)
        ).fetchall()
        return [r[0] for r in rows]

    def _poll(self, conn: object, first: bool) -> None:
        for pid in self._backends(conn):
            try:
                proc = psutil.Process(pid)
                if proc.name() != "postgres":
                    continue
                t = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            used = t.user + t.system
            if pid not in self._base:
                self._base[pid] = used if first else 0.0
            self._last[pid] = used

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            self._poll(conn, first=True)
            self._ready.set()
            while not self._stop.wait(self.interval):
                self._poll(conn, first=False)
            self._poll(conn, first=False)

    def start(self) -> None:
        """Take the starting readings and start polling."""
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> float:
        """CPU seconds of the counted backends since `start()`."""
        self._stop.set()
        self._thread.join()
        self.seconds = sum(self._last[pid] - self._base[pid] for pid in self._last)
        return self.seconds
