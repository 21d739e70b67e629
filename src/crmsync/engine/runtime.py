"""Everything one crmsync process holds, built once from the configuration.

The web app, the workers and the scheduler of a process share one :class:`Runtime`: the store,
the change queue, the connectors (created on first use), the flows, the lock checker, the ledger
and the metrics. Nothing here starts a thread or a server: :mod:`crmsync.service.process` does.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from crmsync.alerts import Alerter
from crmsync.connectors import registry
from crmsync.connectors.base import Connector
from crmsync.connectors.capabilities import (
    Budgeted,
    CatchUp,
    Describes,
    IngestSource,
    NamedObjects,
    PolledSource,
    PreparesSchema,
    Queryable,
    TargetShape,
    WebhookSource,
    offers,
    require,
)
from crmsync.connectors.polling import PollTarget
from crmsync.engine.backoff import Backoff
from crmsync.engine.flows import FlowRuntime, target_shapes
from crmsync.engine.health import Health
from crmsync.engine.ledger import Ledger
from crmsync.engine.locks import LockChecker
from crmsync.engine.metrics import Metrics
from crmsync.engine.queue import ChangeQueue
from crmsync.engine.twoway import TwoWay
from crmsync.errors import ConfigError
from crmsync.store.db import Store

if TYPE_CHECKING:  # the engine is handed a configuration; it does not read one
    from crmsync.config.models import Config


class Runtime:
    def __init__(self, config: Config, *, store: Store | None = None, upgrade: bool | None = None) -> None:
        self.config = config
        self._connectors: dict[str, Connector] = {}
        self._guard = threading.RLock()  # a target's schema is prepared from its sources' describes
        self._boards: dict[tuple[str, str], str] = {}
        self.store = store if store is not None else Store(config.store.url)
        if upgrade or (upgrade is None and self.store.dialect == "sqlite"):
            self.store.upgrade()
        w = config.worker
        self.queue = ChangeQueue(
            self.store,
            lease_seconds=w.lease_seconds,
            backoff=Backoff(
                initial=w.backoff.initial_seconds,
                factor=w.backoff.factor,
                maximum=w.backoff.max_seconds,
                jitter=w.backoff.jitter,
            ),
        )
        self.flows = {name: FlowRuntime(name, flow) for name, flow in config.flows.items()}
        self.locks = LockChecker()
        self.ledger = Ledger(self.store)
        self.twoway = TwoWay(self)
        self.alerter = Alerter.from_config(self.store, config.alerts)
        self.metrics = Metrics()
        self.metrics.watch(self.queue.stats, lambda: dict(self._connectors))
        self.max_attempts: int | None = w.max_attempts
        self.health = Health(self, probe_seconds=w.pause_probe_seconds)
        self.max_body_bytes: int = config.web.max_body_bytes
        self.max_batch: int = config.web.max_batch

    def reload(self, config: Config) -> list[str]:
        """Take a new configuration without a restart (the file was edited): new flows, field maps
        and limits apply from the next batch; a connection whose settings changed (new credentials)
        is closed and built again on next use. Returns the connections that changed."""
        with self._guard:
            changed = [
                name
                for name, connector in self._connectors.items()
                if self.config.connections.get(name) != config.connections.get(name)
            ]
            for name in changed:
                self._connectors.pop(name).close()
            self._boards.clear()
            self.config = config
            self.flows = {name: FlowRuntime(name, flow) for name, flow in config.flows.items()}
            self.max_attempts = config.worker.max_attempts
            self.max_body_bytes = config.web.max_body_bytes
            self.max_batch = config.web.max_batch
        return changed

    def connector(self, name: str) -> Connector:
        with self._guard:
            found = self._connectors.get(name)
            if found is None:
                conn = self.config.connections.get(name)
                if conn is None:
                    valid = ", ".join(sorted(self.config.connections))
                    raise ConfigError(f"unknown connection {name!r}; valid: {valid}")
                found = registry.create(name, conn)
                if isinstance(found, Budgeted):  # API budgets shared by every process
                    found.attach_store(self.store)
                if isinstance(found, PreparesSchema):  # e.g. reporting tables, from the flows
                    try:
                        found.prepare_schema(self.target_shapes(name))
                    except BaseException:
                        found.close()
                        raise
                self._connectors[name] = found
            return found

    def target_shapes(self, target: str) -> list[TargetShape]:
        """What the flows writing to ``target`` write there, typed by their sources' describes."""
        return target_shapes(self.flows.values(), target, self.describe)

    def describe(self, connection: str, object_name: str) -> Mapping[str, Any] | None:
        """The connection's describe of an object, when its connector offers one."""
        if not offers(self.connector_type(connection), Describes):
            return None
        return require(self.connector(connection), Describes).describe(object_name)

    def connector_type(self, name: str) -> type[Connector]:
        """The connector class of a connection (nothing is built or connected)."""
        conn = self.config.connections.get(name)
        if conn is None:
            valid = ", ".join(sorted(self.config.connections))
            raise ConfigError(f"unknown connection {name!r}; valid: {valid}")
        return registry.connector_class(conn.type)

    def queryable(self, name: str, where: str | None = None) -> Queryable:
        return require(self.connector(name), Queryable, where)

    def is_two_way(self, flow: FlowRuntime) -> bool:
        """A flow between two systems (not fed by an application): records are named by their ids
        on each side, linked, and changes may come from both sides (:mod:`.twoway`)."""
        return not self.is_app_source(flow)

    def board_of(self, flow: FlowRuntime, connection: str) -> str | None:
        """The id of what ``flow`` reads or writes on ``connection`` (a name is looked up once, on
        connectors whose objects have names: a monday board's)."""
        name = flow.source_object if connection == flow.source else flow.object_name
        if name is None or name.isdigit() or not offers(self.connector_type(connection), NamedObjects):
            return name  # (a number is an id already)
        with self._guard:
            found = self._boards.get((connection, name))
        if found is None:
            found = require(self.connector(connection), NamedObjects).object_id(name)
            with self._guard:
                self._boards[(connection, name)] = found
        return found

    def poll_targets(self) -> dict[str, list[PollTarget]]:
        """What the polled change sources read, per connection: for each flow side whose changes
        travel and whose connector is polled (and not told by webhooks), the fields that travel."""
        targets: dict[str, list[PollTarget]] = {}
        for flow in self.flows.values():
            back = sorted({r.target for r in flow.rules if r.to_source})
            if back and self.is_two_way(flow) and self._polled_only(flow.target):
                target = PollTarget(flow.name, flow.target, flow.object_name, tuple(back), stamped=True)
                targets.setdefault(flow.target, []).append(target)
            forward = sorted({r.source for r in flow.rules if r.to_target} | {flow.key_field})
            if flow.source_object and self._polled_only(flow.source) and flow.source != flow.target:
                target = PollTarget(flow.name, flow.source, flow.source_object, tuple(forward))
                targets.setdefault(flow.source, []).append(target)
        return targets

    def _polled_only(self, connection: str) -> bool:
        cls = self.connector_type(connection)
        return offers(cls, PolledSource) and not offers(cls, WebhookSource)

    def reconcile_targets(self) -> dict[str, list[str]]:
        """The flows reading each webhook-fed connection (read again now and then, by polling or by
        reading its events back, so a lost delivery is caught)."""
        targets: dict[str, list[str]] = {}
        for flow in self.flows.values():
            cls = self.connector_type(flow.source)
            if offers(cls, WebhookSource) and (offers(cls, PolledSource) or offers(cls, CatchUp)):
                targets.setdefault(flow.source, []).append(flow.name)
        return targets

    def is_app_source(self, flow: FlowRuntime) -> bool:
        """Is the flow fed by an application (records pushed through the ingest API)?"""
        return offers(self.connector_type(flow.source), IngestSource)

    def find_by_external_ids(self, flow: FlowRuntime, keys: list[str]) -> dict[str, str]:
        """The target's ids of the records whose match field holds one of ``keys``."""
        if flow.match_field is None or not keys:
            return {}
        target = self.queryable(flow.target, f"flow {flow.name!r} (match)")
        found = target.find_by_field(flow.object_name, flow.match_field, keys)
        return {key: ids[0] for key, ids in found.items() if ids}

    def close(self) -> None:
        with self._guard:
            for connector in self._connectors.values():
                connector.close()
            self._connectors.clear()
        self.store.dispose()
