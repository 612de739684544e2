"""Reading a whole raw listing, `GET /data/{kind}?source=DS&limit=N[&offset=K]`, by the best strategy.

The spec documents only `source` and `limit`; the sandbox also takes `offset`. Strategies, in order:

- **offset paging**: pages of `limit` rows at offsets 0, N, 2N, ... until an empty page or `count`;
- **single request**: when the second page repeats the first (the API ignores `offset`), one request
  with `limit` = the announced `count` and no offset, accepted when it answers every row.

When neither can read every row (no `count` to size the single request, a `limit` the API refuses or
caps below `count`) the check stops (exit 2) instead of counting rows twice or missing some.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from backfill.api import ListingPage
from console.verify.errors import CheckIncomplete
from console.verify.remote import RemoteApi

PAGE_SIZE = 1000
OFFSET_PAGING = "offset paging"
SINGLE_REQUEST = "single request (limit = count)"


@dataclass
class ListingStats:
    """What reading saw: requests, rows, the `count`s the API announced and the strategy that worked."""

    pages: int = 0
    rows: int = 0
    announced: list[int] = field(default_factory=list)
    strategy: str = OFFSET_PAGING

    def to_json(self) -> dict[str, Any]:
        """This listing's part of the report's `listings`."""
        return {"strategy": self.strategy, "requests": self.pages, "rows": self.rows}


def listing_pages(api: RemoteApi, kind: str, data_source: str, stats: ListingStats, page_size: int = PAGE_SIZE) -> Iterator[list[dict[str, Any]]]:
    """Every row of one kind's listing, a page at a time, in the order the API gives them."""
    path = f"/data/{kind}"
    first = _get(api, kind, data_source, page_size, 0, stats)
    if not first.items or (first.count is not None and len(first.items) >= first.count):
        yield from _counted(first.items, stats)
        return
    # The first page is held back until the second shows whether `offset` is honoured.
    second = _get(api, kind, data_source, page_size, len(first.items), stats)
    previous = _ids_digest(first.items)
    if second.items and _ids_digest(second.items) == previous:
        if first.count is None and len(first.items) < page_size:
            # Fewer rows than asked for: that first page was the whole listing.
            yield from _counted(first.items, stats)
            return
        yield from _counted(_single_request(api, kind, data_source, first, stats), stats)
        return
    yield from _counted(first.items, stats)
    offset = len(first.items)
    page = second
    while True:
        if not page.items:
            return
        fingerprint = _ids_digest(page.items)
        if fingerprint == previous:
            raise CheckIncomplete(
                f"{path} answered the same {len(page.items)} rows for offset {offset - len(page.items)} and {offset}: "
                "the listing moved or stopped honouring `offset` while it was read"
            )
        previous = fingerprint
        yield from _counted(page.items, stats)
        offset += len(page.items)
        if page.count is not None and offset >= page.count:
            return
        page = _get(api, kind, data_source, page_size, offset, stats)


def _single_request(api: RemoteApi, kind: str, data_source: str, first: ListingPage, stats: ListingStats) -> list[dict[str, Any]]:
    """The whole listing in one request of `limit` = count, or CheckIncomplete saying why that cannot work."""
    path = f"/data/{kind}"
    stats.strategy = SINGLE_REQUEST
    ignores = f"{path} ignores `offset` (the second page repeated the first)"
    if first.count is None:
        raise CheckIncomplete(f"{ignores} and announces no `count`, so no single request can be sized to read every row")
    wanted = first.count
    for _ in range(2):
        try:
            whole = _get(api, kind, data_source, wanted, None, stats)
        except CheckIncomplete as exc:
            raise CheckIncomplete(f"{ignores}, and one request for all {wanted} rows failed: {exc}") from None
        if whole.count is not None and whole.count > wanted:
            wanted = whole.count  # rows arrived meanwhile: ask once more for all of them
            continue
        if len(whole.items) < (whole.count if whole.count is not None else wanted):
            raise CheckIncomplete(
                f"{ignores}, and one request with limit={wanted} answered {len(whole.items)} of "
                f"{whole.count if whole.count is not None else wanted} rows: the API caps `limit`, so no strategy reads every row"
            )
        return whole.items
    raise CheckIncomplete(f"{ignores}, and its count kept growing while it was read ({first.count} -> {wanted})")


def _get(api: RemoteApi, kind: str, data_source: str, limit: int, offset: int | None, stats: ListingStats) -> ListingPage:
    page = api.listing(kind, data_source, limit, offset)
    stats.pages += 1
    if page.count is not None:
        stats.announced.append(page.count)
    if page.items and set(page.items[0]) == {"id", "digest"}:
        raise CheckIncomplete(f"GET /data/{kind} lists content digests, not rows (a sandbox started with --store digest)")
    return page


def _counted(items: list[dict[str, Any]], stats: ListingStats) -> Iterator[list[dict[str, Any]]]:
    if items:
        stats.rows += len(items)
        yield items


def _ids_digest(items: list[dict[str, Any]]) -> bytes:
    """A digest of a page's ids, in order: equal for a page served twice."""
    return hashlib.blake2b(orjson.dumps([item.get("id") for item in items]), digest_size=16).digest()
