"""A run's life: create, pause, cancel, reopen, retry, finish, and its producer lease: the one writer of
`runs` and `run_stages`.

The database row lock on the run orders these. Publishing (a producer to restart, batches to queue)
is the caller's: `backfill.dispatch.resume_run` wraps `reopen_run` with it. `creation` needs psycopg
alone (so that `start` does not import SQLAlchemy); `life` has the other transitions. Each name is
imported from its module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_CREATION = frozenset({"RunOptions", "active_message", "active_run", "active_run_on", "create_run"})


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    module = importlib.import_module("backfill.runs.creation" if name in _CREATION else "backfill.runs.life")
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module 'backfill.runs' has no attribute {name!r}") from None
