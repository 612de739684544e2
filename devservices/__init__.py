"""Services for development, shared by the tests and the benchmark: throwaway PostgreSQL databases,
private Redis servers, free ports and polling. Not part of the product (never installed)."""

from devservices.services import ADMIN_URL, Database, RedisServer, free_port, wait_until

__all__ = ["ADMIN_URL", "Database", "RedisServer", "free_port", "wait_until"]
