"""One source payload against one object GrowPanel stores, field by field.

Only the fields the payload has are compared (GrowPanel may add its own, like `external_id` or
timestamps), plus the fields with a documented default, so `billing_freq_count: 1` and an absent
`billing_freq_count` are the same. Dates compare as instants, numbers exactly, everything else by
type and value.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import orjson

from console.verify.instants import parse_instant
from producers.entities import DATE_FIELDS, ENTITIES

# data_source is what the listing was filtered by; external_id is how GrowPanel stores a plan's id.
_NOT_COMPARED = frozenset({"data_source"})
_ABSENT: Any = object()

Difference = dict[str, Any]
"""{"source": value or None, "growpanel": value or None} for one field."""


def differences(entity: str, payload: dict[str, Any], stored: dict[str, Any]) -> dict[str, Difference]:
    """Fields whose values differ, each with both sides (None for an absent value)."""
    spec = ENTITIES[entity]
    # The guide's documented defaults for the entity's optional fields.
    defaults = spec.compare_defaults
    src = _fold(payload, spec.alias)
    gp = _fold(stored, spec.alias)
    out: dict[str, Difference] = {}
    fields = [f for f in src if f not in _NOT_COMPARED]
    fields += [f for f in defaults if f not in src and f in gp]
    for name in fields:
        mine = _value(src, name, defaults)
        theirs = _value(gp, name, defaults)
        if name == "external_id" and theirs is _ABSENT:
            # Our stand-in keeps no external_id; the real API stores the plan id under it.
            continue
        if not same_value(name, mine, theirs):
            out[name] = {"source": _shown(mine), "growpanel": _shown(theirs)}
    return out


def _fold(row: dict[str, Any], alias: tuple[str, str] | None) -> dict[str, Any]:
    """An alias (`amount`, the SDK's name) folded into its field (`amount_cents`, the guide's), whichever a side uses."""
    if alias is None or alias[0] not in row:
        return row
    folded = dict(row)
    value = folded.pop(alias[0])
    folded.setdefault(alias[1], value)
    return folded


def _value(row: dict[str, Any], name: str, defaults: Any) -> Any:
    value = row.get(name)
    if value is None:
        return defaults.get(name, _ABSENT)
    return value


def _shown(value: Any) -> Any:
    return None if value is _ABSENT else value


def same_value(name: str, mine: Any, theirs: Any) -> bool:
    """Whether two values of field `name` are the same: instants, exact numbers, or equal JSON."""
    if mine is _ABSENT or theirs is _ABSENT:
        return mine is theirs
    if name in DATE_FIELDS and isinstance(mine, str) and isinstance(theirs, str):
        a, b = parse_instant(mine), parse_instant(theirs)
        if a is not None and b is not None:
            return a == b
        return mine == theirs
    if isinstance(mine, bool) or isinstance(theirs, bool):
        return type(mine) is type(theirs) and mine == theirs
    if isinstance(mine, (int, float)) and isinstance(theirs, (int, float)):
        # Exact: 9900 and 9900.0 are the same amount; 9900 and 9900.000001 are not.
        return _exact(mine) == _exact(theirs)
    if isinstance(mine, (dict, list)) or isinstance(theirs, (dict, list)):
        # Nested values (custom_variables) as canonical JSON: 1, 1.0 and true stay different.
        return _canonical(mine) == _canonical(theirs)
    return type(mine) is type(theirs) and mine == theirs


def _exact(number: int | float) -> Fraction | None:
    try:
        return Fraction(number)
    except (ValueError, OverflowError):
        return None


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
