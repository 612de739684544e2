"""How every kind of answer is classified, and how per-row results are matched to the rows sent.

The sandbox answers as the guide says; the real API's OpenAPI models allow more (`success`, echoed
rows, `{"error": ...}` bodies), so those shapes are checked here, on the pure functions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import orjson
import pytest

from backfill.api import Exchange, classify, parse_retry_after
from backfill.errors import AuthError, FatalApiError, RejectedError, RetriableApiError, ThrottledError, TooLargeError
from backfill.manifest import ManifestEntry
from workers.results import match_results

KEY = "secret-key-123"


def _exchange(status: int | None, body: object = b"", headers: dict[str, str] | None = None, error: str | None = None) -> Exchange:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return Exchange(datetime.now(timezone.utc), 1.0, status, content, httpx.Headers(headers or {}), error)


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind"),
    [
        (None, b"", None, RetriableApiError),
        (500, {"error": "boom"}, None, RetriableApiError),
        (502, b"<html>bad gateway</html>", None, RetriableApiError),
        (503, b"", None, RetriableApiError),
        (408, b"", None, RetriableApiError),
        (200, b"not json", None, RetriableApiError),
        (200, {"results": []}, None, RetriableApiError),
        (429, {"error": "slow down"}, {"Retry-After": "3"}, ThrottledError),
        (413, {"error": "too large"}, None, TooLargeError),
        (401, {"error": "bad key"}, None, AuthError),
        (403, {"error": "forbidden"}, None, AuthError),
        (404, b"not found", None, FatalApiError),
        (301, b"", {"Location": "https://elsewhere"}, FatalApiError),
        (400, {"error": "invalid body"}, None, RejectedError),
        (422, {"error": "unprocessable"}, None, RejectedError),
        (409, b"conflict", None, RejectedError),
    ],
)
def test_every_answer_has_one_action(status: int | None, body: object, headers: dict[str, str] | None, kind: type) -> None:
    with pytest.raises(kind) as caught:
        classify(_exchange(status, body, headers, error="network error" if status is None else None), KEY)
    if status is not None:
        assert f"HTTP {status}" in str(caught.value)


def test_a_clean_answer_gives_its_results() -> None:
    assert classify(_exchange(200, {"result": [{"id": "a", "export_status": "inserted"}]}), KEY) == [
        {"id": "a", "export_status": "inserted"}
    ]


def test_error_bodies_are_quoted_and_the_key_never_is() -> None:
    with pytest.raises(RejectedError) as caught:
        classify(_exchange(400, {"error": f"bad Authorization: Bearer {KEY}"}), KEY)
    assert KEY not in str(caught.value) and "[redacted]" in str(caught.value)


def test_retry_after_in_seconds_decimals_or_a_date() -> None:
    assert parse_retry_after(httpx.Headers({"Retry-After": "7"})) == 7
    assert parse_retry_after(httpx.Headers({"Retry-After": "0.25"})) == 0.25
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    seconds = parse_retry_after(httpx.Headers({"Retry-After": format_datetime(when, usegmt=True)}))
    assert seconds is not None and 27 <= seconds <= 31
    assert parse_retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    assert parse_retry_after(httpx.Headers({})) is None


def _entries(*ids: str) -> list[ManifestEntry]:
    return [ManifestEntry(i, "h", None, None, None, None) for i in ids]


def test_guide_statuses_and_errors_by_position() -> None:
    results = [
        {"id": "a", "export_status": "inserted"},
        {"id": "b", "export_status": "updated"},
        {"id": "c", "export_status": "unchanged"},
        {"id": "d", "export_status": "error", "export_error": "Invalid country code"},
    ]
    assert match_results(_entries("a", "b", "c", "d"), results) == [
        ("inserted", "inserted", None),
        ("updated", "updated", None),
        ("unchanged", "unchanged", None),
        ("error", "error", "Invalid country code"),
    ]


def test_openapi_shapes_success_and_echoed_rows_with_extra_keys() -> None:
    results = [
        {"id": "a", "name": "Echoed", "amount": 100, "export_status": "success"},
        {"id": "b", "export_status": "queued", "extra": {"x": 1}},
        {"id": "c", "export_status": "error"},
    ]
    assert match_results(_entries("a", "b", "c"), results) == [
        ("success", "success", None),
        ("success", "queued", "accepted with export_status 'queued'"),
        ("error", "error", "error (the API gave no message)"),
    ]


def test_results_in_another_order_are_matched_by_id() -> None:
    results = [{"id": "b", "export_status": "updated"}, {"id": "a", "export_status": "inserted"}]
    assert match_results(_entries("a", "b"), results) == [("inserted", "inserted", None), ("updated", "updated", None)]


def test_anything_unexpected_is_a_recorded_error_not_a_crash() -> None:
    out = match_results(_entries("a", "b", "c", "d"), [{"id": "a", "export_status": "inserted"}, "weird", {"id": "zzz", "export_status": "inserted"}])
    assert out[0] == ("inserted", "inserted", None)
    assert out[1][0] == "error" and "not an object" in out[1][2]
    assert out[2][0] == "error" and "answers id 'zzz'" in out[2][2]
    assert out[3] == ("error", None, "the API answered 3 results for 4 rows; none for this row")
    assert match_results(_entries("a"), [{"id": "a"}]) == [("error", None, "result #0 has no export_status")]
    assert match_results(_entries("a"), [{"id": "a", "export_status": ["inserted"]}]) == [("error", None, "result #0 has no export_status")]
