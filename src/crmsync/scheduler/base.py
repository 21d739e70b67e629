"""What a scheduled job is: a class with ``run(ctx) -> str`` and the context it runs in."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from crmsync.store.db import Store
from crmsync.store.schema import utcnow

if TYPE_CHECKING:
    from crmsync.config.models import Config


@dataclass(frozen=True)
class JobContext:
    """Everything a job may use. ``args`` are the job's ``args:`` from ``crmsync.yaml``."""

    store: Store
    config: Config | None
    args: Mapping[str, Any]
    logger: logging.Logger
    #: the configured name of the job (``jobs.NAME``), as recorded in ``job_runs``
    name: str = ""
    #: the occurrence being run; None when started by hand (``crmsync jobs run``)
    scheduled_for: datetime | None = None
    clock: Callable[[], datetime] = field(default=utcnow, repr=False)

    def now(self) -> datetime:
        return self.clock()


class Job(ABC):
    """A scheduled job. Register a subclass with :func:`crmsync.scheduler.registry.job`.

    ``run`` returns a one-line summary (recorded in ``job_runs``); it raises to fail, and any
    exception is caught, logged and recorded as the run's failure by the scheduler.
    """

    #: the registered name, set by the ``@job(...)`` decorator
    name: ClassVar[str] = ""

    @classmethod
    def check_args(cls, args: Mapping[str, Any]) -> list[str]:
        """What is wrong with ``args`` (empty when nothing); checked when the config is loaded."""
        return []

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    @abstractmethod
    def run(self, ctx: JobContext) -> str:
        """Do the work; return a one-line summary of what was done."""
