"""Packing normalised rows into batches.

Plans and customers are cut every BATCH_SIZE rows. Invoices (an entity with a `group_by`) arrive grouped
by customer (see `producers.source.stage_query`): a customer's invoices are kept whole inside one batch whenever they
fit, so different batches never share a customer and can be posted in parallel. A customer with more
invoices than a batch holds gets a chain of batches, each one depending on the one before it, which
keeps that customer's invoices in chronological order across requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backfill.manifest import ManifestEntry


@dataclass
class BatchDraft:
    """A batch ready to be written: its payload, manifest and position in the stream."""

    seq: int
    stream_rows: int = 0
    # Stream position after this batch's last row: a resumed producer skips exactly this many rows.
    stream_end: int = 0
    entries: list[ManifestEntry] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    # True when this batch continues a customer whose earlier invoices are in the previous batch.
    chained: bool = False
    tail_customer: str | None = None
    # A resumed producer's first batch of the customer its predecessor left half-sent: that batch's id.
    after: int | None = None

    def payload(self) -> bytes | None:
        """The JSON array to POST (None when no row of the batch can be sent)."""
        if not self.bodies:
            return None
        return b"[" + b",".join(self.bodies) + b"]"


class Packer:
    """Accumulates rows into drafts; `add` and `finish` return the drafts that are complete."""

    def __init__(
        self,
        grouped: bool,
        batch_size: int,
        next_seq: int,
        tail_customer: str | None,
        position: int = 0,
        tail_batch_id: int | None = None,
    ) -> None:
        self.grouped = grouped
        self.batch_size = batch_size
        self.next_seq = next_seq
        self.position = position
        self._group_key: str | None = None
        self._group_left = 0
        # A producer resumed in the middle of a big customer continues its chain, wherever the
        # customer comes in the new stream (a changed source may order customers differently).
        self._resume_tail = tail_customer
        self._tail_batch_id = tail_batch_id
        self._first_group = True
        self._open = self._new(chained=False)

    def _new(self, chained: bool) -> BatchDraft:
        draft = BatchDraft(seq=self.next_seq, chained=chained)
        self.next_seq += 1
        return draft

    def _flush(self, chained_next: bool) -> BatchDraft:
        done = self._open
        done.tail_customer = self._group_key
        self._open = self._new(chained=chained_next)
        return done

    def add(self, entry: ManifestEntry | None, body: bytes | None, group_key: str | None, group_size: int) -> BatchDraft | None:
        """Add one stream row (`entry` None for a duplicate copy that gets no audit row of its own)."""
        flushed = None
        if self.grouped and (group_key != self._group_key or self._first_group):
            continuing = self._resume_tail is not None and group_key == self._resume_tail
            if continuing:
                self._resume_tail = None
            self._first_group = False
            filled = self._open.stream_rows
            # A customer that does not fit what is left starts a new batch: small customers never span two;
            # the rest of a half-sent customer starts its own batch, behind the batch it continues.
            if filled and (continuing or group_size > self.batch_size or filled + group_size > self.batch_size):
                flushed = self._flush(chained_next=False)
            self._group_key = group_key
            self._group_left = group_size
            if continuing:
                self._open.chained = True
                self._open.after = self._tail_batch_id
        elif not self.grouped:
            self._resume_tail = None
        open_ = self._open
        open_.stream_rows += 1
        self.position += 1
        open_.stream_end = self.position
        self._group_left -= 1
        if entry is not None:
            open_.entries.append(entry)
            if body is not None:
                open_.bodies.append(body)
        if open_.stream_rows >= self.batch_size:
            if flushed is not None:  # pragma: no cover - only a batch size of 1 could, and it flushes on every row
                raise AssertionError("two batches completed by one row")
            flushed = self._flush(chained_next=self.grouped and self._group_left > 0)
        return flushed

    def finish(self) -> BatchDraft | None:
        """The last, partly filled batch (None if empty)."""
        if not self._open.stream_rows:
            return None
        done = self._open
        done.tail_customer = self._group_key
        self._open = self._new(chained=False)
        return done
