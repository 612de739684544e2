"""Matching the API's per-row results to the rows we sent."""

from __future__ import annotations

from typing import Any

from backfill.manifest import ManifestEntry
from models.states import ACCEPTED_OUTCOMES

# (outcome, raw export_status, message)
RowResult = tuple[str, str | None, str | None]
# The common answers, built once: most batches are a list of these.
_PLAIN = {status: (status, status, None) for status in ACCEPTED_OUTCOMES}


def _one(entry_id: str, result: Any, position: int) -> RowResult:
    if not isinstance(result, dict):
        return "error", None, f"result #{position} is not an object: {str(result)[:100]}"
    status = result.get("export_status")
    if status == "error":
        message = result.get("export_error")
        return "error", "error", str(message) if message not in (None, "") else "error (the API gave no message)"
    if isinstance(status, str) and status in ACCEPTED_OUTCOMES:
        return status, status, None
    if isinstance(status, str) and status:
        # The SDK's models allow other statuses; anything but `error` means the row was taken.
        return "success", status, f"accepted with export_status {status!r}"
    return "error", None, f"result #{position} has no export_status"


def match_results(entries: list[ManifestEntry], results: list[Any]) -> list[RowResult]:
    """One result per sent row, by position, checked against the echoed id.

    If the positions do not line up but every sent id is answered exactly once, results are matched by
    id instead; rows left without an answer are errors that say so.
    """
    ids = [entry.id for entry in entries]
    echoed = [r.get("id") if isinstance(r, dict) else None for r in results]
    # The usual answer echoes every id as sent: one list comparison in C instead of a check per row.
    aligned = echoed == ids or (
        len(results) == len(entries) and all(e == i or e is None or str(e) == i for e, i in zip(echoed, ids))
    )
    if aligned:
        plain = _PLAIN
        out = []
        for n, (i, r) in enumerate(zip(ids, results)):
            status = r.get("export_status") if type(r) is dict else None
            hit = plain.get(status) if type(status) is str else None
            out.append(hit or _one(i, r, n))
        return out
    by_id: dict[str, list[int]] = {}
    for n, e in enumerate(echoed):
        if e is not None:
            by_id.setdefault(str(e), []).append(n)
    if all(len(by_id.get(i, [])) == 1 for i in ids):
        return [_one(i, results[by_id[i][0]], by_id[i][0]) for i in ids]
    out: list[RowResult] = []
    for n, i in enumerate(ids):
        if n >= len(results):
            out.append(("error", None, f"the API answered {len(results)} results for {len(ids)} rows; none for this row"))
            continue
        e = echoed[n]
        if e is not None and str(e) != i:
            out.append(("error", None, f"result #{n} answers id {str(e)[:100]!r}, not this row"))
            continue
        out.append(_one(i, results[n], n))
    return out
