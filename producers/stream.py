"""One stage's source rows turned into packer input: built, filtered, and in the order they are sent.

What is filtered: rows outside a retry's targets (matched by the normalised id, the one the audit
holds); after a resume, rows already in committed batches (`producers.resume`); and invoices the run
cannot send in order or at all, which get a `skipped` outcome with the reason instead of a request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from backfill.manifest import ManifestEntry
from producers.entities import EntitySpec
from producers.resume import Batched, instant_key

_DUMPS = orjson.dumps
PLACEHOLDER = "(no id: source row {})"


@dataclass
class Item:
    """One stream row ready for the packer."""

    entry: ManifestEntry | None
    body: bytes | None
    group: str | None
    group_size: int
    order: tuple[Any, ...] = ()


@dataclass
class Filters:
    """What a stage's rows are checked against before they are packed."""

    targets: set[str] | None = None
    batched: Batched | None = None
    tail_group: str | None = None
    tail_latest: str | None = None
    # parent entity -> ids the current snapshot has but the run does not (read before a resume).
    missing_parents: dict[str, set[str]] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Whether any row may be left out."""
        return self.targets is not None or self.batched is not None


def build_entry(
    build: Callable[[Any], Any], row: tuple[Any, ...], dups_i: int, rank_i: int, ordinal: int
) -> tuple[ManifestEntry | None, bytes | None, dict[str, Any] | None]:
    """One manifest entry, payload body and payload per row; None for the extra copies of a duplicated id."""
    dups = row[dups_i]
    if dups > 1 and row[rank_i] > 1:
        return None, None, None
    ext_id, payload, problems, customer_id, plan_id = build(row)
    if ext_id is None:
        # Real ids never start with "(no id: " (the id converter refuses them), so this cannot collide.
        ext_id = PLACEHOLDER.format(ordinal)
        problems = problems or ["id is required"]
    if dups > 1:
        return ManifestEntry(ext_id, None, "invalid", f"id appears {dups} times in the source", customer_id, plan_id), None, None
    if problems:
        return ManifestEntry(ext_id, None, "invalid", "; ".join(problems), customer_id, plan_id), None, None
    # The mapping fixes the key order, so the same row always gives the same bytes (and hash).
    body = _DUMPS(payload)
    return ManifestEntry(ext_id, hashlib.blake2b(body, digest_size=16).hexdigest(), None, None, customer_id, plan_id), body, payload


def _skip(entry: ManifestEntry, message: str) -> ManifestEntry:
    return entry._replace(hash=None, outcome="skipped", message=message)


class StageStream:
    """Turns fetched chunks into packer items, in send order."""

    def __init__(self, spec: EntitySpec, columns: list[str], type_names: list[str], build: Callable[[Any], Any],
                 dups_i: int, rank_i: int, group_i: int | None, filters: Filters) -> None:
        self.spec = spec
        self.build = build
        self.dups_i, self.rank_i, self.group_i = dups_i, rank_i, group_i
        self.cust_i = columns.index(spec.group_by) if spec.group_by else None
        self.filters = filters
        # Stream position in this snapshot: numbers the rows that have no id.
        self.ordinal = 0
        # Text dates do not sort as instants in SQL: such groups are sorted here, by the instant sent.
        order_by = spec.order_by
        self.sort_groups = bool(order_by) and order_by in columns and type_names[columns.index(order_by)] not in (
            "timestamptz", "timestamp", "date"
        )
        self._held: list[Item] = []

    def items(self, chunk: list[tuple[Any, ...]]) -> Iterator[Item]:
        """The chunk's rows that are to be packed, in order (a sorted group is held until it ends)."""
        built = []
        for row in chunk:
            self.ordinal += 1
            entry, body, payload = build_entry(self.build, row, self.dups_i, self.rank_i, self.ordinal)
            group = None
            if self.cust_i is not None:
                raw = row[self.cust_i]
                group = None if raw is None else (entry.customer_id if entry is not None and entry.customer_id is not None else str(raw))
            size = row[self.group_i] if self.group_i is not None else 0
            built.append((entry, body, payload, group, size))
        found_ids: set[str] = set()
        found_groups: set[str] = set()
        batched = self.filters.batched
        if batched is not None:
            found_ids, found_groups = batched.lookup(
                (e.id for e, *_ in built if e is not None), (g for *_, g, _ in built if g is not None)
            )
        for entry, body, payload, group, size in built:
            if entry is None:
                if self.filters.active:
                    continue
            else:
                if self.filters.targets is not None and entry.id not in self.filters.targets:
                    continue
                if entry.id in found_ids:
                    continue
                entry, body = self._dependency_checks(entry, body, payload, group, found_groups)
            item = Item(entry, body, group, size)
            if self.sort_groups:
                yield from self._hold(item, payload)
            else:
                yield item

    def _dependency_checks(self, entry: ManifestEntry, body: bytes | None, payload: dict[str, Any] | None,
                           group: str | None, found_groups: set[str]) -> tuple[ManifestEntry, bytes | None]:
        if entry.outcome is not None:
            return entry, body
        for column, parent in self.spec.parents:
            ref = getattr(entry, column)
            if ref is not None and ref in self.filters.missing_parents.get(parent, ()):
                return _skip(entry, (
                    f"{column} {ref} was added to the source after the run read its {parent}: "
                    "the next run sends it, with this row"
                )), None
        if group is not None and group in found_groups:
            if group != self.filters.tail_group:
                return _skip(entry, (
                    f"customer {group}'s invoices were already batched when this invoice appeared (it was added to the "
                    "source, or moved to this customer, after the run started): the next run sends it"
                )), None
            latest = self.filters.tail_latest
            when = None if payload is None else payload.get(self.spec.order_by or "")
            if latest is not None and isinstance(when, str) and instant_key(when) < instant_key(latest):
                return _skip(entry, (
                    f"dated {when}, before invoices of customer {group} already sent ({latest}): it was added or "
                    "changed after the run started; the next run sends it"
                )), None
        return entry, body

    def _hold(self, item: Item, payload: dict[str, Any] | None) -> Iterator[Item]:
        if self._held and self._held[0].group != item.group:
            yield from self.release()
        when = None if payload is None else payload.get(self.spec.order_by or "")
        # Rows that are not sent (no payload) go last; ties keep the id order.
        item.order = (0, *instant_key(when), item.entry.id if item.entry else "") if isinstance(when, str) else (1, "", "", "")
        self._held.append(item)

    def release(self) -> Iterator[Item]:
        """The held group, sorted by the instant sent (call at the end of the stream, too)."""
        held, self._held = self._held, []
        held.sort(key=lambda i: i.order)
        yield from held
