"""Report endpoints under `/reports/*`, one module per report (e.g. a future `mrr.py`).

Each report module exposes `routes(state) -> list[BaseRoute]`, its handlers start with
`sandbox.gate.admit(state, request)` (auth, rate limit, faults) and are listed in `report_routes`.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from sandbox.state import SandboxState


def report_routes(state: SandboxState) -> list[BaseRoute]:
    """The routes of every report module (none yet)."""
    return []
