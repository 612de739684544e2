"""The one exception routes raise to answer with an `{"error": ...}` body."""

from __future__ import annotations


class ApiError(Exception):
    """An HTTP error answer: status, human message and extra headers (e.g. Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        """Keep what the error handler needs to answer."""
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
