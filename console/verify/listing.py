"""Paging through a raw listing, `GET /data/{kind}?source=DS&limit=N&offset=K`.

The guide documents only `limit`; the sandbox also takes `offset`. A listing that ignores `offset`
answers the same page again, which would loop forever or count rows twice: two identical non-empty
pages in a row stop the check instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from console.verify.errors import CheckIncomplete
from console.verify.remote import RemoteApi

PAGE_SIZE = 1000


@dataclass
class ListingStats:
    """What paging saw: requests, rows, and the `count` the API announced."""

    pages: int = 0
    rows: int = 0
    announced: list[int] = field(default_factory=list)


def listing_pages(api: RemoteApi, kind: str, data_source: str, stats: ListingStats, page_size: int = PAGE_SIZE) -> Iterator[list[dict[str, Any]]]:
    """Every page of one kind's listing, in the order the API gives them."""
    path = f"/data/{kind}"
    offset = 0
    previous: bytes | None = None
    while True:
        body = api.get_json(path, {"source": data_source, "limit": page_size, "offset": offset})
        items, count = _page(body, path)
        stats.pages += 1
        if count is not None:
            stats.announced.append(count)
        if not items:
            return
        fingerprint = _ids_digest(items)
        if fingerprint == previous:
            raise CheckIncomplete(
                f"GET {path} answered the same {len(items)} rows for offset {offset - len(items)} and {offset}: "
                "this listing ignores `offset`, so it cannot be read past its first page"
            )
        previous = fingerprint
        stats.rows += len(items)
        yield items
        offset += len(items)
        if count is not None and offset >= count:
            return


def _page(body: Any, path: str) -> tuple[list[dict[str, Any]], int | None]:
    """The rows and the announced total of one answer `{"result": {"count": n, "list": [...]}}`."""
    result = body.get("result") if isinstance(body, dict) else None
    if isinstance(result, list):
        items, count = result, None
    elif isinstance(result, dict) and isinstance(result.get("list"), list):
        items = result["list"]
        count = result.get("count") if isinstance(result.get("count"), int) else None
    else:
        raise CheckIncomplete(f"GET {path} answered without a `result.list` of rows")
    if not all(isinstance(item, dict) for item in items):
        raise CheckIncomplete(f"GET {path} answered a list that holds something other than objects")
    if items and set(items[0]) == {"id", "digest"}:
        raise CheckIncomplete(f"GET {path} lists content digests, not rows (a sandbox started with --store digest)")
    return items, count


def _ids_digest(items: list[dict[str, Any]]) -> bytes:
    """A digest of a page's ids, in order: equal for a page served twice."""
    return hashlib.blake2b(orjson.dumps([item.get("id") for item in items]), digest_size=16).digest()
