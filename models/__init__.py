"""The state database: runs, stages, batches, attempts and the per-row audit (SQLAlchemy 2 models)."""

from models.tables import (
    ACCEPTED_OUTCOMES,
    FINAL_BATCH_STATES,
    IN_FLIGHT_STATES,
    OUTCOMES,
    REJECTED_OUTCOMES,
    RUN_ACTIVE_STATES,
    STAGES,
    AuditHistory,
    AuditRow,
    Base,
    Batch,
    BatchAttempt,
    RetryTarget,
    Run,
    RunStage,
)

__all__ = [
    "ACCEPTED_OUTCOMES",
    "FINAL_BATCH_STATES",
    "IN_FLIGHT_STATES",
    "OUTCOMES",
    "REJECTED_OUTCOMES",
    "RUN_ACTIVE_STATES",
    "STAGES",
    "AuditHistory",
    "AuditRow",
    "Base",
    "Batch",
    "BatchAttempt",
    "RetryTarget",
    "Run",
    "RunStage",
]
