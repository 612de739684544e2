"""A batch's manifest: one entry per audit row, stored as a JSON array of arrays.

The stored form is positional (`[id, hash, outcome, message, customer_id, plan_id]`, compact for
batches of thousands of rows); code reads it through `ManifestEntry`'s names.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson


class ManifestEntry(NamedTuple):
    """One row of a batch, as the producer decided it."""

    id: str
    # blake2b-128 of the payload body (hex), None when the row is not sent.
    hash: str | None
    # A local outcome decided by the producer (`invalid`), or None.
    outcome: str | None
    message: str | None
    customer_id: str | None
    plan_id: str | None

    @property
    def sendable(self) -> bool:
        """Whether the row has a payload body in the batch."""
        return self.hash is not None

    @property
    def hash_bytes(self) -> bytes | None:
        """The payload hash as bytes (as the audit stores it)."""
        return bytes.fromhex(self.hash) if self.hash else None

    def to_json(self) -> list[Any]:
        """The stored form."""
        return list(self)

    @classmethod
    def from_json(cls, value: list[Any]) -> ManifestEntry:
        """From the stored form."""
        return cls._make(value)


def dump_manifest(entries: list[ManifestEntry]) -> bytes:
    """The stored JSON of a manifest."""
    return orjson.dumps([list(e) for e in entries])


def load_manifest(data: bytes | str) -> list[ManifestEntry]:
    """A stored manifest, typed."""
    make = ManifestEntry._make
    return [make(e) for e in orjson.loads(data)]
