"""Fixtures for the sandbox tests: an in-process app client and a live sandbox subprocess."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# The sandbox package lives at the project root; make it importable when the project is not
# pip-installed (pytest's own sys.path insertion only adds this test folder).
_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from sandbox_helpers import KEYS, TOKEN, Api  # noqa: E402

from sandbox import SandboxConfig  # noqa: E402
from sandbox.testing import SandboxProcess  # noqa: E402


@pytest.fixture
def make_api() -> Callable[..., Api]:
    """Build an in-process sandbox with the test keys and inspection on, overriding config fields."""

    def build(**overrides: Any) -> Api:
        settings: dict[str, Any] = {
            "keys": dict(KEYS),
            "inspect": True,
            "inspect_token": TOKEN,
            "progress_delay": 0.3,
        }
        settings.update(overrides)
        return Api(SandboxConfig(**settings))

    return build


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    """An in-process sandbox with inspection on."""
    return make_api()


@pytest.fixture(scope="session")
def live_process() -> Iterator[SandboxProcess]:
    """One sandbox subprocess (CLI, --port 0, --inspect) shared by the tests over real HTTP."""
    process = SandboxProcess(KEYS, "--inspect", "--progress-delay", "0.3", "--log-level", "warning")
    with process:
        yield process


@pytest.fixture
def live(live_process: SandboxProcess) -> Iterator[httpx.Client]:
    """A client of the live sandbox, reset (data, log, faults, limits) before the test."""
    with httpx.Client(
        base_url=live_process.url,
        headers={"Authorization": "Bearer key_1", **live_process.inspect_headers},
        timeout=10,
    ) as client:
        assert client.post("/_sandbox/reset-all").status_code == 200
        yield client
