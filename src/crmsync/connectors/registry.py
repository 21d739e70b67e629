"""Connection type → (settings model, connector class): one registry entry per connector.

A connector is a folder plus one entry here (dlt's destination registry). Its settings model —
one pydantic model with ``type: Literal["<kind>"]``, the YAML keys of a connection — builds the
configuration's connection union (:func:`settings_models`), so a setting is declared once, next to
the code that reads it. Both halves are imported on first use only: checking a configuration
imports settings models, never a vendor client.

Built-in connectors are listed in :data:`_BUILTIN`; others call :func:`register` (a plug-in
module imported before the configuration is read). An unknown type fails with the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from pydantic import BaseModel

from crmsync.connectors.base import Connector
from crmsync.errors import ConfigError

#: built-in kinds: "module:attribute" of the settings model and of the connector class
_BUILTIN: dict[str, tuple[str, str]] = {
    "salesforce": (
        "crmsync.connectors.salesforce.settings:SalesforceConnection",
        "crmsync.connectors.salesforce.connector:SalesforceConnector",
    ),
    "app": ("crmsync.connectors.app.settings:AppConnection", "crmsync.connectors.app:AppConnector"),
    "monday": (
        "crmsync.connectors.monday.settings:MondayConnection",
        "crmsync.connectors.monday.connector:MondayConnector",
    ),
    "memory": (
        "crmsync.connectors.memory.settings:MemoryConnection",
        "crmsync.connectors.memory.connector:MemoryConnector",
    ),
    "trello": (
        "crmsync.connectors.trello.settings:TrelloConnection",
        "crmsync.connectors.trello.connector:TrelloConnector",
    ),
    "sql": (
        "crmsync.connectors.sql.settings:SqlConnection",
        "crmsync.connectors.sql.connector:SqlConnector",
    ),
}


@dataclass(frozen=True)
class Entry:
    kind: str
    settings: Callable[[], type[BaseModel]]
    connector: Callable[[], type[Connector]]


_REGISTRY: dict[str, Entry] = {}


def _lazy(path: str) -> Callable[[], Any]:
    module, _, attribute = path.partition(":")
    return lambda: getattr(import_module(module), attribute)


def register(kind: str, settings: type[BaseModel]) -> Callable[[type[Connector]], type[Connector]]:
    """Class decorator: register a connector class and its settings model under ``kind``."""

    def decorate(cls: type[Connector]) -> type[Connector]:
        cls.kind = kind
        _REGISTRY[kind] = Entry(kind, lambda: settings, lambda: cls)
        return cls

    return decorate


def kinds() -> list[str]:
    """Every registered connection type."""
    return sorted(set(_REGISTRY) | set(_BUILTIN))


def _entry(kind: str) -> Entry:
    found = _REGISTRY.get(kind)
    if found is None and kind in _BUILTIN:
        settings, connector = _BUILTIN[kind]
        found = Entry(kind, _lazy(settings), _lazy(connector))
    if found is None:
        raise ConfigError(f"unknown connection type {kind!r}; valid: {', '.join(kinds())}")
    return found


def settings_model(kind: str) -> type[BaseModel]:
    """The settings model of a connection type (its YAML keys)."""
    model: type[BaseModel] = _entry(kind).settings()
    return model


def settings_models() -> list[type[BaseModel]]:
    """The settings model of every type, in the order of :func:`kinds`."""
    return [settings_model(kind) for kind in kinds()]


def connector_class(kind: str) -> type[Connector]:
    """The connector class of a connection type (imported now)."""
    cls: type[Connector] = _entry(kind).connector()
    cls.kind = kind
    return cls


def create(name: str, settings: BaseModel) -> Connector:
    """The one way to build a connector: from a connection's name and validated settings."""
    kind = str(getattr(settings, "type", ""))
    return connector_class(kind).from_config(name, settings)
