"""The `growpanel-backfill` command line."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """Import a billing history from PostgreSQL into GrowPanel."""


def _register_sandbox() -> None:
    from sandbox.cli import sandbox_command

    main.add_command(sandbox_command, "sandbox")


_register_sandbox()
