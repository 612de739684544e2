"""Why a check could not complete (exit status 2)."""

from __future__ import annotations

from backfill.errors import BackfillError


class CheckIncomplete(BackfillError):
    """The comparison could not be finished: the API, a listing or the source failed."""
