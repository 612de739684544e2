"""A local, in-memory stand-in for GrowPanel's custom-integration API (see docs/sandbox.md)."""

from __future__ import annotations

from sandbox.app import create_app
from sandbox.config import SandboxConfig, StoreMode
from sandbox.faults import FaultConfig
from sandbox.wire import WireConfig

__all__ = ["FaultConfig", "SandboxConfig", "StoreMode", "WireConfig", "create_app"]
