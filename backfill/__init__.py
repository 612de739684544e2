"""growpanel-backfill's kernel: settings, errors, the API client, runs, batches, dispatch, sweep, audit."""
