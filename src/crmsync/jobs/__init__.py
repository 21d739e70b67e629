"""Scheduled jobs: a name → class registry, like connectors (:mod:`.registry`).

Built in (each ``args:`` is a typed settings model, see ``docs/operations.md``):

- ``purge-history`` (:mod:`.purge`): old done changes and sync-log lines deleted;
- ``salesforce-report-import`` (:mod:`.report_import`): a report (Reports API, a Bulk API query or
  a CSV file or URL) refreshes a reporting table, with a diff summary;
- ``trello-refresh`` and ``win-loss-mover`` (:mod:`.cards`): cards follow their opportunities;
- ``workload-snapshot`` (:mod:`.workload`): cards per list, member and status, one row set a day;
- ``update-status-nudge`` (:mod:`.nudge`): a status field from the days since a card changed;
- ``webhook-healing`` (:mod:`.healing`): webhooks recreated, re-enabled, alerted on, caught up.

What a job needs of a connector it asks for as a capability
(:mod:`crmsync.connectors.capabilities`: ``ActivityLog``, ``CatchUp``, ``ReportingTables``, ``Reports``
besides the engine's own).

When they run, and that each occurrence fires once, is the scheduler's business
(:mod:`crmsync.scheduler`).
"""

from crmsync.jobs.base import Job, JobContext, JobSettings, Progress
from crmsync.jobs.registry import job

__all__ = ["Job", "JobContext", "JobSettings", "Progress", "job"]
