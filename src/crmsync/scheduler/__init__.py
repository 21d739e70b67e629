"""The scheduler: cron jobs fired exactly once per occurrence however many processes run it.

- the jobs themselves, and their name → class registry, are :mod:`crmsync.jobs`;
- :mod:`.scheduler`: :class:`Scheduler` (``tick``/``run``) and :func:`run_job`;
- :mod:`.claims`: which scheduler fires an occurrence; :mod:`.runs`: the ``job_runs`` records.
"""

from crmsync.jobs.base import Job, JobContext
from crmsync.jobs.registry import job
from crmsync.scheduler.scheduler import JobSpec, Scheduler, run_job, specs_from_config

__all__ = ["Job", "JobContext", "JobSpec", "Scheduler", "job", "run_job", "specs_from_config"]
