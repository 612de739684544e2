"""The read endpoints' answers in the official SDK's wire shapes and in the older ones, from literal JSON.

Each SDK-shaped literal is first parsed by the SDK's own generated model (growpanel 0.1.29), so the
literal is what the real API may send; then our parser must read it, and the older shape alike.
"""

from __future__ import annotations

from typing import Any

import pytest

from backfill.api import MrrQuery, UnexpectedAnswer
from backfill.api.answers import listing_page, mrr_report, progress, reset_result
from console.verify.mrr_check import choose_unit

PROGRESS_SDK = {
    "phase": "processing",
    "enqueuedCount": 120,
    "processedCount": 80,
    "failedCount": 2,
    "startedAt": "2026-01-05T10:00:00Z",
    "lastActivityAt": "2026-01-05T10:01:30Z",
}
PROGRESS_OLD = {
    "phase": "processing",
    "enqueued_count": 120,
    "processed_count": 80,
    "failed_count": 2,
    "started_at": "2026-01-05T10:00:00Z",
    "last_activity_at": "2026-01-05T10:01:30Z",
}
MRR_SDK = {
    "result": [
        {"date": "2024-05-01", "end_date": "2024-05-31", "new": 9500, "expansion": 0, "contraction": 0, "churn": 0,
         "reactivation": 0, "total_mrr": 9500, "total_customers": 1, "total_arr": 114000, "mrr_diff": 9500},
        {"date": "2024-06-01", "end_date": "2024-06-30", "new": 8325, "expansion": 0, "contraction": 0, "churn": -9500,
         "reactivation": 0, "total_mrr": 8325, "total_customers": 1, "fx_adjustment": 0},
    ],
    "currency": "usd",
}
MRR_OLD = {
    "result": {
        "interval": "month",
        "breakdown": "data_source",
        "currency_note": "amounts in cents, not converted",
        "data": [
            {"period": "2024-05", "data_source": "ds_1", "new": 9500, "expansion": 0, "contraction": 0, "churn": 0,
             "reactivation": 0, "total_mrr": 9500, "total_customers": 1},
            {"period": "2024-06", "data_source": "ds_1", "new": 8325, "expansion": 0, "contraction": 0, "churn": 9500,
             "reactivation": 0, "total_mrr": 8325, "total_customers": 1},
            {"period": "2024-06", "data_source": "ds_other", "new": 1, "total_mrr": 1, "total_customers": 1},
        ],
    }
}
PLANS_SDK = {
    "result": {
        "count": 2,
        "list": [
            {"external_id": "p_month", "name": "Monthly", "billing_freq": "month", "currency": "usd", "data_source": "ds_1"},
            {"external_id": "p_year", "name": "Yearly", "billing_freq": "year", "currency": "usd", "data_source": "ds_1",
             "product_name": None, "billing_freq_count": 1},
        ],
    }
}
QUERY = MrrQuery((2024, 5), (2024, 6), data_source="ds_1", currency="usd", base_currency="usd")


def _sdk_parses(model: str, body: dict[str, Any]) -> None:
    """The SDK's own model reads the literal (so it is a shape the real API can send)."""
    import importlib

    module_name, class_name = model.rsplit(".", 1)
    module = importlib.import_module(f"growpanel._generated.models.{module_name}")
    parsed = getattr(module, class_name).from_dict(body)
    assert parsed is not None


def test_progress_reads_the_sdks_camel_case_and_the_older_snake_case() -> None:
    _sdk_parses("get_data_data_sources_id_progress_response_200.GetDataDataSourcesIdProgressResponse200", PROGRESS_SDK)
    sdk, old = progress(PROGRESS_SDK), progress(PROGRESS_OLD)
    assert (sdk.phase, sdk.enqueued, sdk.processed, sdk.failed, sdk.wire) == ("processing", 120, 80, 2, "camelCase")
    assert (old.enqueued, old.processed, old.failed, old.wire) == (120, 80, 2, "snake_case")
    assert sdk.to_json() | {"wire": None} == old.to_json() | {"wire": None}
    assert sdk.started_at == "2026-01-05T10:00:00Z" and sdk.last_activity_at == "2026-01-05T10:01:30Z"
    assert not sdk.final and progress({"phase": "done"}).final
    # Every counter optional, as in the SDK's model: absent counts are None, not a failure
    bare = progress({"phase": "idle"})
    assert (bare.enqueued, bare.processed, bare.failed, bare.final) == (None, None, None, True)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"enqueuedCount": 1}, "answered without a `phase`"),
        ([], "answered list, not an object"),
        ({"phase": "done", "processedCount": "12"}, "`processedCount` is str '12', not a number"),
        ({"phase": "done", "startedAt": 5}, "`startedAt` is int, not a date string"),
    ],
)
def test_a_progress_answer_we_cannot_read_is_one_line(body: Any, message: str) -> None:
    with pytest.raises(UnexpectedAnswer, match=message) as caught:
        progress(body)
    assert "\n" not in str(caught.value)


