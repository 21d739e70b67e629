"""Name → connector class. One way to register a connector: :func:`register`."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from crmsync.connectors.base import Connector
from crmsync.errors import ConfigError

_REGISTRY: dict[str, type[Connector]] = {}

#: built-in kinds and the module that registers each (imported on first use)
_BUILTIN = {
    "salesforce": "crmsync.connectors.salesforce",
    "app": "crmsync.connectors.app",
    "monday": "crmsync.connectors.monday",
}


def register(kind: str) -> Callable[[type[Connector]], type[Connector]]:
    def decorate(cls: type[Connector]) -> type[Connector]:
        cls.kind = kind
        _REGISTRY[kind] = cls
        return cls

    return decorate


def kinds() -> list[str]:
    return sorted(set(_REGISTRY) | set(_BUILTIN))


def connector_class(kind: str) -> type[Connector]:
    if kind not in _REGISTRY and kind in _BUILTIN:
        import_module(_BUILTIN[kind])
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ConfigError(f"unknown connection type {kind!r}; valid: {', '.join(kinds())}") from None
