"""Turn one source row into the API's JSON object, or into the reasons it cannot be sent.

A `RowBuilder` is compiled once per stage from the query's column names and types and the entity's
spec (`producers.entities`), so the per-row work is a loop over precomputed converters
(`producers.converters`), then the entity's finishing rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from producers.converters import Bad, show
from producers.entities import ENTITIES, PayloadOptions

# (external id or None, the object to send or None, the problems, customer id, plan id)
Built = tuple[str | None, dict[str, Any] | None, list[str] | None, str | None, str | None]


class RowBuilder:
    """Compiled per stage: converts a source row tuple into a payload or a list of problems."""

    def __init__(self, entity: str, columns: Sequence[str], type_names: Sequence[str], options: PayloadOptions):
        self.entity = entity
        self.spec = spec = ENTITIES[entity]
        self.options = options
        plan: list[tuple[int, str, Callable[[Any], Any]]] = []
        for index, (name, type_name) in enumerate(zip(columns, type_names)):
            if name.startswith("__gp_"):
                continue
            plan.append((index, name, spec.converter(name, type_name)))
        self._plan = tuple(plan)
        # The source may name the amount either way; the payload uses the configured name(s).
        self._alias = spec.alias if spec.alias is not None and spec.alias[0] in columns and spec.alias[1] not in columns else None
        self._required = spec.required_values
        self._finish = spec.finish

    def build(self, row: Sequence[Any]) -> Built:
        """Convert one row."""
        out: dict[str, Any] = {}
        problems: list[str] | None = None
        for index, name, convert in self._plan:
            value = row[index]
            if value is None or value == "":
                continue
            try:
                out[name] = convert(value)
            except Bad as bad:
                if problems is None:
                    problems = []
                problems.append(f"{name} {bad}")
        alias = self._alias
        if alias is not None and alias[0] in out:
            out[alias[1]] = out.pop(alias[0])
        for name in self._required:
            if name not in out:
                shown = alias[0] if alias is not None and name == alias[1] else name
                if not (problems and any(p.startswith(shown + " ") for p in problems)):
                    problems = (problems or []) + [f"{shown} is required"]
        problems = self._finish(out, problems, self.options)
        ext_id = out.get("id")
        out["data_source"] = self.options.data_source
        return ext_id, (None if problems else out), problems, out.get("customer_id"), out.get("plan_id")


__all__ = ["Built", "PayloadOptions", "RowBuilder", "show"]
