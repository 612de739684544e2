"""docker-compose.yml and the Dockerfile, checked without a Docker engine: every service runs a real
command of ours with real options, every variable it sets is a real setting, and the stack exposes
nothing (issue 12): ports on 127.0.0.1, the sandbox in a profile with a key of its own, Flower behind
basic auth, the source read by a role that can only SELECT."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from console.cli import main
from backfill.settings import Settings
from tests.support.services import PROJECT_ROOT

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
COMPOSE_TEXT = (PROJECT_ROOT / "docker-compose.yml").read_text()
OURS = {name: svc for name, svc in SERVICES.items() if "build" in svc}
IMPORTER = {name: svc for name, svc in OURS.items() if name != "sandbox"}
SETTINGS = {name.upper() for name in Settings.model_fields}
# Read by our commands beside Settings: Flower's basic auth (see `growpanel-backfill flower`).
EXTRA_VARIABLES = {"FLOWER_BASIC_AUTH"}
# Read by the sandbox (sandbox/cli.py): its keys and the token of its /_sandbox/ routes.
SANDBOX_VARIABLES = {"SANDBOX_KEYS", "SANDBOX_INSPECT_TOKEN"}
_DEFAULTS = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")
# Variables docker compose itself substitutes into the file (from the shell or its `.env`).
COMPOSE_VARIABLES = set(_DEFAULTS.findall(COMPOSE_TEXT))
READER_SQL = (PROJECT_ROOT / "examples" / "compose-source-reader.sql").read_text()


def _expand(text: str) -> str:
    """Compose's ${VAR:-default} with the default (or a placeholder for required ones)."""
    return _DEFAULTS.sub(lambda m: (re.search(r":?-([^}]*)\}", m.group(0)) or [None, "x"])[1] or "x", text)


def _command(svc: dict[str, Any]) -> list[str]:
    command = svc.get("command", [])
    parts = shlex.split(command) if isinstance(command, str) else list(command)
    return [_expand(p) for p in parts]


def test_our_services_share_one_image_built_here() -> None:
    assert set(OURS) == {"migrate", "sandbox", "worker", "flower", "cli"}
    assert {svc["image"] for svc in IMPORTER.values()} == {"growpanel-backfill:latest"}
    assert all(svc["build"] == "." for svc in IMPORTER.values())
    # The sandbox's web server is an extra: its own image, built with it, never the workers' image.
    sandbox = SERVICES["sandbox"]
    assert sandbox["build"] == {"context": ".", "args": {"EXTRAS": "sandbox"}}
    assert sandbox["image"] != "growpanel-backfill:latest"
    assert "ARG EXTRAS" in (PROJECT_ROOT / "Dockerfile").read_text()


