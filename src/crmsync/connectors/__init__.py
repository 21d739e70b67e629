"""Connectors: one folder per system, each behind the narrow interface of :mod:`.base`."""
