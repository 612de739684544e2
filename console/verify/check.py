"""The whole check: rows of every entity, then (with `--mrr`) the month table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from backfill.api import GrowPanelClient
from backfill.settings import Settings
from console.verify.listing import PAGE_SIZE, ListingStats, listing_pages
from console.verify.months import source_months
from console.verify.mrr_check import DRILL_CUSTOMERS, choose_unit, drill_down, growpanel_months, month_lines, unit_pairs
from console.verify.pacing import make_pacer
from console.verify.remote import RemoteApi
from console.verify.report import EntityResult, VerifyReport
from console.verify.rows import merge_entity
from console.verify.source import source_rows
from console.verify.spill import create_spill, spill, state_connection, state_rows
from console.verify.target import Target
from models.states import STAGES
from producers.source import fingerprint, source_connection


@dataclass(frozen=True)
class CheckOptions:
    """What to check and how much to show."""

    months: bool = False
    tolerance_percent: float = 1.0
    max_examples: int = 5
    page_size: int = PAGE_SIZE
    drill_customers: int = DRILL_CUSTOMERS


def run_check(settings: Settings, target: Target, options: CheckOptions) -> VerifyReport:
    """Compare GrowPanel with the source for `target`; CheckIncomplete when that cannot be finished."""
    assert settings.source_database_url is not None and settings.database_url is not None
    report = VerifyReport(target.run_id, target.data_source, {})
    report.warnings += _run_warnings(settings, target)
    pacer, warning = make_pacer(settings, target.run_id)
    if warning:
        report.warnings.append(warning)
    client = GrowPanelClient.from_settings(settings)
    api = RemoteApi(client, target.api_key, settings, pacer)
    try:
        with source_connection(settings.source_database_url) as source:
            reads = fingerprint(source)
            if target.source_fingerprint is not None and reads != target.source_fingerprint:
                report.warnings.append(
                    f"SOURCE_DATABASE_URL reads {reads}, but run {target.run_id} read {target.source_fingerprint}"
                )
            with state_connection(settings.database_url) as state:
                for entity in STAGES:
                    report.entities[entity] = _check_entity(api, state, source, target, entity, options, report)
            if options.months:
                _check_months(api, source, target, settings, options, report)
    finally:
        pacer.close()
        client.close()
    return report


def _check_entity(
    api: RemoteApi,
    state: psycopg.Connection[Any],
    source: psycopg.Connection[Any],
    target: Target,
    entity: str,
    options: CheckOptions,
    report: VerifyReport,
) -> EntityResult:
    """Spill GrowPanel's listing of `entity`, then merge it with the source in id order."""
    stats = ListingStats()
    try:
        create_spill(state)
        spill(state, listing_pages(api, entity, target.data_source, stats, options.page_size))
        result = merge_entity(
            EntityResult(entity, options.max_examples),
            source_rows(source, entity, target.mapping.queries[entity], target.options),
            state_rows(state, target.run_id, entity),
        )
    finally:
        # Ends the transaction, which drops the temporary table.
        state.rollback()
    report.listings[entity] = stats.to_json()
    warnings = report.warnings
    if len(set(stats.announced)) > 1:
        warnings.append(f"GrowPanel's count of {entity} changed while they were listed ({stats.announced[0]} -> {stats.announced[-1]})")
    duplicates = stats.rows - result.growpanel
    if duplicates > 0:
        warnings.append(f"GrowPanel listed {duplicates} {entity} more than once (did rows move while it was paged?)")
    return result


def _check_months(
    api: RemoteApi, source: psycopg.Connection[Any], target: Target, settings: Settings, options: CheckOptions, report: VerifyReport
) -> None:
    """The month table per currency, the unit used, and the drill-down of the months beyond the tolerance."""
    computed = source_months(source, target)
    report.tolerance_percent = options.tolerance_percent
    if not computed.months():
        report.months = []
        report.warnings.append("the source has no invoice that would be sent: there are no months to compare")
        return
    remote = growpanel_months(api, target.data_source, computed)
    report.warnings += remote.warnings
    unit = choose_unit(settings.mrr_report_unit, unit_pairs(computed, remote))
    report.mrr_unit = unit.to_json()
    report.months = month_lines(computed, remote, unit, options.tolerance_percent)
    if not remote.filtered:
        if any(m.flagged for m in report.months):
            report.warnings.append("GET /reports/mrr answers without filters (its older shape): flagged months cannot be drilled down to customers")
        return
    report.drilldown = drill_down(api, source, target, report.months, unit, options.drill_customers)


def _run_warnings(settings: Settings, target: Target) -> list[str]:
    """What makes this run a questionable reference."""
    out = []
    if target.dry_run:
        out.append(f"run {target.run_id} is a dry run: it sent nothing")
    if target.state in ("running", "paused"):
        out.append(f"run {target.run_id} is {target.state}: rows it has not sent yet are reported missing")
    if target.api_url.rstrip("/") != settings.growpanel_api_url:
        out.append(f"run {target.run_id} posted to {target.api_url}, this check reads {settings.growpanel_api_url}")
    return out
