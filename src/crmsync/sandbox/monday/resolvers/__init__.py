"""Resolvers by area; :func:`all_resolvers` merges them as ``{type: {field: resolver}}``."""

from __future__ import annotations

from typing import Any

from crmsync.sandbox.monday.resolvers import boards, items, meta, mutations, webhooks


def all_resolvers() -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for module in (boards, items, mutations, webhooks, meta):
        for type_name, fields in module.RESOLVERS.items():
            merged.setdefault(type_name, {}).update(fields)
    return merged