def test_mrr_reads_the_sdks_list_of_periods_with_negative_churn() -> None:
    _sdk_parses("get_reports_mrr_response_200.GetReportsMrrResponse200", MRR_SDK)
    report = mrr_report(MRR_SDK, QUERY)
    assert (report.wire, report.currency) == ("periods", "usd")
    assert report.periods == {
        "2024-05": {"new": 9500, "expansion": 0, "contraction": 0, "churn": 0, "reactivation": 0, "total_mrr": 9500, "total_customers": 1},
        "2024-06": {"new": 8325, "expansion": 0, "contraction": 0, "churn": 9500, "reactivation": 0, "total_mrr": 8325, "total_customers": 1},
    }


def test_mrr_reads_the_older_object_shape_to_the_same_figures() -> None:
    old = mrr_report(MRR_OLD, QUERY)
    assert (old.wire, old.currency) == ("legacy", None)
    assert old.periods == mrr_report(MRR_SDK, QUERY).periods  # the other data source's entry is left out


def test_mrr_query_speaks_the_specs_parameters() -> None:
    assert MrrQuery((2024, 11), (2025, 2), "ds_1", "eur", "eur", "c_1").params() == {
        "date": "20241101-20250228",
        "interval": "month",
        "data_source": "ds_1",
        "currency": "eur",
        "baseCurrency": "eur",
        "customer": "c_1",
    }
    assert MrrQuery((2024, 12), (2024, 12)).params() == {"date": "20241201-20241231", "interval": "month"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "answered without a `result`"),
        ({"result": "x"}, "neither a list of periods nor an object with `data`"),
        ({"result": [{"end_date": "2024-05-31"}], "currency": "usd"}, "period 0 has no `date`"),
        ({"result": [{"date": "2024-05-01", "total_mrr": "95"}], "currency": "usd"}, "period 2024-05-01: `total_mrr` is str"),
        ({"result": {"data": [{"total_mrr": 1}]}}, "entry 0 has no `period`"),
    ],
)
def test_an_mrr_answer_we_cannot_read_is_one_line(body: Any, message: str) -> None:
    with pytest.raises(UnexpectedAnswer, match=message):
        mrr_report(body, QUERY)


def test_plans_are_keyed_by_external_id_or_id() -> None:
    _sdk_parses("get_data_plans_response_200.GetDataPlansResponse200", PLANS_SDK)
    page = listing_page(PLANS_SDK, "plans")
    assert page.count == 2 and [p["id"] for p in page.items] == ["p_month", "p_year"]
    # GrowPanel's own id, when it sends one beside external_id, is kept apart
    both = listing_page({"result": {"count": 1, "list": [{"id": "gp_7", "external_id": "p_month"}]}}, "plans")
    assert both.items == [{"id": "p_month", "external_id": "p_month", "growpanel_id": "gp_7"}]
    older = listing_page({"result": {"count": 1, "list": [{"id": "p_month", "name": "Monthly"}]}}, "plans")
    assert older.items[0]["id"] == "p_month"
    with pytest.raises(UnexpectedAnswer, match=r"GET /data/plans: entry 0 of the list has no `id` or `external_id`"):
        listing_page({"result": {"count": 1, "list": [{"name": "Monthly"}]}}, "plans")
    with pytest.raises(UnexpectedAnswer, match=r"entry 1 of the list is str"):
        listing_page({"result": {"list": [{"id": "a"}, "b"]}}, "customers")


def test_reset_reads_success_and_refuses_a_failure() -> None:
    _sdk_parses("post_data_data_sources_id_reset_response_200.PostDataDataSourcesIdResetResponse200", {"success": True})
    assert reset_result({"success": True, "id": "ds_1"}, "ds_1").id == "ds_1"
    assert reset_result({}, "ds_1").success
    with pytest.raises(UnexpectedAnswer, match="reset answered success False: busy"):
        reset_result({"success": False, "error": "busy"}, "ds_1")


def test_the_mrr_unit_is_a_setting_or_detected_from_the_source() -> None:
    pairs_cents = [(9500, 9500), (18325, 18325)]
    pairs_units = [(9500, 95), (18325, 183.25)]
    assert choose_unit("auto", pairs_cents).unit == "cents"
    assert choose_unit("auto", pairs_units).unit == "units"
    assert "fractions of a unit" in choose_unit("auto", pairs_units).how
    # Whole units only (no fraction to tell): the totals decide
    assert choose_unit("auto", [(9500, 95), (20000, 200)]).unit == "units"
    assert choose_unit("auto", [(9500, 9600)]).unit == "cents"  # a small difference stays a difference, in cents
    assert choose_unit("auto", []).how.startswith("assumed")
    fixed = choose_unit("units", pairs_cents)
    assert (fixed.unit, fixed.how) == ("units", "MRR_REPORT_UNIT=units")
    assert fixed.cents({"total_mrr": 95.5, "total_customers": 3, "churn": 1}) == {"total_mrr": 9550, "total_customers": 3, "churn": 100}
