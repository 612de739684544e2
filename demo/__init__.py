"""The demo backfill (README's first command) and the sample billing data it seeds."""
