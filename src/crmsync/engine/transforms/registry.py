"""The transform registry: the :class:`Transform` interface, the :func:`transform` decorator, look-up.

There is one way to register a transform: the :func:`transform` decorator. Plug-ins ship theirs
in a module named by an entry point of the ``crmsync.transforms`` group (the entry point may
name the module or one decorated function); it is imported the first time a name is looked up.
An unknown name fails with the list of valid names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from crmsync.engine.transforms.values import shown
from crmsync.errors import ConfigError, CrmsyncError, FixTheData

ENTRY_POINT_GROUP = "crmsync.transforms"

TransformFunction = Callable[[Any, Mapping[str, Any], Mapping[str, Any]], Any]

_EMPTY: Mapping[str, Any] = {}


@dataclass(frozen=True)
class Transform:
    """A registered transform: call it as ``t(value, args, record)``."""

    name: str
    function: TransformFunction
    required_args: tuple[str, ...] = ()
    optional_args: tuple[str, ...] = ()
    doc: str = field(default="", compare=False)

    def __call__(
        self, value: Any, args: Mapping[str, Any] | None = None, record: Mapping[str, Any] | None = None
    ) -> Any:
        """The transformed value; bad input (even a plug-in's unexpected error) is :class:`FixTheData`."""
        try:
            return self.function(
                value, args if args is not None else _EMPTY, record if record is not None else _EMPTY
            )
        except CrmsyncError:
            raise
        except (ArithmeticError, LookupError, RecursionError, TypeError, ValueError) as exc:
            raise FixTheData(f"transform {self.name!r} cannot read {shown(value)}: {exc}") from exc

    @property
    def summary(self) -> str:
        """The first line of the docstring (what the docs quote)."""
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""

    def check_args(self, args: Mapping[str, Any]) -> list[str]:
        """What is wrong with ``args`` for this transform (empty when nothing)."""
        problems = [f"transform {self.name!r} needs args.{a}" for a in self.required_args if a not in args]
        known = set(self.required_args) | set(self.optional_args)
        for a in args:
            if a not in known:
                valid = ", ".join(sorted(known)) or "none"
                problems.append(f"transform {self.name!r} takes no arg {a!r}; valid: {valid}")
        return problems


_REGISTRY: dict[str, Transform] = {}
_plugins_loaded = False


def transform(
    name: str, *, required: Iterable[str] = (), optional: Iterable[str] = ()
) -> Callable[[TransformFunction], Transform]:
    """Register the decorated function under ``name``; ``required``/``optional`` name its args."""

    def decorate(function: TransformFunction) -> Transform:
        if name in _REGISTRY and _REGISTRY[name].function is not function:
            raise ConfigError(f"transform {name!r} is registered twice")
        t = Transform(name, function, tuple(required), tuple(optional), function.__doc__ or "")
        _REGISTRY[name] = t
        return t

    return decorate


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception as exc:
            raise ConfigError(f"transform plug-in {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        if not isinstance(loaded, Transform | ModuleType):
            raise ConfigError(
                f"transform plug-in {ep.name!r} ({ep.value}) must name a module or a function decorated "
                "with @crmsync.engine.transforms.transform"
            )
    _plugins_loaded = True  # only once every plug-in loaded: a broken one keeps failing loudly


def names() -> list[str]:
    """Every registered transform name, sorted (plug-ins included)."""
    _load_plugins()
    return sorted(_REGISTRY)


def get(name: str) -> Transform:
    """The transform called ``name``; :class:`ConfigError` listing the valid names if unknown."""
    _load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown transform {name!r}; valid: {', '.join(names())}") from None
