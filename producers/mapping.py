"""The mapping file: one SQL query per entity, checked against the source before a run starts."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from backfill.errors import ConfigError
from models.states import STAGES
from producers.fields import ENTITY_FIELDS, REQUIRED_COLUMNS
from producers.source import stage_query

DEFAULT_QUERIES = {stage: f"SELECT * FROM {stage}" for stage in STAGES}


@dataclass(frozen=True)
class Mapping:
    """The three queries, in stage order."""

    queries: dict[str, str]
    source_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        """What a run stores, so workers read the source exactly as the run was started."""
        return {"queries": self.queries, "file": self.source_file}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Mapping:
        """Inverse of to_json."""
        return cls(queries=dict(data["queries"]), source_file=data.get("file"))


def _clean(query: str) -> str:
    # The query is embedded as a subquery, where a trailing semicolon is a syntax error.
    return query.strip().rstrip(";").strip()


def load_mapping(path: str | None) -> Mapping:
    """Read a TOML mapping file; entities it leaves out use `SELECT * FROM <entity>`."""
    if path is None:
        return Mapping(queries=dict(DEFAULT_QUERIES))
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"mapping file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"mapping file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"mapping file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(STAGES))
    if unknown:
        raise ConfigError(f"mapping file {path}: unknown section [{unknown[0]}] (sections: {', '.join(STAGES)})")
    queries = {}
    for stage in STAGES:
        section = data.get(stage, {})
        if not isinstance(section, dict):
            raise ConfigError(f"mapping file {path}: [{stage}] must be a table with a `query`")
        extra = sorted(set(section) - {"query"})
        if extra:
            raise ConfigError(f"mapping file {path}: [{stage}] has an unknown key `{extra[0]}` (only `query`)")
        query = section.get("query", DEFAULT_QUERIES[stage])
        if not isinstance(query, str) or not _clean(query):
            raise ConfigError(f"mapping file {path}: [{stage}] query must be a non-empty string")
        queries[stage] = _clean(query)
    return Mapping(queries=queries, source_file=str(path))


def check_columns(stage: str, columns: list[str]) -> None:
    """Refuse columns that are not fields of the entity, duplicates, and missing required columns."""
    allowed = ENTITY_FIELDS[stage]
    seen: set[str] = set()
    for column in columns:
        if column == "data_source":
            raise ConfigError(
                f"{stage} query returns a column `data_source`: the importer sets it from "
                "GROWPANEL_DATA_SOURCE_ID, remove it from the query"
            )
        if column not in allowed:
            raise ConfigError(
                f"{stage} query returns a column `{column}` that is not a {stage[:-1]} field; "
                f"allowed: {', '.join(allowed)}"
            )
        if column in seen:
            raise ConfigError(f"{stage} query returns the column `{column}` twice")
        seen.add(column)
    for required in REQUIRED_COLUMNS[stage]:
        options = required if isinstance(required, tuple) else (required,)
        if not any(option in seen for option in options):
            wanted = " or ".join(f"`{o}`" for o in options)
            raise ConfigError(f"{stage} query has no column {wanted}, which is required")


def _writes(plan: Any) -> bool:
    if isinstance(plan, dict):
        if plan.get("Node Type") == "ModifyTable":
            return True
        return any(_writes(value) for value in plan.values())
    if isinstance(plan, list):
        return any(_writes(item) for item in plan)
    return False


def _first_line(exc: psycopg.Error) -> str:
    return (exc.diag.message_primary or str(exc) or type(exc).__name__).splitlines()[0]


def describe_query(conn: psycopg.Connection[Any], stage: str, query: str) -> list[str]:
    """The column names the query returns, without reading any row (inside a READ ONLY transaction)."""
    try:
        with conn.cursor() as cur:
            # EXPLAIN names a statement that writes (INSERT/UPDATE/DELETE, a writable CTE) before we wrap it.
            cur.execute(f"EXPLAIN (FORMAT JSON) {query}")  # noqa: S608 - the user's own SQL, read only
            row = cur.fetchone()
            if row is not None and _writes(row[0]):
                raise ConfigError(
                    f"{stage} query writes to the source (INSERT, UPDATE or DELETE); the source is only ever read"
                )
            cur.execute(f"SELECT * FROM ({query}) AS gp_source LIMIT 0")  # noqa: S608
            columns = [d.name for d in cur.description or []]
    except psycopg.Error as exc:
        if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
            raise ConfigError(
                f"{stage} query tries to write to the source, which is read only: {_first_line(exc)}"
            ) from None
        raise ConfigError(f"{stage} query failed: {_first_line(exc)}") from None
    finally:
        conn.rollback()
    return columns


def plan_stage(conn: psycopg.Connection[Any], stage: str, query: str) -> None:
    """Plan the query as producers run it (grouped by id, invoices by customer and date): type problems show now."""
    try:
        conn.execute(sql.SQL("EXPLAIN ") + stage_query(stage, query, 1, None))
    except psycopg.Error as exc:
        keys = "`id`, `customer_id` and `date`" if stage == "invoices" else "`id`"
        raise ConfigError(
            f"{stage} query cannot be read in the importer's order (it groups and sorts rows by {keys}): "
            f"{_first_line(exc)}"
        ) from None
    finally:
        conn.rollback()


def check_mapping(conn: psycopg.Connection[Any], mapping: Mapping) -> dict[str, list[str]]:
    """Check every query against the source; return each stage's columns."""
    result = {}
    for stage in STAGES:
        columns = describe_query(conn, stage, mapping.queries[stage])
        check_columns(stage, columns)
        plan_stage(conn, stage, mapping.queries[stage])
        result[stage] = columns
    return result
