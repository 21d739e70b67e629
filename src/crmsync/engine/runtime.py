"""Everything one crmsync process holds, built once from the configuration.

The web app, the workers and the scheduler of a process share one :class:`Runtime`: the store,
the change queue, the connectors (created on first use), the flows, the lock checker, the ledger
and the metrics. Nothing here starts a thread or a server: :mod:`crmsync.engine.process` does.
"""

from __future__ import annotations

import threading
from typing import Any

from crmsync.alerts import Alerter
from crmsync.config.models import Config
from crmsync.connectors.base import Connector
from crmsync.connectors.registry import connector_class
from crmsync.engine.backoff import Backoff
from crmsync.engine.flows import FlowRuntime
from crmsync.engine.health import Health
from crmsync.engine.ledger import Ledger
from crmsync.engine.locks import LockChecker, Queryable
from crmsync.engine.metrics import Metrics
from crmsync.engine.poll_plan import PollTarget
from crmsync.engine.queue import ChangeQueue
from crmsync.engine.twoway import TwoWay
from crmsync.errors import ConfigError
from crmsync.store.db import Store

#: values per ``IN (...)`` list, to stay well inside SOQL's 4,000-character WHERE clause
IN_CHUNK = 100


class Runtime:
    def __init__(self, config: Config, *, store: Store | None = None, upgrade: bool | None = None) -> None:
        self.config = config
        self._connectors: dict[str, Connector] = {}
        self._guard = threading.Lock()
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

    def connector(self, name: str) -> Connector:
        with self._guard:
            found = self._connectors.get(name)
            if found is None:
                conn = self.config.connections.get(name)
                if conn is None:
                    valid = ", ".join(sorted(self.config.connections))
                    raise ConfigError(f"unknown connection {name!r}; valid: {valid}")
                cls: Any = connector_class(conn.type)
                found = cls.from_config(name, conn)
                if hasattr(found, "attach_store"):  # API budgets shared by every process
                    found.attach_store(self.store)
                self._connectors[name] = found
            return found

    def queryable(self, name: str) -> Queryable:
        connector: Any = self.connector(name)
        if not hasattr(connector, "query_view"):
            raise ConfigError(f"connection {name!r} ({connector.kind}) cannot answer queries")
        return connector  # type: ignore[no-any-return]

    def is_two_way(self, flow: FlowRuntime) -> bool:
        """A flow between two systems (not fed by an application): changes come from both sides."""
        return not self.is_app_source(flow)

    def board_of(self, flow: FlowRuntime, connection: str) -> str | None:
        """The id of what ``flow`` reads or writes on ``connection`` (a board's name is looked up once)."""
        name = flow.source_object if connection == flow.source else flow.object_name
        if name is None or name.isdigit():
            return name
        with self._guard:
            found = self._boards.get((connection, name))
        if found is None:
            connector: Any = self.connector(connection)
            found = str(connector.board_id(name))
            with self._guard:
                self._boards[(connection, name)] = found
        return found

    def poll_targets(self) -> dict[str, list[PollTarget]]:
        """What the Salesforce poller reads, per connection: the two-way fields of each flow."""
        targets: dict[str, list[PollTarget]] = {}
        for flow in self.flows.values():
            conn = self.config.connections.get(flow.target)
            back = sorted({r.target for r in flow.rules if r.to_source})
            if not self.is_two_way(flow) or conn is None or conn.type != "salesforce" or not back:
                continue
            target = PollTarget(flow.name, flow.target, flow.object_name, (*back, "SystemModstamp"))
            targets.setdefault(flow.target, []).append(target)
        return targets

    def reconcile_targets(self) -> dict[str, list[str]]:
        """The two-way flows reading each Monday.com connection's boards (for the reconciler)."""
        targets: dict[str, list[str]] = {}
        for flow in self.flows.values():
            conn = self.config.connections.get(flow.source)
            if self.is_two_way(flow) and conn is not None and conn.type == "monday":
                targets.setdefault(flow.source, []).append(flow.name)
        return targets

    def is_app_source(self, flow: FlowRuntime) -> bool:
        conn = self.config.connections.get(flow.source)
        return conn is not None and conn.type == "app"

    def active_flows(self) -> list[str] | None:
        """Flows the workers may claim for (None: all); a paused flow's changes wait."""
        return self.health.active_flows()

    def find_by_external_ids(self, flow: FlowRuntime, keys: list[str]) -> dict[str, str]:
        """The target's ids of the records whose match field holds one of ``keys``."""
        if flow.match_field is None or not keys:
            return {}
        target = self.queryable(flow.target)
        found: dict[str, str] = {}
        for start in range(0, len(keys), IN_CHUNK):  # SOQL's WHERE clause is limited to 4,000 characters
            rows = target.query_view(
                f"SELECT Id, {flow.match_field} FROM {flow.object_name} WHERE {flow.match_field} IN :keys",
                {"keys": keys[start : start + IN_CHUNK]},
            )
            found.update({str(r[flow.match_field]): str(r["Id"]) for r in rows})
        return found

    def close(self) -> None:
        with self._guard:
            for connector in self._connectors.values():
                connector.close()
            self._connectors.clear()
        self.store.dispose()
