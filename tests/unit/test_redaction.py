"""The one redaction: every encoding of the key, cut keys, database URL passwords; redact, then truncate."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from urllib.parse import quote, quote_plus

import httpx
import pytest

from backfill.alerts import Alert, Alerter
from backfill.api import Exchange, body_text, redact
from backfill.settings import Settings

KEY = 'gpk_live_0123456789abcdef/+"\\=&?'


@pytest.mark.parametrize(
    "echo",
    [
        KEY,
        json.dumps({"auth": KEY}),
        json.dumps(json.dumps({"auth": KEY})),
        quote(KEY, safe=""),
        quote(KEY, safe="").lower(),
        quote(KEY),
        quote_plus(KEY),
        base64.b64encode(f"Bearer {KEY}".encode()).decode(),
        base64.b64encode(KEY.encode()).decode(),
        base64.urlsafe_b64encode(KEY.encode()).decode().rstrip("="),
        base64.b64encode(f"Authorization: Bearer {KEY}".encode()).decode(),
        base64.b64encode(json.dumps({"header": f"Bearer {KEY}"}).encode()).decode(),
    ],
)
def test_every_encoding_of_the_key_is_redacted(echo: str) -> None:
    text = redact(f"the server said: {echo} (end)", KEY)
    assert text is not None and "[redacted]" in text
    assert "0123456789ab" not in text and "89abcdef" not in text
    # base64 leaves a few characters that depend on what surrounds the key: never the key's own
    assert base64.b64encode(KEY.encode()).decode()[4:16] not in text


def test_a_key_cut_by_the_end_of_a_body_is_redacted_but_short_words_are_left() -> None:
    assert redact(f"error near {KEY[:14]}", KEY) == "error near [redacted]"
    assert redact(f"error near {quote(KEY, safe='')[:30]}", KEY) == "error near [redacted]"
    assert redact("plan gpk_l", KEY) == "plan gpk_l"  # under six characters: too common to remove
    assert redact("Bearer token missing", KEY) == "Bearer token missing"


def test_bodies_are_redacted_whole_then_cut() -> None:
    # The key straddles the limit: cut first, the first half would survive; redacted first, nothing does
    limit = 1000
    content = ("x" * (limit - 10) + KEY + "y" * 2000).encode()
    exchange = Exchange(datetime.now(timezone.utc), 1.0, 400, content, httpx.Headers())
    kept = body_text(exchange, KEY, limit)
    assert "0123" not in kept and kept.startswith("x" * (limit - 10) + "[redacted]")
    assert kept.endswith(f"... ({len(content)} bytes in all)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cannot connect to postgresql://app:hunter2@db:5432/billing", "cannot connect to postgresql://app:[redacted]@db:5432/billing"),
        ("postgresql+psycopg://app:p%40ss:w0rd@db/x failed", "postgresql+psycopg://app:[redacted]@db/x failed"),
        ("redis://:s3cret@cache:6379/0 down", "redis://:[redacted]@cache:6379/0 down"),
        ("host=db user=app password=hunter2 dbname=x", "host=db user=app password=[redacted] dbname=x"),
        ("host=db password='two words' dbname=x", "host=db password=[redacted] dbname=x"),
        ("postgresql://app@db/x has no password", "postgresql://app@db/x has no password"),
        ("see https://docs.example.com/a:b", "see https://docs.example.com/a:b"),
    ],
)
def test_passwords_in_database_urls_are_redacted_in_every_message(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_several_keys_at_once_and_alerts_redact_whatever_the_caller_did(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(growpanel_api_key=KEY, growpanel_data_source_id="ds_a", growpanel_api_keys="ds_b=other-key-9876543210")
    assert sorted(settings.secrets()) == sorted([KEY, "other-key-9876543210"])
    assert redact(f"{KEY} and other-key-9876543210", settings.secrets()) == "[redacted] and [redacted]"
    alerter = Alerter.from_settings(settings)
    with caplog.at_level("ERROR", logger="growpanel_backfill.alerts"):
        alerter.send(Alert(1, "ds_a", "plans", "plans#1", f"HTTP 401: {quote(KEY, safe='')} via postgresql://u:pw@h/d"))
    assert "0123456789" not in caplog.text and ":pw@" not in caplog.text and "[redacted]" in caplog.text


def test_the_log_filter_redacts_every_record_and_its_traceback() -> None:
    import io
    import logging

    from backfill.api import install_log_redaction

    stream = io.StringIO()
    logger = logging.getLogger("test_redaction_filter")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    try:
        install_log_redaction([KEY], logger)
        logger.warning("answer was %s via %s", quote(KEY, safe=""), "postgresql://u:pw@h/d")
        try:
            raise RuntimeError(f"boom {KEY}")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "0123456789" not in text and ":pw@" not in text
    assert text.count("[redacted]") == 3 and "RuntimeError: boom [redacted]" in text
