"""The scheduler: fires each configured job at the occurrences of its cron expression.

Any number of schedulers (one per ``crmsync run`` or ``crmsync scheduler`` process) may tick
against the same store: each occurrence is fired by exactly one of them (see
:mod:`crmsync.scheduler.claims`), and every run is recorded in ``job_runs``
(:mod:`crmsync.scheduler.runs`). A job's exception is caught, logged and recorded as the run's
failure; it never stops the scheduler.

One scheduler runs the jobs it claimed one after another, in the thread that ticks. A job that
runs longer than its period may overlap its own next occurrence fired by another process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from crmsync.jobs import registry
from crmsync.jobs.base import JobContext, Progress, no_progress
from crmsync.scheduler import claims, runs
from crmsync.scheduler.cron import Schedule
from crmsync.store.db import Store
from crmsync.store.schema import utcnow

if TYPE_CHECKING:
    from crmsync.config.models import Config
    from crmsync.engine.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSpec:
    """One configured job: which registered ``job`` runs, when (``cron``), with which ``args``."""

    job: str
    cron: str
    args: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.cron)


def specs_from_config(config: Config) -> dict[str, JobSpec]:
    """The ``jobs:`` section of ``config`` as :class:`JobSpec` values, by name."""
    return {
        name: JobSpec(job=c.job, cron=c.cron, args=dict(c.args), enabled=c.enabled)
        for name, c in config.jobs.items()
    }


def default_owner() -> str:
    """``host:pid``, the name a scheduler records as the claimer of the occurrences it fires."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run_job(
    store: Store,
    name: str,
    spec: JobSpec,
    *,
    config: Config | None = None,
    clock: Callable[[], datetime] = utcnow,
    run_id: int | None = None,
    scheduled_for: datetime | None = None,
    progress: Progress = no_progress,
    runtime: Runtime | None = None,
) -> runs.JobRun:
    """Run the job ``name`` now and record it (a new ``job_runs`` row unless ``run_id`` is the
    one its claim started); the run's outcome, never an exception from the job itself.

    ``progress(done, total, what)`` hears how far the job got; ``runtime`` lends the process's
    connectors (else the job builds its own from ``config`` and closes them when done)."""
    if run_id is None:
        run_id = runs.start(store, name, clock())
    logger = logging.getLogger(f"crmsync.jobs.{name}")
    ctx: JobContext | None = None
    try:
        cls = registry.get(spec.job)
        ctx = JobContext(
            store,
            config,
            spec.args,
            logger,
            name,
            scheduled_for,
            clock,
            settings=cls.settings_of(spec.args),
            progress=runs.ProgressRecorder(store, run_id, progress),
            runtime_given=runtime,
        )
        summary = " ".join(str(cls().run(ctx)).split())
    except Exception as exc:  # a failing job is recorded and logged, never raised
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        logger.exception("job %s failed: %s", name, message)
        runs.finish(store, run_id, "failed", message, clock())
    else:
        logger.info("job %s succeeded: %s", name, summary)
        runs.finish(store, run_id, "succeeded", summary, clock())
    finally:
        if ctx is not None:
            ctx.close()
    finished = runs.get(store, run_id)
    assert finished is not None
    return finished


class Scheduler:
    """Fires the enabled ``jobs`` (configured name → spec) when they are due."""

    def __init__(
        self,
        store: Store,
        jobs: Mapping[str, JobSpec],
        *,
        owner: str,
        clock: Callable[[], datetime] = utcnow,
        config: Config | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.owner = owner
        self.clock = clock
        self.config = config
        self.jobs = {name: spec for name, spec in jobs.items() if spec.enabled}
        self._schedules = {name: spec.schedule for name, spec in self.jobs.items()}
        for spec in self.jobs.values():
            registry.get(spec.job)  # an unknown job fails now, not at its first occurrence

    @classmethod
    def from_config(
        cls,
        store: Store,
        config: Config,
        *,
        owner: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        runtime: Runtime | None = None,
    ) -> Scheduler:
        """The scheduler of ``config``'s jobs (``runtime``: the process's, whose connectors they use)."""
        return cls(
            store,
            specs_from_config(config),
            owner=owner or default_owner(),
            clock=clock,
            config=config,
            runtime=runtime,
        )

    def tick(self) -> list[str]:
        """Fire every job due now that no other scheduler fired; their names, in order."""
        fired: list[str] = []
        for name, spec in self.jobs.items():
            claim = claims.claim_due(self.store, name, self._schedules[name], self.owner, self.clock())
            if claim is None:
                continue
            log.info("firing job %s (due %s)", name, claim.scheduled_for.isoformat())
            run_job(
                self.store,
                name,
                spec,
                config=self.config,
                clock=self.clock,
                run_id=claim.run_id,
                scheduled_for=claim.scheduled_for,
                runtime=self.runtime,
            )
            fired.append(name)
        return fired

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Tick every ``interval`` seconds until ``stop`` is set. A store that cannot be reached
        is logged and tried again at the next tick."""
        log.info("scheduler %s started with %d jobs", self.owner, len(self.jobs))
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # the store is down, say: the next tick tries again
                log.exception("scheduler tick failed; retrying in %.1f s", interval)
            stop.wait(interval)
        log.info("scheduler %s stopped", self.owner)
