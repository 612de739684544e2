"""A token-bucket rate limiter per API key."""

from __future__ import annotations

import math
import time


class RateLimiter:
    """`rate` requests per second per key, bursts up to max(1, rate); None means unlimited."""

    def __init__(self, rate: float | None) -> None:
        """Start with full buckets."""
        self.rate = rate
        self._buckets: dict[str, tuple[float, float]] = {}
        """key -> (tokens, monotonic time they were counted)."""

    def set_rate(self, rate: float | None) -> None:
        """Change the rate; every bucket starts full again."""
        if rate is not None and rate <= 0:
            raise ValueError("rate_limit must be positive or null")
        self.rate = rate
        self._buckets.clear()

    def acquire(self, key: str) -> int:
        """Take one token for `key`: 0 when allowed, else the whole seconds to wait (at least 1)."""
        rate = self.rate
        if rate is None:
            return 0
        capacity = max(1.0, rate)
        now = time.monotonic()
        tokens, then = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + (now - then) * rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0
        self._buckets[key] = (tokens, now)
        # Rounded up so a client that waits Retry-After seconds finds a token.
        return max(1, math.ceil((1.0 - tokens) / rate))

    def clear(self) -> None:
        """Refill every bucket."""
        self._buckets.clear()
