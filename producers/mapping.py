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
from producers.entities import ENTITIES
from producers.source import stage_query
from producers.statement import embedded, single_statement

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
        if not isinstance(query, str) or not query.strip():
            raise ConfigError(f"mapping file {path}: [{stage}] query must be a non-empty string")
        # The query is embedded as a subquery: a final `;` must go, and a second statement is refused here.
        queries[stage] = single_statement(stage, query.strip())
    return Mapping(queries=queries, source_file=str(path))


def check_columns(stage: str, columns: list[str]) -> None:
    """Refuse columns that are not fields of the entity, duplicates, and missing required columns."""
    spec = ENTITIES[stage]
    allowed = spec.fields
    seen: set[str] = set()
    for column in columns:
        if column == "data_source":
            raise ConfigError(
                f"{stage} query returns a column `data_source`: the importer sets it from "
                "GROWPANEL_DATA_SOURCE_ID, remove it from the query"
            )
        if column not in allowed:
            raise ConfigError(
                f"{stage} query returns a column `{column}` that is not a {spec.singular} field; "
                f"allowed: {', '.join(allowed)}"
            )
        if column in seen:
            raise ConfigError(f"{stage} query returns the column `{column}` twice")
        seen.add(column)
    for required in spec.required_columns:
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


def _relations(plan: Any, found: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """(schema, table) of every relation a VERBOSE JSON plan scans."""
    if isinstance(plan, dict):
        if "Relation Name" in plan and "Schema" in plan:
            found.add((plan["Schema"], plan["Relation Name"]))
        for value in plan.values():
            _relations(value, found)
    elif isinstance(plan, list):
        for item in plan:
            _relations(item, found)
    return found


def _first_line(exc: psycopg.Error) -> str:
    return (exc.diag.message_primary or str(exc) or type(exc).__name__).splitlines()[0]


def _query_error(stage: str, exc: psycopg.Error) -> ConfigError:
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return ConfigError(f"{stage} query tries to write to the source, which is read only: {_first_line(exc)}")
    if "multiple commands" in _first_line(exc):
        return ConfigError(f"{stage} query holds more than one SQL statement: a mapping query must be exactly one SELECT")
    return ConfigError(f"{stage} query failed: {_first_line(exc)}")


def explain(conn: psycopg.Connection[Any], query: str) -> Any:
    """The query's VERBOSE JSON plan, as one prepared statement (never several) in a READ ONLY transaction."""
    with conn.cursor() as cur:
        # prepare=True: the extended protocol runs exactly one statement, so `...; COMMIT; CREATE ...`
        # is refused by the server instead of run (the simple protocol would run every part of it).
        cur.execute(f"EXPLAIN (VERBOSE, FORMAT JSON) {query}", prepare=True)  # noqa: S608 - the user's own SQL
        row = cur.fetchone()
    return None if row is None else row[0]


def describe_query(conn: psycopg.Connection[Any], stage: str, query: str) -> list[str]:
    """The column names the query returns, without reading any row (inside a READ ONLY transaction)."""
    try:
        # EXPLAIN names a statement that writes (INSERT/UPDATE/DELETE, a writable CTE) before we wrap it.
        if _writes(explain(conn, query)):
            raise ConfigError(
                f"{stage} query writes to the source (INSERT, UPDATE or DELETE); the source is only ever read"
            )
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM ({embedded(query)}) AS gp_source LIMIT 0", prepare=True)  # noqa: S608
            columns = [d.name for d in cur.description or []]
    except psycopg.Error as exc:
        raise _query_error(stage, exc) from None
    finally:
        conn.rollback()
    return columns


def plan_stage(conn: psycopg.Connection[Any], stage: str, query: str) -> None:
    """Plan the query as producers run it (grouped by id, invoices by customer and date): type problems show now."""
    try:
        conn.execute(sql.SQL("EXPLAIN ") + stage_query(stage, query, 1), prepare=True)
    except psycopg.Error as exc:
        if "multiple commands" in _first_line(exc):
            raise _query_error(stage, exc) from None
        names = [f"`{k}`" for k in ENTITIES[stage].order_columns]
        keys = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
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


def role_warning(conn: psycopg.Connection[Any], mapping: Mapping) -> str | None:
    """One line when the source role could write what the mapping reads (or anything: a superuser)."""
    try:
        row = conn.execute(
            "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user", prepare=True
        ).fetchone()
        if row is not None and row[1]:
            return (
                f"warning: the source role {row[0]} is a superuser, which can write anything (and run programs): "
                "give the importer a SELECT-only role (README, Security)"
            )
        writable: list[str] = []
        for stage in STAGES:
            for schema, table in sorted(_relations(explain(conn, mapping.queries[stage]), set())):
                name = f"{schema}.{table}"
                can = conn.execute(
                    "SELECT has_table_privilege(format('%%I.%%I', %s::text, %s::text), 'INSERT,UPDATE,DELETE,TRUNCATE')",
                    (schema, table),
                ).fetchone()
                if can is not None and can[0] and name not in writable:
                    writable.append(name)
    except psycopg.Error:
        return None
    finally:
        conn.rollback()
    if not writable:
        return None
    shown = ", ".join(writable[:3]) + (f" and {len(writable) - 3} more" if len(writable) > 3 else "")
    user = row[0] if row is not None else "of SOURCE_DATABASE_URL"
    return (
        f"warning: the source role {user} can write to {shown}, which the mapping reads: "
        "give the importer a SELECT-only role (README, Security)"
    )
