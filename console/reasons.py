"""Grouping rejected rows by reason: messages without the values that differ from row to row."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from models.states import REJECTED_OUTCOMES, sql_list

_GOT = re.compile(r",? got .*$")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_HTTP = re.compile(r"^HTTP \d{3}\b")
_TOKEN_WITH_DIGIT = re.compile(r"\b[\w.@+-]*\d[\w.@+-]*\b")
_REJECTED_SQL = sql_list(REJECTED_OUTCOMES)
_REJECTED = re.compile(r"^(customer|plan) .+? was rejected in this run \((\w+): .*\)$")


def reason_of(outcome: str, message: str | None) -> list[str]:
    """The reasons of one row (a row with several problems has several)."""
    if not message:
        return [outcome]
    if outcome == "skipped":
        out = []
        for part in message.split("; "):
            m = _REJECTED.match(part)
            out.append(f"{m.group(1)} was rejected in this run ({m.group(2)})" if m else _generic(part))
        return out
    if outcome == "invalid":
        return [_GOT.sub("", part).strip() for part in message.split("; ")]
    return [_generic(message)]


def _generic(message: str) -> str:
    prefix = ""
    m = _HTTP.match(message)
    if m:
        prefix, message = message[: m.end()], message[m.end() :]
    text = _QUOTED.sub("<value>", message[:300])
    return prefix + _TOKEN_WITH_DIGIT.sub("<id>", text)


def rejected_reasons(conn: Any, run_id: int) -> list[Reason]:
    """The run's rejected rows (streamed from the audit) grouped by reason, most frequent first."""
    from sqlalchemy import text

    rows = conn.execution_options(stream_results=True, yield_per=5000).execute(
        text(f"SELECT entity, external_id, outcome, message FROM audit WHERE run_id = :r AND outcome IN {_REJECTED_SQL}"),
        {"r": run_id},
    )
    return group_reasons((r.entity, r.external_id, r.outcome, r.message) for r in rows)


@dataclass
class Reason:
    """One reason with its count and a few example ids."""

    entity: str
    outcome: str
    reason: str
    count: int = 0
    examples: list[str] = field(default_factory=list)


def group_reasons(rows: Iterable[tuple[str, str, str, str | None]], examples: int = 3) -> list[Reason]:
    """(entity, id, outcome, message) rows -> reasons, most frequent first."""
    groups: dict[tuple[str, str, str], Reason] = {}
    for entity, row_id, outcome, message in rows:
        for reason in reason_of(outcome, message):
            key = (entity, outcome, reason)
            group = groups.get(key)
            if group is None:
                group = groups[key] = Reason(entity, outcome, reason)
            group.count += 1
            if len(group.examples) < examples:
                group.examples.append(row_id)
    return sorted(groups.values(), key=lambda g: (-g.count, g.entity, g.reason))
