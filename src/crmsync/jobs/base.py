"""What a job is: a class with typed settings and ``run(ctx) -> str``, and the context it runs in.

A job's ``Settings`` (a pydantic model) are its ``args:`` in ``crmsync.yaml``: validated when the
file is loaded (``crmsync check`` names the line of each problem) and documented in
``docs/configuration.md`` by the reference generator. ``run`` reports how far it got through
``ctx.progress`` and returns a one-line summary (recorded in ``job_runs``).

Jobs reach other systems only through the connector factory of the context
(``ctx.connector(name)``, the runtime's), asking for capabilities with
:func:`crmsync.connectors.capabilities.require`, never by connection type.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import ConfigDict, ValidationError

from crmsync.connectors.capabilities import require
from crmsync.connectors.settings import Model
from crmsync.errors import ConfigError
from crmsync.store.db import Store
from crmsync.store.schema import utcnow

if TYPE_CHECKING:
    from crmsync.alerts import Alerter
    from crmsync.config.models import Config
    from crmsync.connectors.base import Connector
    from crmsync.engine.runtime import Runtime

C = TypeVar("C")

#: progress(done, total, what): ``total`` None while unknown (a stream)
Progress = Callable[[int, "int | None", str], None]


def no_progress(done: int, total: int | None, what: str) -> None:
    """The progress callback of a run nobody watches."""


class JobSettings(Model):
    """A job's ``args:``; a job without settings takes none."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class JobContext:
    """Everything a job may use. ``settings`` are the job's validated ``args:``."""

    store: Store
    config: Config | None
    args: Mapping[str, Any]
    logger: logging.Logger
    #: the configured name of the job (``jobs.NAME``), as recorded in ``job_runs``
    name: str = ""
    #: the occurrence being run; None when started by hand (``crmsync jobs run``)
    scheduled_for: datetime | None = None
    clock: Callable[[], datetime] = field(default=utcnow, repr=False)
    settings: Any = None
    progress: Progress = field(default=no_progress, repr=False)
    #: the process's runtime, when the job runs in one; else one is built on first use
    runtime_given: Runtime | None = field(default=None, repr=False)
    _runtime: Runtime | None = field(default=None, repr=False)

    def now(self) -> datetime:
        return self.clock()

    @property
    def runtime(self) -> Runtime:
        """The runtime the job's connectors come from (the process's, or one of its own)."""
        if self.runtime_given is not None:
            return self.runtime_given
        if self._runtime is None:
            if self.config is None:
                raise ConfigError(f"job {self.name!r} needs the configuration's connections")
            from crmsync.engine.runtime import Runtime

            self._runtime = Runtime(self.config, upgrade=False)
        return self._runtime

    def connector(self, name: str, capability: type[C], what: str = "") -> C:
        """Connection ``name``'s connector as ``capability``; a ConfigError naming what is missing."""
        where = f"job {self.name!r}" + (f" ({what})" if what else "")
        found: Connector = self.runtime.connector(name)
        return require(found, capability, where)

    @property
    def alerter(self) -> Alerter:
        return self.runtime.alerter

    def close(self) -> None:
        """Close what the job opened (a runtime of its own and its connectors)."""
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None


class Job(ABC):
    """A scheduled job. Register a subclass with :func:`crmsync.jobs.registry.job`.

    ``run`` returns a one-line summary; it raises to fail, and any exception is caught, logged and
    recorded as the run's failure by the scheduler. Running a job twice in a row changes nothing
    the second time: each job compares before it writes.
    """

    #: the registered name, set by the ``@job(...)`` decorator
    name: ClassVar[str] = ""
    #: the model of the job's ``args:``
    Settings: ClassVar[type[JobSettings]] = JobSettings

    @classmethod
    def settings_of(cls, args: Mapping[str, Any]) -> Any:
        """``args`` validated into the job's settings (pydantic's ValidationError when invalid)."""
        return cls.Settings.model_validate(dict(args))

    @classmethod
    def check_args(cls, args: Mapping[str, Any]) -> list[str]:
        """What is wrong with ``args`` (empty when nothing), one line per problem."""
        try:
            cls.settings_of(args)
        except ValidationError as exc:
            return [
                f"args.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False)
            ]
        return []

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    @abstractmethod
    def run(self, ctx: JobContext) -> str:
        """Do the work; return a one-line summary of what was done."""