@pytest.mark.parametrize("name", sorted(OURS))
def test_every_command_is_a_real_subcommand_with_real_options(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    args = _command(OURS[name])
    # Options may come from the container's environment (the sandbox's keys do): parse with it.
    for variable, value in (OURS[name].get("environment") or {}).items():
        monkeypatch.setenv(variable, _expand(str(value)))
    with click.Context(main) as parent:
        command = main.get_command(parent, args[0])
        assert command is not None, f"{name}: `growpanel-backfill {args[0]}` does not exist"
        # Parsing (not running) the arguments fails on an unknown option or a bad value.
        command.make_context(args[0], args[1:], parent=parent)


def test_every_listed_command_loads() -> None:
    with click.Context(main) as ctx:
        for name in main.list_commands(ctx):
            assert isinstance(main.get_command(ctx, name), click.Command), name


@pytest.mark.parametrize("name", sorted(IMPORTER))
def test_every_variable_is_a_real_setting(name: str) -> None:
    env = IMPORTER[name].get("environment", {})
    unknown = set(env) - SETTINGS - EXTRA_VARIABLES
    assert not unknown, f"{name} sets variables no setting reads: {sorted(unknown)}"
    assert {"DATABASE_URL", "SOURCE_DATABASE_URL", "CELERY_BROKER_URL", "GROWPANEL_API_URL"} <= set(env)


def _host_ip(port: Any) -> str:
    """The host address a `ports:` entry publishes on ("" when it publishes on every interface)."""
    if isinstance(port, dict):
        return _expand(str(port.get("host_ip", "")))
    parts = _expand(str(port)).split(":")
    return parts[0] if len(parts) == 3 else ""


def test_every_published_port_is_bound_to_localhost() -> None:
    published = {(name, str(p)): _host_ip(p) for name, svc in SERVICES.items() for p in svc.get("ports", [])}
    assert published, "the file publishes no port at all: is this still the compose file?"
    assert {host for host in published.values()} == {"127.0.0.1"}, published
    assert not any("expose" in svc or svc.get("network_mode") == "host" for svc in SERVICES.values())
    # PostgreSQL and Redis are reached over the compose network only.
    assert "ports" not in SERVICES["postgres"] and "ports" not in SERVICES["redis"]


def test_the_sandbox_is_in_a_profile_and_never_sees_the_real_key() -> None:
    sandbox = SERVICES["sandbox"]
    # A plain `docker compose up` starts only services without a profile.
    assert sandbox["profiles"] == ["sandbox"]
    plain_up = {name for name, svc in SERVICES.items() if not svc.get("profiles")}
    assert "sandbox" not in plain_up and {"postgres", "redis", "migrate", "worker", "flower"} <= plain_up
    # Its keys come from its own variable, by environment: nothing on its command line, no GROWPANEL_*.
    env = sandbox["environment"]
    assert set(env) <= SANDBOX_VARIABLES, sorted(env)
    assert env["SANDBOX_KEYS"].startswith("${SANDBOX_API_KEY")
    assert "GROWPANEL_" not in yaml.safe_dump(sandbox)
    # and it does not inherit the importer's block (which carries GROWPANEL_API_KEY).
    block = re.search(r"(?ms)^  sandbox:\n(.*?)(?=^  \w[\w-]*:\n)", COMPOSE_TEXT)
    assert block is not None and "*importer" not in block.group(1) and "GROWPANEL_" not in block.group(1)
    command = _command(sandbox)
    assert not {"--key", "--inspect-token"} & set(command), command
    assert not any("KEY" in part or "TOKEN" in part for part in command)
    # The importer reaches the real API unless told otherwise, so a real key never goes to the sandbox by default.
    importer_env = SERVICES["worker"]["environment"]
    assert _expand(importer_env["GROWPANEL_API_URL"]) == "https://api.growpanel.io"
    assert _expand(importer_env["GROWPANEL_API_KEY"]) in {"", "x"}


def test_the_source_is_read_by_a_role_that_can_only_select() -> None:
    # The init script is mounted into the PostgreSQL image's init directory, after the database it grants on.
    mounts = [v.split(":")[:2] for v in SERVICES["postgres"]["volumes"] if v.startswith("./")]
    targets = {source: target for source, target in mounts}
    target = targets["./examples/compose-source-reader.sql"]
    assert target.startswith("/docker-entrypoint-initdb.d/")
    assert target > targets["./examples/compose-init.sql"], "the role's grants must run after CREATE DATABASE billing"
    # The importer's default source connection logs in as that role, not as the superuser.
    source_url = _expand(SERVICES["worker"]["environment"]["SOURCE_DATABASE_URL"])
    assert source_url.startswith("postgresql://growpanel_reader:") and "backfill@" not in source_url
    # The script grants SELECT, USAGE on schemas and CONNECT, nothing that writes or creates.
    # psql meta-commands (getenv, connect) are lines of their own, not SQL.
    sql_text = re.sub(r"(?m)^\\.*$|--[^\n]*", "", READER_SQL)
    statements = [" ".join(s.split()).upper() for s in sql_text.split(";")]
    grants = [s for s in statements if "GRANT " in s and not s.startswith("REVOKE")]
    assert grants
    for grant in grants:
        privileges = grant.split("GRANT ", 1)[1].split(" ON ", 1)[0]
        assert {p.strip() for p in privileges.split(",")} <= {"SELECT", "USAGE", "CONNECT"}, grant
    assert "ALTER ROLE GROWPANEL_READER SET DEFAULT_TRANSACTION_READ_ONLY = ON" in statements
    role = next(s for s in statements if s.startswith("CREATE ROLE"))
    assert "NOSUPERUSER" in role and "LOGIN" in role
    assert SERVICES["postgres"]["environment"]["SOURCE_READER_PASSWORD"].startswith("${SOURCE_READER_PASSWORD")


def test_the_worker_scales_and_waits_for_the_migration() -> None:
    worker = SERVICES["worker"]
    assert "container_name" not in worker and "ports" not in worker, "--scale worker=N needs no fixed name or port"
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert _command(SERVICES["migrate"]) == ["migrate"]


def test_flower_requires_basic_auth_from_the_environment() -> None:
    auth = SERVICES["flower"]["environment"]["FLOWER_BASIC_AUTH"]
    assert "${FLOWER_PASSWORD:?" in auth, "the password must come from the environment, and be required"
    assert "flower" in _command(SERVICES["flower"])
    # Published on localhost unless FLOWER_BIND says otherwise.
    (port,) = SERVICES["flower"]["ports"]
    assert port.startswith("${FLOWER_BIND:-127.0.0.1}:")


def test_the_broker_keeps_its_queues() -> None:
    command = " ".join(_command(SERVICES["redis"]))
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command


def test_the_dockerfile_copies_every_package_and_runs_the_cli() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    for package in ("models", "backfill", "producers", "workers", "console", "demo", "migrations", "sandbox"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert 'ENTRYPOINT ["growpanel-backfill"]' in dockerfile
    for mounted in re.findall(r"\./([\w./-]+):", (PROJECT_ROOT / "docker-compose.yml").read_text()):
        assert (PROJECT_ROOT / mounted).exists(), f"compose mounts {mounted}, which does not exist"


def test_the_example_environment_names_only_real_settings() -> None:
    example = Path(PROJECT_ROOT / ".env.example").read_text()
    names = {line.split("=", 1)[0].lstrip("# ").strip() for line in example.splitlines() if re.match(r"#? ?[A-Z_]+=", line)}
    known = SETTINGS | EXTRA_VARIABLES | COMPOSE_VARIABLES
    assert names and names <= known, sorted(names - known)
