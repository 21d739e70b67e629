"""``purge-history``: delete finished changes and sync-log lines older than some days."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from pydantic import Field

from crmsync.engine.queue import ChangeQueue
from crmsync.jobs.base import Job, JobContext, JobSettings
from crmsync.jobs.registry import job
from crmsync.store.schema import sync_log


class PurgeSettings(JobSettings):
    days: int = Field(
        30, ge=1, strict=True, description="Done changes and sync-log lines older than this go."
    )


@job("purge-history")
class PurgeHistory(Job):
    """Delete finished changes and sync-log lines older than ``args.days`` (default 30)."""

    Settings = PurgeSettings

    def run(self, ctx: JobContext) -> str:
        settings: PurgeSettings = ctx.settings
        days = settings.days
        cutoff = ctx.now() - timedelta(days=days)
        ctx.progress(0, 2, "done changes")
        changes = ChangeQueue(ctx.store, clock=ctx.clock).purge_done(timedelta(days=days))
        ctx.progress(1, 2, "sync-log lines")
        lines = ctx.store.run(
            lambda conn: conn.execute(sa.delete(sync_log).where(sync_log.c.at < cutoff)).rowcount
        )
        ctx.progress(2, 2, "done")
        ctx.logger.info("purged %d done changes and %d sync-log lines older than %s", changes, lines, cutoff)
        return f"deleted {changes} done changes and {lines} sync-log lines older than {days} days"
