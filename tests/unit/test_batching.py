"""Packing rows into batches, and resuming the packing from any committed batch."""

from __future__ import annotations

import random

from producers.batching import BatchDraft, Packer


def _stream(groups: list[int]) -> list[tuple[str, str, int]]:
    """(row id, customer, group size) in the order the stage query returns invoices."""
    rows = []
    for n, size in enumerate(groups):
        rows += [(f"c{n}-{k}", f"c{n}", size) for k in range(size)]
    return rows


def _pack(rows: list[tuple[str, str, int]], batch_size: int, start: int = 0, seq: int = 1, tail: str | None = None) -> list[BatchDraft]:
    packer = Packer(True, batch_size, seq, tail, position=start)
    out = []
    for row_id, customer, size in rows[start:]:
        draft = packer.add([row_id, "h", None, None, customer, None], b"{}", customer, size)
        if draft is not None:
            out.append(draft)
    last = packer.finish()
    if last is not None:
        out.append(last)
    return out


def _customers(draft: BatchDraft) -> set[str]:
    return {entry[4] for entry in draft.entries}


def test_small_customers_never_span_two_batches() -> None:
    rows = _stream([3, 4, 2, 5, 1, 4])
    drafts = _pack(rows, batch_size=6)
    seen: dict[str, int] = {}
    for draft in drafts:
        for customer in _customers(draft):
            assert customer not in seen, f"{customer} in two batches"
            seen[customer] = draft.seq
        assert not draft.chained
    # [c0] | [c1 c2] full | [c3 c4] full | [c5]
    assert [d.stream_end for d in drafts] == [3, 9, 15, 19]
    assert sum(len(d.entries) for d in drafts) == len(rows)


def test_a_customer_bigger_than_a_batch_becomes_a_chain() -> None:
    rows = _stream([2, 13, 2])
    drafts = _pack(rows, batch_size=5)
    # [c0] then c1 in 5+5+3 (each depending on the previous), then c2 fits after c1's tail.
    assert [len(d.entries) for d in drafts] == [2, 5, 5, 5]
    assert [d.chained for d in drafts] == [False, False, True, True]
    assert _customers(drafts[3]) == {"c1", "c2"}


def test_resuming_after_any_committed_batch_reproduces_the_same_batches() -> None:
    rng = random.Random(3)
    groups = [rng.choice([1, 1, 2, 3, 5, 8, 30]) for _ in range(60)]
    rows = _stream(groups)
    full = _pack(rows, batch_size=7)
    for k in range(len(full)):
        committed = full[: k + 1]
        last = committed[-1]
        resumed = _pack(rows, batch_size=7, start=last.stream_end, seq=last.seq + 1, tail=last.tail_customer)
        entries = [e[0] for d in committed + resumed for e in d.entries]
        assert entries == [r[0] for r in rows], f"resume after batch {last.seq} lost or repeated rows"
        assert [d.seq for d in committed + resumed] == list(range(1, len(committed) + len(resumed) + 1))
        # A resumed chain keeps depending on the committed batch of the same customer.
        if resumed and resumed[0].entries and resumed[0].entries[0][4] == last.tail_customer and len(last.entries) == 7:
            assert resumed[0].chained


def test_a_half_sent_customer_met_later_in_a_new_stream_continues_its_own_chain() -> None:
    # A resumed producer reads a changed source: the half-sent customer c9 now comes after c0 and c1.
    packer = Packer(True, 5, 10, "c9", position=100, tail_batch_id=777)
    rows = [("c0-0", "c0", 2), ("c0-1", "c0", 2), ("c9-7", "c9", 3), ("c9-8", "c9", 3), ("c9-9", "c9", 3), ("c1-0", "c1", 1)]
    drafts = [d for row_id, customer, size in rows if (d := packer.add([row_id, "h", None, None, customer, None], b"{}", customer, size))]
    last = packer.finish()
    drafts += [last] if last is not None else []
    # c9's rest starts a batch of its own that depends on c9's last committed batch, not on c0's batch;
    assert [(sorted(_customers(d)), d.chained, d.after) for d in drafts] == [
        (["c0"], False, None),
        (["c1", "c9"], True, 777),
    ]
    # other customers never depend on it.
    assert drafts[1].entries[0][0] == "c9-7"
