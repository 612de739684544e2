"""Wire settings: which answer shapes and units the read endpoints use, changeable at run time.

The SDK's OpenAPI models (growpanel 0.1.29) are the default shapes; `legacy` keeps the shapes the
sandbox served before (snake_case progress counters, `{"result": {"interval", ..., "data"}}` MRR),
so an importer's tolerance of both can be tested against one sandbox by flipping a setting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

SHAPES = ("sdk", "legacy")
MRR_UNITS = ("cents", "units")
OFFSET_MODES = ("honor", "ignore")


@dataclass(frozen=True)
class WireConfig:
    """How the read endpoints answer."""

    shape: str = "sdk"
    """"sdk": the SDK models' wire names; "legacy": the sandbox's earlier shapes (progress, MRR)."""
    mrr_unit: str = "cents"
    """Unit of MRR amounts: "cents" (minor units, integers) or "units" (major units, decimals)."""
    listing_offset: str = "honor"
    """"honor" pages listings by `offset`; "ignore" drops it, as the spec documents no offset."""


def wire_config_as_json(config: WireConfig) -> dict[str, Any]:
    """The JSON form, with the field names /_sandbox/faults uses (`wire` for the shape)."""
    return {"wire": config.shape, "mrr_unit": config.mrr_unit, "listing_offset": config.listing_offset}


_FIELDS = {"wire": ("shape", SHAPES), "mrr_unit": ("mrr_unit", MRR_UNITS), "listing_offset": ("listing_offset", OFFSET_MODES)}
WIRE_SETTINGS = tuple(_FIELDS)
"""The setting names /_sandbox/faults accepts for the wire (popped before the fault settings)."""


def apply_wire_changes(config: WireConfig, changes: dict[str, Any]) -> WireConfig:
    """`config` with JSON `changes` (only WIRE_SETTINGS names) applied; raises ValueError on a bad value."""
    updates: dict[str, str] = {}
    for name, value in changes.items():
        attribute, allowed = _FIELDS[name]
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        updates[attribute] = value
    return dataclasses.replace(config, **updates)
