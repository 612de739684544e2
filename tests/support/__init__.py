"""Helpers that run the real parts for integration tests: databases, Redis, sandbox, workers, CLI."""
