"""Prometheus metrics of one crmsync process (its own registry: importing registers nothing).

Counters count what this process did; the queue and API-budget gauges are read at scrape time
from the store and the connectors, so every process reports the same shared figures.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from crmsync.connectors.base import Connector
from crmsync.engine.queue import QueueStats
from crmsync.store.db import store_trouble

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

log = logging.getLogger(__name__)


class _LiveCollector(Collector):
    def __init__(self, stats: Callable[[], QueueStats], connectors: Callable[[], dict[str, Connector]]):
        self._stats = stats
        self._connectors = connectors
        self.store_ok = threading.local()  # per scrape: True unless the store failed to answer

    def collect(self) -> Iterable[Metric]:
        try:
            stats: QueueStats | None = self._stats()
        except SQLAlchemyError as exc:  # the process's own figures are still worth a scrape
            log.warning("metrics without the queue figures: %s", store_trouble(exc))
            stats = None
        self.store_ok.value = stats is not None
        yield GaugeMetricFamily(
            "crmsync_store_up", "1 if the store answered this scrape, else 0", value=float(stats is not None)
        )
        if stats is not None:
            depth = GaugeMetricFamily(
                "crmsync_queue_depth", "Changes in the queue by state", labels=["state"]
            )
            for state in ("pending", "leased", "retrying", "dead"):
                depth.add_metric([state], float(getattr(stats, state)))
            yield depth
            yield GaugeMetricFamily(
                "crmsync_queue_oldest_pending_age_seconds",
                "Age of the oldest change not yet applied",
                value=stats.oldest_pending_age or 0.0,
            )
        used = GaugeMetricFamily(
            "crmsync_api_usage", "API calls used, as the vendor reports", labels=["connection"]
        )
        limit = GaugeMetricFamily(
            "crmsync_api_limit", "API call limit, as the vendor reports", labels=["connection"]
        )
        calls = GaugeMetricFamily("crmsync_api_calls", "API calls this process made", labels=["connection"])
        for name, connector in self._connectors().items():
            usage = connector.api_usage()
            if usage is not None:
                used.add_metric([name], usage.used)
                limit.add_metric([name], usage.limit)
            calls.add_metric([name], float(connector.calls_made))
        yield used
        yield limit
        yield calls


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self._received = Counter(
            "crmsync_changes_received", "Changes accepted into the queue", ["flow"], registry=r
        )
        self._duplicates = Counter(
            "crmsync_changes_duplicate", "Deliveries ignored as duplicates", ["flow"], registry=r
        )
        self._refused = Counter(
            "crmsync_ingest_refused", "Submissions refused at the door", ["flow", "reason"], registry=r
        )
        self._applied = Counter(
            "crmsync_changes_applied", "Changes applied to their target", ["flow"], registry=r
        )
        self._failed = Counter(
            "crmsync_changes_failed", "Failed attempts, by error class", ["flow", "kind"], registry=r
        )
        self._dead = Counter("crmsync_dead_letters", "Changes turned into dead letters", ["flow"], registry=r)
        self._webhooks_refused = Counter(
            "crmsync_webhooks_refused",
            "Webhook deliveries refused (bad signature or URL secret, replayed token)",
            ["connection"],
            registry=r,
        )
        self._latency = Histogram(
            "crmsync_change_latency_seconds",
            "From a change's arrival to its effect in the target",
            ["flow"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            registry=r,
        )

    def watch(self, stats: Callable[[], QueueStats], connectors: Callable[[], dict[str, Connector]]) -> None:
        self._live = _LiveCollector(stats, connectors)
        self.registry.register(self._live)

    def received(self, flow: str, accepted: int, duplicates: int) -> None:
        self._received.labels(flow).inc(accepted)
        if duplicates:
            self._duplicates.labels(flow).inc(duplicates)

    def refused(self, flow: str, reason: str) -> None:
        self._refused.labels(flow, reason).inc()

    def applied(self, flow: str, count: int, created: Sequence[datetime]) -> None:
        self._applied.labels(flow).inc(count)
        now = datetime.now(UTC)
        for at in created:
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            self._latency.labels(flow).observe(max(0.0, (now - at).total_seconds()))

    def failed(self, flow: str, kind: str) -> None:
        self._failed.labels(flow, kind).inc()

    def dead_letter(self, flow: str) -> None:
        self._dead.labels(flow).inc()

    def webhook_refused(self, connection: str) -> None:
        self._webhooks_refused.labels(connection).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def scrape(self) -> tuple[bytes, bool]:
        """The metrics, and whether the store answered (if not, only this process's own figures)."""
        body = generate_latest(self.registry)
        live = getattr(self, "_live", None)
        return body, live is None or getattr(live.store_ok, "value", True)
