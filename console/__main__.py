"""`python -m console` is `growpanel-backfill`."""

from console.cli import main

main(prog_name="growpanel-backfill")
