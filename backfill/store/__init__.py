"""The batches table's transitions and counters: the one package that writes `batches`.

Every state change of a batch is a function here, using the state names of `models.states`; callers
hold the connection and the transaction. `batch` has one batch's transitions (a producer's insert, a
worker's claim and releases under the lease), `run` those of a run's batches at once (dispatch, cancel,
resume, the sweeper's recoveries) and the counters.

    pending ──queue──▶ queued ──claim──▶ running ──finish──▶ done
       ▲                 ▲                  │ ├──reschedule──▶ retry_wait ──claim──▶ running
       └──hold───────────┴──recover─────────┤ ├──fail──▶ failed (resume: ▶ pending)
                                            │ └──split──▶ split + two pending halves
                                            └──hold (key, URL, pause)──▶ pending

    pending ──claim_next──▶ running    taken, with no message, by the slot that has just finished a
                                       batch (`dispatch.advance_after`)
"""

from backfill.store.batch import (
    Half,
    claim,
    claim_next,
    fail,
    finish,
    hold,
    hold_unclaimed,
    insert_batch,
    record_accepted,
    record_attempt,
    renew_leases,
    reschedule,
    split,
    why_not_claimed,
)
from backfill.store.run import (
    clear_detail,
    has_open_batches,
    hold_run,
    in_flight,
    queue_ready,
    recover_expired,
    rejected_rows,
    reopen_run,
    requeue_overdue,
    requeue_stale,
    set_counts,
    stage_counts,
    uncount,
)

__all__ = [
    "Half", "claim", "claim_next", "clear_detail", "fail", "finish", "has_open_batches", "hold", "hold_run", "hold_unclaimed",
    "in_flight", "insert_batch", "queue_ready", "record_accepted", "record_attempt", "recover_expired",
    "rejected_rows", "renew_leases", "reopen_run", "requeue_overdue", "requeue_stale", "reschedule",
    "set_counts", "split", "stage_counts", "uncount", "why_not_claimed",
]
