"""The scheduler: cron jobs fired exactly once per occurrence however many processes run it.

- :mod:`.registry`: name → job class (``@job("purge-history")``);
- :mod:`.jobs`: the built-in jobs;
- :mod:`.scheduler`: :class:`Scheduler` (``tick``/``run``) and :func:`run_job`;
- :mod:`.claims`: which scheduler fires an occurrence; :mod:`.runs`: the ``job_runs`` records.
"""

from crmsync.scheduler.base import Job, JobContext
from crmsync.scheduler.registry import job
from crmsync.scheduler.scheduler import JobSpec, Scheduler, run_job, specs_from_config

__all__ = ["Job", "JobContext", "JobSpec", "Scheduler", "job", "run_job", "specs_from_config"]
