"""The sorted merge of the source and GrowPanel sides of one entity into counts and examples.

Both streams come in code point order of the id (the source ordered by `id::text COLLATE "C"`, the
spilled listing likewise), so one pass with one row of each side in hand compares everything.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from console.verify.compare import differences
from console.verify.errors import CheckIncomplete
from console.verify.report import EntityResult
from console.verify.source import SourceRow
from console.verify.spill import StateRow


def merge_entity(result: EntityResult, source: Iterator[SourceRow], state: Iterator[StateRow]) -> EntityResult:
    """Walk both sides once, classifying every id as matching, missing, expected missing, extra or different."""
    entity = result.entity
    s = _next_source(source, None)
    g = next(state, None)
    while s is not None or g is not None:
        if s is not None and s.id is None:
            # Rows without an id come first (NULLS FIRST) and can never be sent.
            result.source += 1
            result.record("expected_missing", {"id": None, "outcome": "invalid", "message": s.problem})
            s = _next_source(source, s)
            continue
        if g is not None and (s is None or g.id < s.id):  # type: ignore[operator]
            _state_only(result, g)
            g = next(state, None)
        elif s is not None and (g is None or s.id < g.id):  # type: ignore[operator]
            result.source += 1
            _source_only(result, s, None)
            s = _next_source(source, s)
        else:
            assert s is not None and g is not None
            result.source += 1
            if g.stored is None:
                _source_only(result, s, g)
            else:
                result.growpanel += 1
                _both(result, entity, s, g)
            s = _next_source(source, s)
            g = next(state, None)
    return result


def _next_source(source: Iterator[SourceRow], previous: SourceRow | None) -> SourceRow | None:
    """The next source row, checking that ids really come in code point order."""
    row = next(source, None)
    if row is not None and previous is not None and previous.id is not None and row.id is not None:
        if row.id <= previous.id:
            raise CheckIncomplete(
                f"the source's ids do not sort as text the way they are sent ({previous.id!r} came before "
                f"{row.id!r}): cast the id column to text in the mapping query"
            )
    return row


def _state_only(result: EntityResult, g: StateRow) -> None:
    """An id on the state side only: a stored object the source lacks (or an old rejection: nothing)."""
    if g.stored is None:
        # Rejected in the run, no longer in the source, not in GrowPanel: consistent.
        return
    result.growpanel += 1
    result.record("extra", {"id": g.id})


def _source_only(result: EntityResult, s: SourceRow, g: StateRow | None) -> None:
    """A source id GrowPanel does not list: expected when the run rejected it, a surprise otherwise."""
    if g is not None and g.outcome is not None:
        result.record("expected_missing", {"id": s.id, "outcome": g.outcome, "message": g.message})
        return
    example: dict[str, Any] = {"id": s.id}
    if s.problem is not None:
        example["reason"] = f"the source row cannot be sent: {s.problem}"
    result.record("missing", example)


def _both(result: EntityResult, entity: str, s: SourceRow, g: StateRow) -> None:
    """An id on both sides: compare the payload we would send with what GrowPanel stores."""
    assert g.stored is not None
    if s.payload is None:
        result.record("different", {"id": s.id, "fields": {}, "reason": f"the source row cannot be sent: {s.problem}"})
        return
    if g.variants > 1:
        result.record("different", {"id": s.id, "fields": {}, "reason": f"GrowPanel listed it {g.copies} times with different content"})
        return
    found = differences(entity, s.payload, g.stored)
    if found:
        result.record("different", {"id": s.id, "fields": found})
    else:
        result.matching += 1
