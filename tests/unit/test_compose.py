"""docker-compose.yml and the Dockerfile, checked without a Docker engine: every service runs a real
command of ours with real options, and every variable it sets is a real setting."""

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
OURS = {name: svc for name, svc in SERVICES.items() if "build" in svc}
SETTINGS = {name.upper() for name in Settings.model_fields}
# Read by our commands beside Settings: Flower's basic auth (see `growpanel-backfill flower`).
EXTRA_VARIABLES = {"FLOWER_BASIC_AUTH"}
_DEFAULTS = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


def _expand(text: str) -> str:
    """Compose's ${VAR:-default} with the default (or a placeholder for required ones)."""
    return _DEFAULTS.sub(lambda m: (re.search(r":?-([^}]*)\}", m.group(0)) or [None, "x"])[1] or "x", text)


def _command(svc: dict[str, Any]) -> list[str]:
    command = svc.get("command", [])
    parts = shlex.split(command) if isinstance(command, str) else list(command)
    return [_expand(p) for p in parts]


def test_our_services_share_one_image_built_here() -> None:
    assert set(OURS) == {"migrate", "sandbox", "worker", "flower", "cli"}
    assert {svc["image"] for svc in OURS.values()} == {"growpanel-backfill:latest"}
    assert all(svc["build"] == "." for svc in OURS.values())


@pytest.mark.parametrize("name", sorted(OURS))
def test_every_command_is_a_real_subcommand_with_real_options(name: str) -> None:
    args = _command(OURS[name])
    with click.Context(main) as parent:
        command = main.get_command(parent, args[0])
        assert command is not None, f"{name}: `growpanel-backfill {args[0]}` does not exist"
        # Parsing (not running) the arguments fails on an unknown option or a bad value.
        command.make_context(args[0], args[1:], parent=parent)


def test_every_listed_command_loads() -> None:
    with click.Context(main) as ctx:
        for name in main.list_commands(ctx):
            assert isinstance(main.get_command(ctx, name), click.Command), name


@pytest.mark.parametrize("name", sorted(OURS))
def test_every_variable_is_a_real_setting(name: str) -> None:
    env = OURS[name].get("environment", {})
    unknown = set(env) - SETTINGS - EXTRA_VARIABLES
    assert not unknown, f"{name} sets variables no setting reads: {sorted(unknown)}"
    assert {"DATABASE_URL", "SOURCE_DATABASE_URL", "CELERY_BROKER_URL", "GROWPANEL_API_URL"} <= set(env)


def test_the_worker_scales_and_waits_for_the_migration() -> None:
    worker = SERVICES["worker"]
    assert "container_name" not in worker and "ports" not in worker, "--scale worker=N needs no fixed name or port"
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert _command(SERVICES["migrate"]) == ["migrate"]


def test_flower_requires_basic_auth_from_the_environment() -> None:
    auth = SERVICES["flower"]["environment"]["FLOWER_BASIC_AUTH"]
    assert "${FLOWER_PASSWORD:?" in auth, "the password must come from the environment, and be required"
    assert "flower" in _command(SERVICES["flower"])


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
    assert names and names <= SETTINGS | EXTRA_VARIABLES, sorted(names - SETTINGS - EXTRA_VARIABLES)
