"""Which run a check verifies, and what it takes from it: mapping, data source, key."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, text

from backfill.errors import ConfigError, RunStateError
from backfill.settings import Settings
from producers.mapping import Mapping
from producers.normalize import PayloadOptions


@dataclass(frozen=True)
class Target:
    """A run to verify and how to read both sides for it."""

    run_id: int
    state: str
    dry_run: bool
    data_source: str
    api_url: str
    mapping: Mapping
    source_fingerprint: str | None
    api_key: str
    options: PayloadOptions


def resolve_target(engine: Engine, settings: Settings, run_id: int | None) -> Target:
    """RUN, or the latest run (dry runs aside) of GROWPANEL_DATA_SOURCE_ID."""
    with engine.connect() as conn:
        if run_id is None:
            settings.require("growpanel_data_source_id")
            row = conn.execute(
                text(
                    "SELECT * FROM runs WHERE data_source = :ds AND NOT dry_run ORDER BY id DESC LIMIT 1"
                ),
                {"ds": settings.growpanel_data_source_id},
            ).mappings().first()
            if row is None:
                raise RunStateError(
                    f"there is no run for data source {settings.growpanel_data_source_id} to verify yet"
                )
        else:
            row = conn.execute(text("SELECT * FROM runs WHERE id = :r"), {"r": run_id}).mappings().first()
            if row is None:
                raise RunStateError(f"there is no run {run_id}")
    data_source = row["data_source"]
    key = settings.api_key_for(data_source)
    if key is None:
        raise ConfigError(
            f"no API key for data source {data_source} (set GROWPANEL_API_KEY with "
            "GROWPANEL_DATA_SOURCE_ID, or GROWPANEL_API_KEYS)"
        )
    return Target(
        run_id=int(row["id"]),
        state=row["state"],
        dry_run=bool(row["dry_run"]),
        data_source=data_source,
        api_url=row["api_url"],
        mapping=Mapping.from_json(row["mapping"]),
        source_fingerprint=row["source_fingerprint"],
        api_key=key,
        options=PayloadOptions(
            data_source=data_source,
            invoice_amount_field=settings.invoice_amount_field,
            plan_send_external_id=settings.plan_send_external_id,
        ),
    )
