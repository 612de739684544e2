"""A request rate shared by every worker of a run, kept in Redis (GCRA), plus a shared pause after a 429.

Celery's own `rate_limit` is per worker; a fleet needs one budget. Each call reserves the next free
slot (or, if the wait would be longer than `max_wait`, reserves nothing and says how long to wait, so
the caller can re-queue instead of holding a worker slot). Losing these keys (Redis restarted empty)
only forgets the pacing of the last second: nothing that matters lives here.
"""

from __future__ import annotations

from typing import Any

import redis

_ACQUIRE = """
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + tonumber(now_t[2]) / 1000
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local pause_until = tonumber(redis.call('GET', KEYS[2]) or '0')
local start = now
if pause_until > start then start = pause_until end
if interval <= 0 then
  return tostring(start - now)
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < start then tat = start end
local wait = tat - now
if wait > max_wait then
  return tostring(wait)
end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil(wait + interval) + 1000)
return tostring(wait)
"""

_PAUSE = """
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + tonumber(now_t[2]) / 1000
local until_ms = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current then
  redis.call('SET', KEYS[1], tostring(until_ms), 'PX', math.ceil(tonumber(ARGV[1])) + 1000)
end
return 1
"""


class SharedRateLimiter:
    """Pacing and 429 pauses for one run, across processes and machines."""

    def __init__(self, client: redis.Redis, max_rps: float | None) -> None:
        self.client = client
        self.interval_ms = 1000.0 / max_rps if max_rps else 0.0
        self._acquire: Any = client.register_script(_ACQUIRE)
        self._pause: Any = client.register_script(_PAUSE)

    @staticmethod
    def _keys(run_id: int) -> list[str]:
        return [f"growpanel-backfill:rate:{run_id}", f"growpanel-backfill:pause:{run_id}"]

    def acquire(self, run_id: int, max_wait: float) -> tuple[bool, float]:
        """(reserved, seconds to wait). Not reserved means: wait that long, then ask again."""
        wait_ms = float(self._acquire(keys=self._keys(run_id), args=[self.interval_ms, max_wait * 1000.0]))
        reserved = wait_ms <= max_wait * 1000.0
        return reserved, max(0.0, wait_ms / 1000.0)

    def pause(self, run_id: int, seconds: float) -> None:
        """Hold every worker of the run back for `seconds` (after a 429)."""
        self._pause(keys=self._keys(run_id)[1:], args=[seconds * 1000.0])
