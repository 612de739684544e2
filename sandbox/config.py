"""The sandbox's settings, built by the CLI or by tests and passed to `create_app`."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sandbox.faults import FaultConfig
from sandbox.wire import WireConfig

TOKEN_ENV = "SANDBOX_INSPECT_TOKEN"
"""Where the CLI reads the inspection token when --inspect-token is not given (keeps it off argv)."""


def valid_token(token: str) -> bool:
    """Whether a token can travel in an HTTP header unchanged: printable ASCII, no whitespace."""
    return bool(token) and token.isascii() and token.isprintable() and not any(c.isspace() for c in token)


class StoreMode(StrEnum):
    """How much of each upserted object the sandbox keeps."""

    FULL = "full"
    """The whole object (its known fields), listed as stored."""
    DIGEST = "digest"
    """A 16-byte content digest only: enough for inserted/updated/unchanged, for big benchmarks."""


@dataclass
class SandboxConfig:
    """Start-up settings of one sandbox instance."""

    keys: dict[str, str] = field(default_factory=dict)
    """API key -> the data source id it belongs to."""
    max_batch: int = 1000
    """Most rows one POST may carry; more is a 413."""
    rate_limit: float | None = None
    """Requests per second allowed per key (token bucket); None for no limit."""
    inspect: bool = False
    """Serve the `/_sandbox/ledger`, `requests`, `violations` and `reset-all` routes (needs a token)."""
    inspect_token: str | None = None
    """The `X-Sandbox-Token` every `/_sandbox/*` request must carry; None: no `/_sandbox/*` route at all."""
    progress_delay: float = 0.5
    """Seconds a data source reports `processing` after its last stored batch."""
    faults: FaultConfig = field(default_factory=FaultConfig)
    """Faults active from the start (changeable at run time)."""
    store: StoreMode = StoreMode.FULL
    """What is kept per object."""
    request_log_limit: int = 100_000
    """Most entries `/_sandbox/requests` keeps (oldest dropped first)."""
    max_body_bytes: int = 64 * 1024 * 1024
    """Largest request body read on the data routes; more is a 413 (checked before reading)."""
    control_body_bytes: int = 64 * 1024
    """Largest request body read on `/_sandbox/*`: a fault setting never needs more."""
    wire: WireConfig = field(default_factory=WireConfig)
    """Answer shapes and units of the read endpoints at start-up (changeable at run time)."""

    def __post_init__(self) -> None:
        """Check the values a typo could make meaningless."""
        if self.max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ValueError("rate_limit must be positive (or None for no limit)")
        if self.progress_delay < 0:
            raise ValueError("progress_delay must not be negative")
        if self.inspect and not self.inspect_token:
            # Inspection exposes every stored object: never without a token.
            raise ValueError("inspect needs an inspect_token (X-Sandbox-Token)")
        if self.inspect_token is not None and not valid_token(self.inspect_token):
            raise ValueError("inspect_token must be non-empty printable ASCII without whitespace")
        self.store = StoreMode(self.store)
