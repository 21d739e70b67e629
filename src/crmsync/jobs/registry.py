"""Name → job class. One way to register a job: the :func:`job` decorator::

    @job("purge-history")
    class PurgeHistory(Job):
        Settings = PurgeSettings
        def run(self, ctx: JobContext) -> str: ...

The built-in jobs live in the modules of :data:`BUILTIN_MODULES`, imported on the first look-up.
Plug-ins ship theirs in a module named by an entry point of the ``crmsync.jobs`` group, imported
the first time a name is looked up. An unknown name fails with the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from importlib.metadata import entry_points

from crmsync.errors import ConfigError
from crmsync.jobs.base import Job

ENTRY_POINT_GROUP = "crmsync.jobs"
BUILTIN_MODULES = (
    "crmsync.jobs.purge",
    "crmsync.jobs.report_import",
    "crmsync.jobs.cards",
    "crmsync.jobs.workload",
    "crmsync.jobs.nudge",
    "crmsync.jobs.healing",
)

_REGISTRY: dict[str, type[Job]] = {}
_loaded = False


def job(name: str) -> Callable[[type[Job]], type[Job]]:
    """Register the decorated :class:`Job` subclass under ``name``."""

    def decorate(cls: type[Job]) -> type[Job]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ConfigError(f"job {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _load() -> None:
    global _loaded
    if _loaded:
        return
    for module in BUILTIN_MODULES:
        import_module(module)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:
            raise ConfigError(f"job plug-in {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
    _loaded = True  # only once every plug-in loaded: a broken one keeps failing loudly


def names() -> list[str]:
    """Every registered job name, sorted (plug-ins included)."""
    _load()
    return sorted(_REGISTRY)


def get(name: str) -> type[Job]:
    """The job class called ``name``; :class:`ConfigError` listing the valid names if unknown."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown job {name!r}; valid: {', '.join(names())}") from None


def builtin() -> list[type[Job]]:
    """The built-in job classes, by name (for the configuration reference)."""
    _load()
    prefix = "crmsync.jobs."
    return [cls for _, cls in sorted(_REGISTRY.items()) if cls.__module__.startswith(prefix)]
