"""The built-in jobs. Each is registered with :func:`crmsync.scheduler.registry.job`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from crmsync.engine.queue import ChangeQueue
from crmsync.scheduler.base import Job, JobContext
from crmsync.scheduler.registry import job
from crmsync.store.schema import sync_log


def _positive_int(args: Mapping[str, Any], key: str, default: int) -> int:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"args.{key} must be a whole number of at least 1, not {value!r}")
    return value


def _unknown_args(name: str, args: Mapping[str, Any], known: tuple[str, ...]) -> list[str]:
    valid = ", ".join(known) or "none"
    return [f"job {name!r} takes no arg {key!r}; valid: {valid}" for key in args if key not in known]


@job("purge-history")
class PurgeHistory(Job):
    """Delete finished changes and sync-log lines older than ``args.days`` (default 30)."""

    ARGS = ("days",)
    DEFAULT_DAYS = 30

    @classmethod
    def check_args(cls, args: Mapping[str, Any]) -> list[str]:
        problems = _unknown_args(cls.name, args, cls.ARGS)
        try:
            _positive_int(args, "days", cls.DEFAULT_DAYS)
        except ValueError as exc:
            problems.append(str(exc))
        return problems

    def run(self, ctx: JobContext) -> str:
        days = _positive_int(ctx.args, "days", self.DEFAULT_DAYS)
        cutoff = ctx.now() - timedelta(days=days)
        changes = ChangeQueue(ctx.store, clock=ctx.clock).purge_done(timedelta(days=days))
        lines = ctx.store.run(
            lambda conn: conn.execute(sa.delete(sync_log).where(sync_log.c.at < cutoff)).rowcount
        )
        ctx.logger.info("purged %d done changes and %d sync-log lines older than %s", changes, lines, cutoff)
        return f"deleted {changes} done changes and {lines} sync-log lines older than {days} days"
