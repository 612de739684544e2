"""growpanel-backfill: the importer's core (settings, API client, run coordination, command line)."""
