"""Fault injection: the fault settings, their run-time update, and the per-request draw."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

LOST_MODES = ("502", "close", "either")


@dataclass(frozen=True)
class FaultConfig:
    """Faults to inject into `/data/*` and `/reports/*` requests; all off by default."""

    latency_ms: float = 0.0
    """Fixed delay added to every faultable request (after auth and the rate limiter)."""
    latency_per_row_ms: float = 0.0
    """Extra delay per row of a POSTed batch, before it is applied."""
    jitter_ms: float = 0.0
    """Uniformly random extra delay in [0, jitter_ms]."""
    error_rate: float = 0.0
    """Probability of a 5xx answered before anything is applied."""
    error_statuses: tuple[int, ...] = (500, 502, 503)
    """Statuses to pick from (uniformly) for error_rate."""
    lost_rate: float = 0.0
    """Probability that a request is applied but its response is lost."""
    lost_mode: str = "502"
    """How a response is lost: "502", "close" (connection cut mid-body) or "either" (50/50)."""
    hang_rate: float = 0.0
    """Probability of a hang: no answer for hang_seconds (or until the client leaves), nothing applied."""
    hang_seconds: float = 30.0
    """How long a hang lasts before the sandbox gives up with a 504."""
    outage: bool = False
    """Every faultable request gets a 503."""
    throttle_rate: float = 0.0
    """Probability of an injected 429, independent of the rate limiter."""
    throttle_retry_after: int = 1
    """Retry-After seconds sent with an injected 429."""
    paths: tuple[str, ...] | None = None
    """Path prefixes the faults are limited to; None means every faultable path."""
    seed: int | None = None
    """Seed of the fault random generator, for reproducible runs; setting it re-seeds."""


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What the draw decided for one request."""

    delay_s: float
    """Fixed latency plus jitter, in seconds."""
    per_row_s: float
    """Per-row latency in seconds, applied once the row count is known."""
    early: str | None
    """"outage", "throttle", "error" or "hang": answered before anything is applied."""
    status: int
    """The status of an early "error"."""
    lost: str | None
    """"502" or "close" when the response of an applied request is to be lost."""


NO_FAULT = FaultPlan(0.0, 0.0, None, 0, None)
_FAULTABLE_PREFIXES = ("/data/", "/reports/")


class FaultInjector:
    """Holds the current fault settings and draws the faults of each request."""

    def __init__(self, config: FaultConfig) -> None:
        """Start with `config` and a generator seeded from it."""
        self.config = config
        self._rng = random.Random(config.seed)

    def update(self, changes: dict[str, Any]) -> FaultConfig:
        """Apply a partial update from JSON; raises ValueError naming the bad field."""
        self.config = apply_changes(self.config, changes)
        if "seed" in changes:
            self._rng = random.Random(self.config.seed)
        return self.config

    def replace(self, config: FaultConfig) -> None:
        """Replace the whole configuration and re-seed."""
        self.config = config
        self._rng = random.Random(config.seed)

    def draw(self, path: str) -> FaultPlan:
        """Decide the faults of one request to `path`."""
        c = self.config
        if not path.startswith(_FAULTABLE_PREFIXES):
            return NO_FAULT
        if c.paths is not None and not path.startswith(c.paths):
            return NO_FAULT
        rng = self._rng
        delay = c.latency_ms
        if c.jitter_ms > 0:
            delay += rng.uniform(0.0, c.jitter_ms)
        # Every enabled fault draws in a fixed order whatever the others decided, so a seeded run
        # gets the same sequence of outcomes for the same sequence of requests.
        early: str | None = "outage" if c.outage else None
        status = 503 if c.outage else 0
        if c.throttle_rate > 0 and rng.random() < c.throttle_rate and early is None:
            early, status = "throttle", 429
        if c.error_rate > 0:
            hit = rng.random() < c.error_rate
            picked = rng.choice(c.error_statuses)
            if hit and early is None:
                early, status = "error", picked
        if c.hang_rate > 0 and rng.random() < c.hang_rate and early is None:
            early, status = "hang", 504
        lost: str | None = None
        if c.lost_rate > 0:
            hit = rng.random() < c.lost_rate
            mode = c.lost_mode if c.lost_mode != "either" else rng.choice(("502", "close"))
            if hit and early is None:
                lost = mode
        if delay == 0 and c.latency_per_row_ms == 0 and early is None and lost is None:
            return NO_FAULT
        return FaultPlan(delay / 1000.0, c.latency_per_row_ms / 1000.0, early, status, lost)


def fault_config_as_json(config: FaultConfig) -> dict[str, Any]:
    """The JSON form of a fault configuration (tuples as lists)."""
    data = dataclasses.asdict(config)
    data["error_statuses"] = list(config.error_statuses)
    data["paths"] = list(config.paths) if config.paths is not None else None
    return data


def apply_changes(config: FaultConfig, changes: dict[str, Any]) -> FaultConfig:
    """Return `config` with the JSON `changes` applied; raises ValueError on a bad field or value."""
    updates: dict[str, Any] = {}
    for name, value in changes.items():
        parser = _PARSERS.get(name)
        if parser is None:
            raise ValueError(f"unknown fault setting {name!r}; known: {', '.join(_PARSERS)}")
        updates[name] = parser(name, value)
    return dataclasses.replace(config, **updates)


def _number(name: str, value: Any) -> float:
    """A non-negative number."""
    if type(value) not in (int, float) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def _probability(name: str, value: Any) -> float:
    """A number in [0, 1]."""
    if type(value) not in (int, float) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a probability between 0 and 1, got {value!r}")
    return float(value)


def _boolean(name: str, value: Any) -> bool:
    """A JSON boolean."""
    if type(value) is not bool:
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _statuses(name: str, value: Any) -> tuple[int, ...]:
    """A non-empty list of 5xx statuses."""
    if type(value) is not list or not value or not all(type(v) is int and 500 <= v <= 599 for v in value):
        raise ValueError(f"{name} must be a non-empty list of 5xx statuses, got {value!r}")
    return tuple(value)


def _lost_mode(name: str, value: Any) -> str:
    """One of LOST_MODES (a JSON number 502 is taken as "502")."""
    text = str(value) if type(value) in (int, str) else None
    if text not in LOST_MODES:
        raise ValueError(f"{name} must be one of {', '.join(LOST_MODES)}, got {value!r}")
    return text


def _retry_after(name: str, value: Any) -> int:
    """Whole seconds, zero or more."""
    if type(value) is not int or value < 0:
        raise ValueError(f"{name} must be a non-negative integer of seconds, got {value!r}")
    return value


def _paths(name: str, value: Any) -> tuple[str, ...] | None:
    """None, or a list of path prefixes starting with "/"."""
    if value is None:
        return None
    if type(value) is not list or not all(type(v) is str and v.startswith("/") for v in value):
        raise ValueError(f'{name} must be null or a list of path prefixes like "/data/invoices"')
    return tuple(value)


def _seed(name: str, value: Any) -> int | None:
    """None or an integer."""
    if value is not None and type(value) is not int:
        raise ValueError(f"{name} must be null or an integer, got {value!r}")
    return value


_PARSERS = {
    "latency_ms": _number,
    "latency_per_row_ms": _number,
    "jitter_ms": _number,
    "error_rate": _probability,
    "error_statuses": _statuses,
    "lost_rate": _probability,
    "lost_mode": _lost_mode,
    "hang_rate": _probability,
    "hang_seconds": _number,
    "outage": _boolean,
    "throttle_rate": _probability,
    "throttle_retry_after": _retry_after,
    "paths": _paths,
    "seed": _seed,
}
