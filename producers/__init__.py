"""Producers: read the billing source through the mapping, normalise and check each row, and write batches."""
