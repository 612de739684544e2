"""`python -m backfill` is `growpanel-backfill`."""

from backfill.cli import main

main(prog_name="growpanel-backfill")
