"""What the dashboard shows, as JSON-able dicts read from the store (any replica answers the same).

Blocking: call from a worker thread. Figures:

- applied last hour/day: the sync log's ``applied`` lines;
- queue depth and oldest waiting change: the unfinished change rows;
- latency p50/p99: from a change's arrival to its completion, of the done changes still kept
  (the ``purge`` job deletes old ones);
- queue depth over time: derived from the change rows (arrived before, not yet done at the time).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from crmsync.connectors.capabilities import ReportingTables, WebhookSource, offers
from crmsync.engine.runtime import Runtime
from crmsync.scheduler import claims, runs
from crmsync.scheduler.scheduler import specs_from_config
from crmsync.store import budget_view, pauses
from crmsync.store import schema as t
from crmsync.store.schema import utcnow

#: most done changes read for latency figures
LATENCY_SAMPLE = 20_000
#: a connection whose newest write in this window was retried (a transient failure) is down
DOWN_WINDOW = timedelta(minutes=5)
UNFINISHED = ("pending", "leased")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` (0..1) percentile of ``values``, nearest rank; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def overview(rt: Runtime) -> dict[str, Any]:
    now = utcnow()
    hour, day = now - timedelta(hours=1), now - timedelta(days=1)
    cfg = rt.config
    c, lg, d = t.changes.c, t.sync_log.c, t.dead_letters.c
    with rt.store.read() as conn:
        applied: dict[str, dict[str, int]] = defaultdict(lambda: {"hour": 0, "day": 0})
        rows = conn.execute(
            sa.select(lg.flow, sa.func.count(), sa.func.sum(sa.case((lg.at >= hour, 1), else_=0)))
            .where(lg.outcome == "applied", lg.at >= day)
            .group_by(lg.flow)
        )
        for flow, in_day, in_hour in rows:
            applied[flow] = {"hour": int(in_hour or 0), "day": int(in_day)}
        waiting = {
            flow: (int(n), first)
            for flow, n, first in conn.execute(
                sa.select(c.flow, sa.func.count(), sa.func.min(c.created_at))
                .where(c.state.in_(UNFINISHED))
                .group_by(c.flow)
            )
        }
        done = conn.execute(
            sa.select(c.flow, c.created_at, c.updated_at)
            .where(c.state == "done", c.updated_at >= hour)
            .order_by(c.updated_at.desc())
            .limit(LATENCY_SAMPLE)
        ).all()
        dead: dict[str, int] = dict(
            conn.execute(
                sa.select(d.flow, sa.func.count())
                .where(d.discarded_at.is_(None), d.replay_requested_at.is_(None))
                .group_by(d.flow)
            ).all()
        )
        budgets = budget_view.shown(conn, now)
        newest_writes = sa.select(sa.func.max(lg.id)).where(
            lg.at >= now - DOWN_WINDOW, lg.outcome.in_(("applied", "retry"))
        )
        writes = conn.execute(
            sa.select(lg.id, lg.flow, lg.source, lg.outcome, lg.at, lg.message).where(
                lg.id.in_(newest_writes.group_by(lg.flow, lg.source))
            )
        ).all()
        receivers = conn.execute(sa.select(t.webhook_receivers)).all()
        last_delivery: dict[str, datetime] = dict(
            conn.execute(sa.select(c.source, sa.func.max(c.created_at)).group_by(c.source)).all()
        )
    latencies: dict[str, list[float]] = defaultdict(list)
    for flow, created, updated in done:
        latencies[flow].append(max(0.0, (updated - created).total_seconds()))
    paused = {p.flow: p for p in pauses.list_pauses(rt.store)}
    flows = []
    for name, flow in cfg.flows.items():
        count, first = waiting.get(name, (0, None))
        lat = latencies.get(name, [])
        pause = paused.get(name)
        flows.append(
            {
                "name": name,
                "source": flow.source,
                "target": flow.target,
                "applied_last_hour": applied[name]["hour"],
                "applied_last_day": applied[name]["day"],
                "queue_depth": count,
                "oldest_waiting_seconds": None if first is None else max(0.0, (now - first).total_seconds()),
                "latency_p50_seconds": percentile(lat, 0.5),
                "latency_p99_seconds": percentile(lat, 0.99),
                "dead_letters": int(dead.get(name, 0)),
                "paused": None
                if pause is None
                else {"connection": pause.connection, "reason": pause.reason, "since": _iso(pause.paused_at)},
            }
        )
    by_connection: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in budgets:
        by_connection[row.connection].append(
            {
                "window": row.window,
                "used": row.used,
                "limit": row.limit,
                "use": round(row.used / row.limit, 4) if row.limit else None,
                "at": _iso(row.at),
            }
        )
    paused_connections = {p.connection: p for p in paused.values()}
    last_write = _last_write(rt, writes)
    connections = []
    for name, conn_cfg in cfg.connections.items():
        # paused: refused credentials (since when); down: its newest write failed transiently (when)
        state, problem, at = "ok", None, None
        if (stopped := paused_connections.get(name)) is not None:
            state, problem, at = "paused", stopped.reason, _iso(stopped.paused_at)
        elif (write := last_write.get(name)) is not None and write.outcome == "retry":
            state, problem, at = "down", write.message, _iso(write.at)
        connections.append(
            {
                "name": name,
                "type": conn_cfg.type,
                "state": state,
                "problem": problem,
                "at": at,
                "budget": by_connection.get(name, []),
            }
        )
    received = {r.connection: r for r in receivers}
    webhooks = []
    for name, conn_cfg in cfg.connections.items():
        if not offers(rt.connector_type(name), WebhookSource):
            continue
        r = received.get(name)
        webhooks.append(
            {
                "connection": name,
                "type": conn_cfg.type,
                "registered": r is not None and r.callback_url is not None,
                "last_delivery": _iso(last_delivery.get(name)),
                "refused": int(r.refused) if r is not None else 0,
                "last_refused": _iso(r.refused_at) if r is not None else None,
            }
        )
    stats = rt.queue.stats()
    return {
        "at": now.isoformat(),
        "queue": {
            "pending": stats.pending,
            "in_progress": stats.leased,
            "retrying": stats.retrying,
            "dead_letters": stats.dead,
            "oldest_waiting_seconds": stats.oldest_pending_age,
        },
        "flows": flows,
        "connections": connections,
        "webhooks": webhooks,
        "jobs": jobs(rt),
    }


def _last_write(rt: Runtime, writes: Iterable[Any]) -> dict[str, Any]:
    """Per connection, the newest write to it of the last minutes (applied, or retried after a
    transient failure), from the newest sync log line of each flow and direction."""
    newest: dict[str, Any] = {}
    for row in writes:
        flow = rt.config.flows.get(row.flow)
        if flow is None:
            continue
        written = flow.target if row.source in (None, flow.source) else flow.source
        if written not in newest or row.id > newest[written].id:
            newest[written] = row
    return newest


def jobs(rt: Runtime) -> list[dict[str, Any]]:
    specs = specs_from_config(rt.config)
    if not specs:
        return []
    now = utcnow()
    last = runs.latest(rt.store, list(specs))
    out = []
    for name, spec in specs.items():
        run = last.get(name)
        out.append(
            {
                "name": name,
                "job": spec.job,
                "cron": spec.cron,
                "enabled": spec.enabled,
                "next_run": _iso(claims.next_run(rt.store, name, spec.schedule, now))
                if spec.enabled
                else None,
                "last_run": None if run is None else run_as_dict(run),
            }
        )
    return out


def run_as_dict(run: runs.JobRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "job": run.job,
        "status": run.status,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "message": run.message,
        "progress": {"done": run.progress_done, "total": run.progress_total, "what": run.progress_what}
        if run.progress_done is not None
        else None,
    }


# ---------------------------------------------------------------- charts


def _buckets(now: datetime, hours: int) -> tuple[datetime, timedelta, int]:
    count = 60 if hours <= 1 else 48
    size = timedelta(hours=hours) / count
    return now - timedelta(hours=hours), size, count


def _index(at: datetime, start: datetime, size: timedelta, count: int) -> int | None:
    i = int((at - start) / size)
    return i if 0 <= i < count else None


def charts(rt: Runtime, hours: int = 1) -> dict[str, Any]:
    """Throughput and latency per flow, queue depth over the last ``hours`` (1 to 168); API
    budget use per connection now; the workload snapshot trend when a reporting database has one."""
    hours = min(max(hours, 1), 168)
    now = utcnow()
    start, size, count = _buckets(now, hours)
    c, lg = t.changes.c, t.sync_log.c
    with rt.store.read() as conn:
        applied = conn.execute(
            sa.select(lg.flow, lg.at).where(lg.outcome == "applied", lg.at >= start).limit(200_000)
        ).all()
        changes = conn.execute(
            sa.select(c.flow, c.state, c.created_at, c.updated_at)
            .where(sa.or_(c.state.in_(UNFINISHED), c.updated_at >= start))
            .limit(200_000)
        ).all()
        budgets = budget_view.shown(conn, now)
    flows = list(rt.config.flows)
    throughput = {f: [0] * count for f in flows}
    for flow, at in applied:
        i = _index(at, start, size, count)
        if i is not None and flow in throughput:
            throughput[flow][i] += 1
    samples: dict[str, list[list[float]]] = {f: [[] for _ in range(count)] for f in flows}
    depth = [0] * count
    ends = [start + size * (i + 1) for i in range(count)]
    for flow, state, created, updated in changes:
        if state == "done":
            i = _index(updated, start, size, count)
            if i is not None and flow in samples:
                samples[flow][i].append(max(0.0, (updated - created).total_seconds()))
        finished = updated if state in ("done", "dead") else None
        for i, end in enumerate(ends):
            if created <= end and (finished is None or finished > end):
                depth[i] += 1
    return {
        "at": now.isoformat(),
        "hours": hours,
        "labels": [_iso(start + size * i) for i in range(count)],
        "throughput": throughput,
        "latency_p50": {f: [percentile(b, 0.5) for b in samples[f]] for f in flows},
        "latency_p99": {f: [percentile(b, 0.99) for b in samples[f]] for f in flows},
        "queue_depth": depth,
        "budgets": [
            {
                "connection": r.connection,
                "window": r.window,
                "used": r.used,
                "limit": r.limit,
            }
            for r in budgets
        ],
        "workload": workload(rt),
    }


def workload(rt: Runtime, days: int = 30) -> dict[str, Any] | None:
    """Cards per list per day from the workload snapshot table of the first reporting connection
    a ``workload-snapshot`` job writes to; None when there is none."""
    targets = [
        str(spec.args.get("target"))
        for spec in specs_from_config(rt.config).values()
        if spec.job == "workload-snapshot" and spec.args.get("target") in rt.config.connections
    ]
    for target in targets:
        connector = rt.connector(target)
        if not offers(connector, ReportingTables):
            continue
        table: sa.Table = connector.snapshot_table  # type: ignore[attr-defined]
        engine: sa.Engine = connector.engine  # type: ignore[attr-defined]
        since = utcnow().date() - timedelta(days=days)
        s = table.c
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(s.snapshot_date, s.list_name, sa.func.sum(s.card_count))
                .where(s.snapshot_date >= since)
                .group_by(s.snapshot_date, s.list_name)
                .order_by(s.snapshot_date)
            ).all()
        return _pivot(target, rows)
    return None


def _pivot(target: str, rows: Iterable[Any]) -> dict[str, Any]:
    days: list[str] = []
    series: dict[str, dict[str, int]] = defaultdict(dict)
    for day, list_name, cards in rows:
        key = str(day)
        if key not in days:
            days.append(key)
        series[str(list_name)][key] = int(cards or 0)
    return {
        "connection": target,
        "days": days,
        "lists": {name: [values.get(day, 0) for day in days] for name, values in series.items()},
    }
