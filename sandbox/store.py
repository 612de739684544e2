"""In-memory storage of plans, customers and invoices per data source, with upsert and listings."""

from __future__ import annotations

import bisect
import hashlib
from typing import Any, Literal

import orjson

from sandbox.config import StoreMode

Kind = Literal["plans", "customers", "invoices"]
KINDS: tuple[Kind, ...] = ("plans", "customers", "invoices")
Status = Literal["inserted", "updated", "unchanged"]


class SourceData:
    """The objects of one data source: per kind, id -> stored object (or digest)."""

    __slots__ = ("tables", "_sorted_ids")

    def __init__(self) -> None:
        """Start empty."""
        self.tables: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        # Sorted ids per kind for listings, rebuilt lazily after an insert (updates keep the ids).
        self._sorted_ids: dict[str, list[str] | None] = {kind: None for kind in KINDS}

    def sorted_ids(self, kind: str) -> list[str]:
        """The ids of one kind in ascending order."""
        ids = self._sorted_ids[kind]
        if ids is None:
            ids = sorted(self.tables[kind])
            self._sorted_ids[kind] = ids
        return ids

    def forget_order(self, kind: str) -> None:
        """Mark the sorted ids of a kind as stale."""
        self._sorted_ids[kind] = None


class Store:
    """Every data source's objects, kept whole or as digests depending on the mode."""

    def __init__(self, mode: StoreMode) -> None:
        """Start empty in the given mode."""
        self.mode = mode
        self._digest = mode is StoreMode.DIGEST
        self._sources: dict[str, SourceData] = {}

    def source(self, data_source: str) -> SourceData:
        """The data of one data source, created empty on first use."""
        data = self._sources.get(data_source)
        if data is None:
            data = self._sources[data_source] = SourceData()
        return data

    def upsert(self, data: SourceData, kind: str, obj: dict[str, Any]) -> Status:
        """Store one validated object; say whether it was new, changed or the same."""
        table = data.tables[kind]
        key = obj["id"]
        value: Any = _digest(obj) if self._digest else obj
        old = table.get(key)
        if old is None:
            table[key] = value
            data.forget_order(kind)
            return "inserted"
        if old == value and (self._digest or _same_variables(old, value)):
            return "unchanged"
        table[key] = value
        return "updated"

    def table(self, data_source: str, kind: str) -> dict[str, Any]:
        """id -> stored object of one kind (digests in digest mode); read-only for callers."""
        data = self._sources.get(data_source)
        return data.tables[kind] if data is not None else {}

    def drop(self, data_source: str) -> None:
        """Forget one data source's objects."""
        self._sources.pop(data_source, None)

    def clear(self) -> None:
        """Forget everything."""
        self._sources.clear()

    def data_sources(self) -> list[str]:
        """The data sources that have (or had) objects, sorted."""
        return sorted(self._sources)

    def listing(
        self, data_source: str, kind: str, limit: int, offset: int, after: str | None
    ) -> tuple[int, list[Any]]:
        """A page of one kind ordered by id: (total count, objects), paged by offset or after-id."""
        data = self._sources.get(data_source)
        if data is None:
            return 0, []
        ids = data.sorted_ids(kind)
        start = bisect.bisect_right(ids, after) if after is not None else 0
        start += offset
        table = data.tables[kind]
        return len(ids), [self._shown(key, table[key]) for key in ids[start : start + limit]]

    def ledger(self, data_source: str | None = None) -> dict[str, dict[str, list[Any]]]:
        """Every stored object by data source and kind, ordered by id (ids only in digest mode)."""
        names = [data_source] if data_source is not None else self.data_sources()
        result: dict[str, dict[str, list[Any]]] = {}
        for name in names:
            data = self._sources.get(name)
            if data is None:
                continue
            result[name] = {
                kind: (
                    list(data.sorted_ids(kind))
                    if self._digest
                    else [data.tables[kind][key] for key in data.sorted_ids(kind)]
                )
                for kind in KINDS
            }
        return result

    def _shown(self, key: str, value: Any) -> Any:
        """How a stored value appears in a listing."""
        if self._digest:
            return {"id": key, "digest": value.hex()}
        # The SDK's listed plan requires `external_id`, the object's id in its source.
        return {**value, "external_id": key}


def _same_variables(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether custom_variables match exactly: == alone takes 1, 1.0 and true for the same."""
    variables = new.get("custom_variables")
    if not variables:
        return True
    option = orjson.OPT_SORT_KEYS
    return orjson.dumps(old["custom_variables"], option=option) == orjson.dumps(variables, option=option)


def _digest(obj: dict[str, Any]) -> bytes:
    """A 16-byte digest of an object's content, independent of key order."""
    return hashlib.blake2b(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()
