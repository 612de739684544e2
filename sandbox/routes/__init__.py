"""Route tables, one module per family of endpoints."""
