"""A local, in-memory stand-in for GrowPanel's custom-integration API (see docs/sandbox.md)."""

from __future__ import annotations

from typing import Any

from sandbox.config import SandboxConfig, StoreMode
from sandbox.faults import FaultConfig
from sandbox.wire import WireConfig


def __getattr__(name: str) -> Any:
    # The web application (starlette) is loaded when asked for: `growpanel-backfill --help` lists the
    # `sandbox` command without paying for it.
    if name == "create_app":
        from sandbox.app import create_app

        return create_app
    raise AttributeError(f"module 'sandbox' has no attribute {name!r}")


__all__ = ["FaultConfig", "SandboxConfig", "StoreMode", "WireConfig", "create_app"]
