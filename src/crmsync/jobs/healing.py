"""``webhook-healing``: keep every webhook-fed connection's webhooks delivering, and lose nothing
that happened while they did not.

For each connection whose connector is a
:class:`~crmsync.connectors.capabilities.WebhookSource`, and each object its flows read or write
there (plus ``objects:``), the job:

1. **recreates** a missing webhook and **re-enables** an inactive one
   (``ensure_subscriptions``: never a duplicate), delivering to the URL ``crmsync webhooks
   ensure`` registered (else ``base_url``, else the web section's address);
2. **alerts once** while a webhook reports failed deliveries (Trello's ``consecutiveFailures``),
   and clears the alert when they stop (:mod:`crmsync.alerts`: one alert per problem, reminders
   at the alerter's pace);
3. **catches up** (connectors that are :class:`~crmsync.connectors.capabilities.CatchUp`): reads the object's
   events since the last one this job saw (Trello: ``GET /boards/{id}/actions?since=``, paged)
   and queues them exactly as the webhook route would, with the same delivery ids, so an event
   the webhook did deliver is a duplicate and dropped, and one it missed is synced now. The
   first run only records where to start.
"""

from __future__ import annotations

import logging
import uuid

from pydantic import Field

from crmsync.connectors.capabilities import CatchUp, SourceEvent, Subscription, WebhookSource, offers
from crmsync.engine.events import queue_event
from crmsync.jobs.base import Job, JobContext, JobSettings
from crmsync.jobs.registry import job
from crmsync.store import watermarks
from crmsync.store import webhooks as receivers

log = logging.getLogger(__name__)

#: the watermarks row of an object's catch-up cursor: (connection, CURSOR + object id)
CURSOR = "webhook-catch-up:"
#: the alert raised while a connection's webhooks report failed deliveries
ALERT = "webhook_failures:"


class HealingSettings(JobSettings):
    connections: list[str] | None = Field(
        None, description="The connections to look after (default: every one that receives webhooks)."
    )
    objects: dict[str, list[str]] = Field(
        default_factory=dict, description="Connection → more objects (e.g. board ids) to look after."
    )
    base_url: str | None = Field(
        None,
        description="Public base URL of the web app (when `crmsync webhooks ensure` registered none).",
    )
    catch_up: bool = Field(True, description="Queue the events missed since the last run.")


@job("webhook-healing")
class WebhookHealing(Job):
    """Recreate missing webhooks, re-enable inactive ones, alert on failures, and catch up what was missed."""

    Settings = HealingSettings

    def run(self, ctx: JobContext) -> str:
        s: HealingSettings = ctx.settings
        rt = ctx.runtime
        targets = self._objects(ctx, s)
        created = reenabled = failing = caught = duplicates = 0
        done = 0
        total = sum(len(v) for v in targets.values())
        for name, objects in targets.items():
            source = ctx.connector(name, WebhookSource, "webhooks")
            protection = source.protection()
            receiver = receivers.receiver(rt.store, name)
            secret = receiver.url_secret if protection.kind == "secret_url" else None
            url = receiver.callback_url or source.receiver_url(s.base_url or _default_base(ctx), secret)
            problems: list[str] = []
            for object_id in objects:
                before = {sub.id: sub for sub in source.list_subscriptions(object_id)}
                report = source.ensure_subscriptions(object_id, url, attempt=uuid.uuid4().hex)
                created += len(report.created)
                for sub in report.existing:
                    was = before.get(sub.id)
                    if was is not None and (was.config or {}).get("active") is False:
                        reenabled += 1
                        log.info("webhook %s of %s on %s re-enabled", sub.id, name, object_id)
                    # as found: re-enabling a webhook may reset its count
                    failures = max(_failures(was), _failures(sub))
                    if failures > 0:
                        failing += 1
                        problems.append(
                            f"webhook {sub.id} on {object_id}: {failures} deliveries failed in a row"
                        )
                if s.catch_up and isinstance(source, CatchUp):
                    a, d = self._catch_up(ctx, name, object_id)
                    caught += a
                    duplicates += d
                done += 1
                ctx.progress(done, total, name)
            self._alert(ctx, name, url, problems)
        return (
            f"{total} objects on {len(targets)} connections: {created} webhooks recreated, {reenabled} "
            f"re-enabled, {failing} failing; {caught} missed changes queued ({duplicates} already had)"
        )

    def _objects(self, ctx: JobContext, s: HealingSettings) -> dict[str, list[str]]:
        rt = ctx.runtime
        wanted = s.connections
        out: dict[str, list[str]] = {}
        for name in rt.config.connections:
            if wanted is not None and name not in wanted:
                continue
            if not offers(rt.connector_type(name), WebhookSource):
                continue
            objects: list[str] = []
            for flow in rt.flows.values():
                if name in (flow.source, flow.target):
                    board = rt.board_of(flow, name)
                    if board and board not in objects:
                        objects.append(board)
            for extra in s.objects.get(name, []):
                if extra not in objects:
                    objects.append(extra)
            if objects:
                out[name] = objects
        return out

    def _catch_up(self, ctx: JobContext, name: str, object_id: str) -> tuple[int, int]:
        """Queue the object's events since the stored cursor: (changes accepted, duplicates)."""
        rt = ctx.runtime
        source = ctx.connector(name, CatchUp, "catch-up")
        cursor = watermarks.get(rt.store, name, CURSOR + object_id)
        events, after = source.events_since(object_id, cursor)
        accepted = duplicates = 0
        for event in events:
            a, d = enqueue(ctx, name, event)
            accepted += a
            duplicates += d
        if after != cursor:
            watermarks.put(rt.store, name, CURSOR + object_id, after)
        if events:
            log.info("%s %s: %d events since %s read back", name, object_id, len(events), cursor)
        return accepted, duplicates

    def _alert(self, ctx: JobContext, name: str, url: str, problems: list[str]) -> None:
        alerter = ctx.alerter
        if problems:
            alerter.problem(
                ALERT + name,
                f"webhooks of {name} are failing",
                "; ".join(problems) + f". Is {url} reachable from the vendor? crmsync keeps catching up "
                "missed changes with the webhook-healing job meanwhile.",
            )
        else:
            alerter.clear(ALERT + name, f"Webhooks of {name} deliver again.")


def enqueue(ctx: JobContext, connection: str, event: SourceEvent) -> tuple[int, int]:
    """Queue one read-back event exactly as the webhook route does
    (:func:`~crmsync.engine.events.queue_event`: values older than ones already received are
    dropped while the event itself, with what it set and replaced, still reaches a target keeping a
    history; one change per flow, de-duplicated on the delivery id): (changes accepted, duplicates,
    an event dropped whole as stale counting as one)."""
    result = queue_event(ctx.runtime, connection, event)
    stale = 1 if result.get("stale") else 0
    return int(result["accepted"]), int(result["duplicates"]) + stale


def _failures(sub: Subscription | None) -> int:
    return int(((sub.config or {}) if sub is not None else {}).get("consecutiveFailures") or 0)


def _default_base(ctx: JobContext) -> str:
    web = ctx.runtime.config.web
    host = web.host if web.host not in ("0.0.0.0", "::", "") else "127.0.0.1"  # noqa: S104
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{web.port}"
