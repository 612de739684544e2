"""Report endpoints under `/reports/*`, one module per report (`mrr.py`: `GET /reports/mrr`).

Each report module exposes `routes(state) -> list[BaseRoute]`, its handlers start with
`admission = await sandbox.gate.admit(state, request)` (auth, rate limit, faults), read
`state.store.table(admission.data_source, "invoices")` (and "plans", "customers"), answer through
`sandbox.gate.lose_if_planned(admission, response)`, and are listed in `report_routes`. Reports need
`StoreMode.FULL`: the digest mode keeps no amounts.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from sandbox.reports import mrr
from sandbox.state import SandboxState


def report_routes(state: SandboxState) -> list[BaseRoute]:
    """The routes of every report module."""
    return [*mrr.routes(state)]
