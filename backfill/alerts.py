"""Alerts when a run pauses: an ERROR log line, and a POST to ALERT_WEBHOOK_URL when it is set."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import httpx

from backfill.redact import redact
from models.states import RunState

if TYPE_CHECKING:
    from backfill.settings import Settings

log = logging.getLogger("growpanel_backfill.alerts")


@dataclass(frozen=True)
class Alert:
    """What an operator needs to act: which run, which stage and batch, and why."""

    run_id: int
    data_source: str
    stage: str | None
    batch: str | None
    error: str
    state: str = RunState.PAUSED


class Alerter:
    """Logs and (optionally) posts alerts; never lets an alert failure break the caller.

    Every alert is redacted here, whatever the caller did: the keys this process holds in every
    encoding, and database URL passwords.
    """

    def __init__(self, webhook_url: str | None, timeout: float = 5.0, secrets: Iterable[str] = ()) -> None:
        self.webhook_url = webhook_url
        self.timeout = timeout
        self.secrets = tuple(secrets)

    @classmethod
    def from_settings(cls, settings: Settings) -> Alerter:
        """The alerter of these settings, redacting every key they hold."""
        return cls(settings.alert_webhook_url, secrets=settings.secrets())

    def send(self, alert: Alert) -> None:
        """Log at ERROR, then POST the alert as JSON to the webhook (best effort)."""
        alert = replace(alert, error=redact(alert.error, self.secrets) or "")
        where = f"stage {alert.stage}, batch {alert.batch}" if alert.batch else f"stage {alert.stage}"
        log.error("run %s %s (%s, data source %s): %s", alert.run_id, alert.state, where, alert.data_source, alert.error)
        if not self.webhook_url:
            return
        payload = asdict(alert)
        payload["text"] = f"growpanel-backfill: run {alert.run_id} {alert.state} at {where}: {alert.error}"
        try:
            httpx.post(self.webhook_url, json=payload, timeout=self.timeout)
        except httpx.HTTPError as exc:
            # The URL may hold a secret token (Slack-style webhooks): name the error, not the URL.
            log.warning("alert webhook failed: %s", type(exc).__name__)
