"""Request pacing for a check: the run's shared Redis budget when there is a broker, else local."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from backfill.settings import Settings

# Longest single wait for a pacing slot before asking again (the shared limiter's max_wait).
MAX_PACING_WAIT = 5.0


class Pacer(Protocol):
    """Waits before each request so the check stays within GROWPANEL_MAX_RPS."""

    def wait(self) -> None:
        """Block until the next request may go out."""

    def pause(self, seconds: float) -> None:
        """Hold requests back for `seconds` (after a 429)."""

    def close(self) -> None:
        """Release what the pacer holds."""


class LocalPacer:
    """One request every 1/max_rps seconds in this process; a 429 pause delays the next slot."""

    def __init__(self, max_rps: float | None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / max_rps if max_rps else 0.0
        self.sleep = sleep
        self.next_at = 0.0

    def wait(self) -> None:
        """Sleep until this request's slot."""
        now = time.monotonic()
        if self.next_at > now:
            self.sleep(self.next_at - now)
            now = self.next_at
        self.next_at = now + self.interval

    def pause(self, seconds: float) -> None:
        """Push the next slot `seconds` away."""
        self.next_at = max(self.next_at, time.monotonic() + seconds)

    def close(self) -> None:
        """Nothing to release."""


class SharedPacer:
    """The run's GCRA budget in Redis, shared with its workers (so a check during a run adds no load)."""

    def __init__(self, broker_url: str, max_rps: float | None, run_id: int, sleep: Callable[[float], None] = time.sleep):
        import redis

        from backfill.ratelimit import SharedRateLimiter

        self.client = redis.Redis.from_url(broker_url, socket_connect_timeout=5, socket_timeout=10)
        self.limiter = SharedRateLimiter(self.client, max_rps)
        self.run_id = run_id
        self.sleep = sleep

    def wait(self) -> None:
        """Reserve the next shared slot and sleep until it."""
        while True:
            reserved, wait = self.limiter.acquire(self.run_id, MAX_PACING_WAIT)
            if wait > 0:
                self.sleep(wait)
            if reserved:
                return

    def pause(self, seconds: float) -> None:
        """Pause every worker of the run as well: the 429 was for the key they share."""
        self.limiter.pause(self.run_id, seconds)

    def close(self) -> None:
        """Close the Redis connection."""
        self.client.close()


def make_pacer(settings: Settings, run_id: int) -> tuple[Pacer, str | None]:
    """The pacer for these settings, and a warning when the shared one could not be used."""
    if settings.growpanel_max_rps is None:
        return LocalPacer(None), None
    if settings.celery_broker_url:
        import redis

        try:
            pacer = SharedPacer(settings.celery_broker_url, settings.growpanel_max_rps, run_id)
            pacer.client.ping()
            return pacer, None
        except (redis.RedisError, ValueError) as exc:
            return LocalPacer(settings.growpanel_max_rps), (
                f"the broker does not answer ({type(exc).__name__}), so GROWPANEL_MAX_RPS is kept by this "
                "process alone"
            )
    return LocalPacer(settings.growpanel_max_rps), None
