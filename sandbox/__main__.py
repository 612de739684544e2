"""`python -m sandbox ...`: the same as `growpanel-backfill sandbox ...`."""

from sandbox.cli import sandbox_command

if __name__ == "__main__":
    sandbox_command(prog_name="sandbox")
