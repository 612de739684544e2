"""The batch state machine (`backfill.store`) and the run writer (`backfill.runs`), against a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from sqlalchemy import Engine, text

from backfill import runs, store
from backfill.errors import LeaseLost, RunStateError
from backfill.manifest import ManifestEntry, dump_manifest, load_manifest
from backfill.messages import BatchRef
from models.db import make_engine
from models.states import BatchState as B, RunState as R
from tests.perf.support import migrated_database

_LEASE = 30.0


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    db = migrated_database("store")
    eng = make_engine(db.url, pool_size=2, application_name="store tests")
    yield eng
    eng.dispose()
    db.drop()


_runs = iter(range(1, 10_000))


def _run(engine: Engine) -> int:
    options = runs.RunOptions(f"ds_store_{next(_runs)}", "http://api.invalid", 10, {"queries": {}})
    return runs.create_run(engine, options)


def _batch(engine: Engine, run_id: int, seq: int = 1, depends_on: int | None = None, state: str = B.QUEUED) -> int:
    entries = [ManifestEntry(f"r{seq}-{n}", "00" * 16, None, None, None, None) for n in range(4)]
    with engine.begin() as conn:
        batch_id = store.insert_batch(
            conn, run_id=run_id, stage="plans", pass_no=1, seq=seq, depends_on=depends_on, rows=4,
            payload=b"[{},{},{},{}]", manifest=dump_manifest(entries),
        )
        if state != B.PENDING:
            conn.execute(text("UPDATE batches SET state = :s, queued_at = now() WHERE id = :b"), {"s": state, "b": batch_id})
    return batch_id


def _state(engine: Engine, batch_id: int) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT * FROM batches WHERE id = :b"), {"b": batch_id}).mappings().one())


def _claim(engine: Engine, batch_id: int, owner: str, lease: float = _LEASE):
    with engine.begin() as conn:
        return store.claim(conn, batch_id, owner, lease)


def test_insert_is_pending_and_the_manifest_round_trips(engine: Engine) -> None:
    run_id = _run(engine)
    batch_id = _batch(engine, run_id, state=B.PENDING)
    row = _state(engine, batch_id)
    assert (row["state"], row["rows"], row["part"]) == (B.PENDING, 4, "")
    # The stored JSON is the positional array the manifest always was.
    assert orjson.loads(row["manifest"])[0] == ["r1-0", "00" * 16, None, None, None, None]
    assert load_manifest(row["manifest"])[0].id == "r1-0"


def test_claim_is_exclusive_until_the_lease_expires(engine: Engine) -> None:
    run_id = _run(engine)
    batch_id = _batch(engine, run_id)
    first = _claim(engine, batch_id, "w1", lease=0.3)
    assert first is not None and first.elapsed >= 0
    assert _claim(engine, batch_id, "w2") is None, "a running batch was claimed twice"
    # Given the lease expires, When the sweeper recovers it, Then another worker can claim it.
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_sleep(0.4)"))
    with engine.begin() as conn:
        recovered = store.recover_expired(conn, max_deliveries=5)
    assert [(r.id, r.state) for r in recovered if r.run_id == run_id] == [(batch_id, B.QUEUED)]
    assert _claim(engine, batch_id, "w2") is not None
    assert (_state(engine, batch_id)["lease_owner"], _state(engine, batch_id)["deliveries"]) == ("w2", 1)


def test_a_live_lease_is_not_recovered_and_renewal_extends_it(engine: Engine) -> None:
    run_id = _run(engine)
    batch_id = _batch(engine, run_id)
    assert _claim(engine, batch_id, "w1", lease=0.5) is not None
    with engine.begin() as conn:
        assert store.renew_leases(conn, [(batch_id, "w1"), (batch_id, "not-the-owner")], 30) == [batch_id]
        conn.execute(text("SELECT pg_sleep(0.6)"))
    with engine.begin() as conn:
        assert batch_id not in [r.id for r in store.recover_expired(conn, 5)]
    assert _state(engine, batch_id)["lease_owner"] == "w1"


def test_release_by_a_non_owner_is_refused(engine: Engine) -> None:
    run_id = _run(engine)
    batch_id = _batch(engine, run_id)
    assert _claim(engine, batch_id, "w1") is not None
    for release in (
        lambda c: store.finish(c, batch_id, "w2", 1, {"n_inserted": 4}),
        lambda c: store.reschedule(c, batch_id, "w2", 1.0, 1, 0, "x"),
        lambda c: store.fail(c, batch_id, "w2", 1, "x"),
        lambda c: store.hold(c, batch_id, "w2", "x"),
    ):
        with pytest.raises(LeaseLost), engine.begin() as conn:
            release(conn)
    assert (_state(engine, batch_id)["state"], _state(engine, batch_id)["lease_owner"]) == (B.RUNNING, "w1")
    with engine.begin() as conn:
        store.finish(conn, batch_id, "w1", 1, {"n_inserted": 4})
    row = _state(engine, batch_id)
    assert (row["state"], row["n_inserted"], row["lease_owner"], row["attempts"]) == (B.DONE, 4, None, 1)
    with pytest.raises(LeaseLost), engine.begin() as conn:
        store.finish(conn, batch_id, "w1", 1, {"n_inserted": 4})


def test_reschedule_waits_until_not_before_on_the_database_clock(engine: Engine) -> None:
    run_id = _run(engine)
    batch_id = _batch(engine, run_id)
    assert _claim(engine, batch_id, "w1") is not None
    with engine.begin() as conn:
        store.reschedule(conn, batch_id, "w1", 60.0, 1, 0, "HTTP 503")
    row = _state(engine, batch_id)
    assert (row["state"], row["attempts"], row["last_error"]) == (B.RETRY_WAIT, 1, "HTTP 503")
    assert _claim(engine, batch_id, "w2") is None, "claimed before not_before"
    with engine.connect() as conn:
        assert store.why_not_claimed(conn, batch_id).remaining > 50
    with engine.begin() as conn:
        conn.execute(text("UPDATE batches SET not_before = now() - interval '1 hour' WHERE id = :b"), {"b": batch_id})
        assert [r.batch_id for r in store.requeue_overdue(conn, 2.0) if r.run_id == run_id] == [batch_id]
    assert _claim(engine, batch_id, "w2") is not None


def test_split_inserts_two_halves_in_a_chain(engine: Engine) -> None:
    run_id = _run(engine)
    before = _batch(engine, run_id, seq=1, state=B.DONE)
    batch_id = _batch(engine, run_id, seq=2, depends_on=before)
    waiting = _batch(engine, run_id, seq=3, depends_on=batch_id, state=B.PENDING)
    claimed = _claim(engine, batch_id, "w1")
    assert claimed is not None
    halves = [store.Half(2, b"[{},{}]", dump_manifest([ManifestEntry(f"h{n}", None, None, None, None, None)] * 2)) for n in (0, 1)]
    with engine.begin() as conn:
        first, second = store.split(
            conn, BatchRef(batch_id, run_id, "plans", 2), "w1", pass_no=1, depends_on=before,
            first_try_at=claimed.first_try_at, halves=halves, error="HTTP 413",
        )
    assert (_state(engine, batch_id)["state"], _state(engine, batch_id)["rows"]) == (B.SPLIT, 0)
    a, b = _state(engine, first), _state(engine, second)
    assert (a["state"], a["part"], a["depends_on"], a["seq"]) == (B.PENDING, "0", before, 2)
    assert (b["state"], b["part"], b["depends_on"], b["seq"]) == (B.PENDING, "1", first, 2)
    # What waited for the whole batch now waits for its second half.
    assert _state(engine, waiting)["depends_on"] == second
    # Only the first half is ready (its dependency is done); the second waits for it.
    with engine.begin() as conn:
        assert [r.batch_id for r in store.queue_ready(conn, run_id, "plans", 10)] == [first]


def test_split_by_a_non_owner_inserts_nothing(engine: Engine) -> None:
    run_id = _run(engine)
    batch_id = _batch(engine, run_id)
    assert _claim(engine, batch_id, "w1") is not None
    with pytest.raises(LeaseLost), engine.begin() as conn:
        store.split(conn, BatchRef(batch_id, run_id, "plans", 1), "w2", pass_no=1, depends_on=None, first_try_at=None,
                    halves=[store.Half(1, None, b"[]")] * 2, error=None)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM batches WHERE run_id = :r"), {"r": run_id}).scalar_one() == 1


def test_a_paused_run_holds_its_batches_and_reopen_requeues_them(engine: Engine) -> None:
    run_id = _run(engine)
    queued = _batch(engine, run_id, seq=1)
    running = _batch(engine, run_id, seq=2)
    assert _claim(engine, running, "w1", lease=0.2) is not None
    with engine.begin() as conn:
        assert runs.pause_run(conn, run_id, "because")
        assert not runs.pause_run(conn, run_id, "again")
    assert _claim(engine, queued, "w2") is None, "a batch of a paused run was claimed"
    with engine.begin() as conn:
        store.hold_unclaimed(conn, queued)
        conn.execute(text("SELECT pg_sleep(0.3)"))
    assert _state(engine, queued)["state"] == B.PENDING
    result = runs.reopen_run(engine, run_id)
    assert (result.state, result.requeued) == (R.RUNNING, 1)  # the expired running one; the held one was pending
    assert {_state(engine, b)["state"] for b in (queued, running)} == {B.PENDING}


def test_the_producer_lease_is_exclusive(engine: Engine) -> None:
    run_id = _run(engine)
    with engine.begin() as conn:
        assert runs.claim_producer(conn, run_id, "p1", 30) is not None
        assert runs.claim_producer(conn, run_id, "p2", 30) is None
        with pytest.raises(LeaseLost):
            runs.renew_producer(conn, run_id, "p2", 30)
        runs.renew_producer(conn, run_id, "p1", 30)
        runs.release_producer(conn, run_id, "p2")  # not the owner: nothing happens
        assert runs.claim_producer(conn, run_id, "p2", 30) is None
        runs.release_producer(conn, run_id, "p1")
        assert runs.claim_producer(conn, run_id, "p2", 30) is not None


def test_one_active_run_per_data_source_and_retry_only_on_a_finished_run(engine: Engine) -> None:
    run_id = _run(engine)
    with engine.connect() as conn:
        data_source = conn.execute(text("SELECT data_source FROM runs WHERE id = :r"), {"r": run_id}).scalar_one()
        assert runs.active_run_on(conn, data_source) == (run_id, R.RUNNING)
        assert runs.active_run_on(conn, data_source, except_run=run_id) is None
    with pytest.raises(RunStateError, match=f"run {run_id} for data source {data_source} is running"):
        runs.create_run(engine, runs.RunOptions(data_source, "http://api.invalid", 10, {"queries": {}}))
    with pytest.raises(RunStateError, match="retry works on a finished run"):
        runs.prepare_retry(engine, run_id)
    runs.cancel_run(engine, run_id)
    with pytest.raises(RunStateError, match="is cancelled; retry works only on a succeeded or completed_with_errors run"):
        runs.prepare_retry(engine, run_id)


def test_payloads_and_manifests_are_compressed_with_lz4(engine: Engine) -> None:
    # Given the migrated state database on this machine's PostgreSQL (15, built with lz4; on a server
    # without lz4 migration 0003 keeps the default, pglz)
    with engine.connect() as conn:
        has_lz4 = conn.execute(
            text("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
        ).scalar()
        methods = dict(
            conn.execute(
                text("SELECT attname, attcompression FROM pg_attribute WHERE attrelid = 'batches'::regclass AND attname IN ('payload', 'manifest')")
            ).all()
        )
    # Then a batch's two big columns compress with lz4: ~0.2 ms per 500-invoice payload against pglz's 1.2
    assert has_lz4, "the test server has no lz4"
    assert methods == {"payload": "l", "manifest": "l"}


def _take(engine: Engine, run_id: int, done_id: int, owner: str = "slot") -> int | None:
    with engine.begin() as conn:
        row = store.claim_next(conn, run_id, "plans", done_id, owner, _LEASE)
    return None if row is None else int(row.id)


def test_claim_next_takes_the_chain_first_then_the_first_ready_pending_batch(engine: Engine) -> None:
    # Given a done batch with a pending successor, an earlier pending batch that is not due yet, one
    # waiting for a dependency that is not done, and two ready ones
    run_id = _run(engine)
    done = _batch(engine, run_id, seq=1, state=B.DONE)
    not_due = _batch(engine, run_id, seq=2, state=B.PENDING)
    with engine.begin() as conn:
        conn.execute(text("UPDATE batches SET not_before = now() + interval '1 hour' WHERE id = :b"), {"b": not_due})
    blocked_by = _batch(engine, run_id, seq=3, state=B.QUEUED)
    blocked = _batch(engine, run_id, seq=4, depends_on=blocked_by, state=B.PENDING)
    ready = _batch(engine, run_id, seq=5, state=B.PENDING)
    successor = _batch(engine, run_id, seq=9, depends_on=done, state=B.PENDING)
    queued = _batch(engine, run_id, seq=6, state=B.QUEUED)
    # When the slot that finished `done` takes its next batches
    first, second = _take(engine, run_id, done), _take(engine, run_id, done)
    # Then it took the successor (before any lower position), then the first ready pending batch: not the
    # one not due yet, not the one whose dependency is not done, never a queued one (it has a message)
    assert (first, second) == (successor, ready)
    assert _take(engine, run_id, done) is None
    for batch_id, state in ((successor, B.RUNNING), (ready, B.RUNNING), (not_due, B.PENDING), (blocked, B.PENDING), (queued, B.QUEUED)):
        assert _state(engine, batch_id)["state"] == state
    taken = _state(engine, successor)
    assert taken["lease_owner"] == "slot" and taken["lease_until"] is not None and taken["first_try_at"] is not None


def test_claim_next_takes_nothing_from_a_run_that_is_not_running(engine: Engine) -> None:
    run_id = _run(engine)
    done = _batch(engine, run_id, seq=1, state=B.DONE)
    ready = _batch(engine, run_id, seq=2, state=B.PENDING)
    with engine.begin() as conn:
        assert runs.pause_run(conn, run_id, "paused by a test")
    assert _take(engine, run_id, done) is None
    assert _state(engine, ready)["state"] == B.PENDING
