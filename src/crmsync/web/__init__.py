"""The ASGI app: ingest and read-through API, health and metrics (stateless; run as many as needed)."""
