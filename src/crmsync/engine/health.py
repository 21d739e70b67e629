"""What the workers know of each connection's health: paused flows and connections that are down.

Two states, both kept per connection and both cleared by a call that works again::

                Fatal (credentials refused, misconfigured)
    ┌────────┐ ─────────────────────────────────────────► ┌────────────────────────────┐
    │ normal │                                             │ paused (flows stop claiming)│
    └────────┘ ◄───────────────────────────────────────── └────────────────────────────┘
      │    ▲      settings changed, or a probe (one cheap call) succeeds
      │    │
      │    └──── a call succeeds again: waiting changes are retried now (not after their back-off)
      ▼
    ┌──────┐   a whole call failed transiently (5xx, network, 429): the vendor is probed every
    │ down │   ``probe_seconds`` so that recovery is noticed even when no change is due
    └──────┘

A pause lives in the store (:mod:`crmsync.store.pauses`), so every process stops claiming the
flow's changes, ``crmsync status`` shows it, and the alert goes out once. "Down" is what one
process saw; it only makes that process probe sooner and hurry the waiting changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, SecretStr

from crmsync.alerts import auth_failure, auth_ok
from crmsync.errors import CrmsyncError, Fatal
from crmsync.store import pauses

if TYPE_CHECKING:
    from crmsync.engine.runtime import Runtime

log = logging.getLogger(__name__)


def settings_digest(settings: BaseModel | None) -> str:
    """A digest of a connection's settings, secrets included (so a new password lifts a pause)."""

    def plain(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, BaseModel):
            return {name: plain(getattr(value, name)) for name in type(value).model_fields}
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    text = json.dumps(plain(settings), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Health:
    """Paused flows (shared through the store) and connections seen down (this process)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        probe_seconds: float = 30.0,
        down_probe_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rt = runtime
        self.probe_seconds = probe_seconds
        self.down_probe_seconds = down_probe_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._paused: frozenset[str] = frozenset()
        self._paused_read_at = float("-inf")
        self._down: dict[str, float] = {}  # connection → when to probe it next
        self._troubled: set[str] = set()  # connections this process raised an alert for
        self._next_maintenance = float("-inf")

    # -- which flows may claim -------------------------------------------------------------------
    def active_flows(self) -> list[str] | None:
        """The flows workers may claim for; None: all (nothing is paused). Read at most once a second."""
        now = self.clock()
        with self._lock:
            fresh = now - self._paused_read_at < 1.0
            paused = self._paused
        if not fresh:
            paused = frozenset(p.flow for p in pauses.list_pauses(self.rt.store))
            with self._lock:
                self._paused, self._paused_read_at = paused, now
        if not paused:
            return None
        return [name for name in self.rt.flows if name not in paused]

    # -- Fatal: pause ------------------------------------------------------------------------------
    def pause(self, flow: str, connection: str, error: CrmsyncError) -> None:
        """Stop ``flow`` until ``connection`` works again; log and alert once."""
        digest = settings_digest(self.rt.config.connections.get(connection))
        first = pauses.pause(self.rt.store, flow, connection, str(error), digest)
        with self._lock:
            self._paused_read_at = float("-inf")
            self._troubled.add(connection)
        if first:
            log.error(
                "flow %s paused: %s needs a person (%s); its changes wait in the queue. "
                "Fix the connection's settings, then: crmsync check --connect",
                flow,
                connection,
                error,
            )
        try:
            auth_failure(self.rt.alerter, connection, error)
        except Exception:
            log.exception("could not raise the alert for %s", connection)

    # -- transient outages -------------------------------------------------------------------------
    def down(self, connection: str, error: CrmsyncError) -> None:
        """A whole call to ``connection`` failed transiently."""
        with self._lock:
            known = connection in self._down
            if not known:
                self._down[connection] = self.clock() + self.down_probe_seconds
        if not known:
            log.warning("%s is failing (%s); its changes wait and are retried", connection, error)

    def working(self, connection: str) -> None:
        """A call to ``connection`` succeeded: if it was down, retry what waits on it now."""
        with self._lock:
            was_down = self._down.pop(connection, None) is not None
            troubled = connection in self._troubled
            self._troubled.discard(connection)
        if was_down:
            hurried = self.rt.queue.hurry(self.flows_using(connection))
            log.info("%s answers again: %d waiting change(s) retried now", connection, hurried)
        if troubled:
            try:
                auth_ok(self.rt.alerter, connection)
            except Exception:
                log.exception("could not clear the alert for %s", connection)

    def flows_using(self, connection: str) -> list[str]:
        return sorted(
            name for name, flow in self.rt.flows.items() if connection in (flow.source, flow.target)
        )

    # -- probes (called from the worker loop) ------------------------------------------------------
    def maintain(self) -> None:
        """Lift pauses whose settings changed or whose connection answers; probe connections seen
        down. Cheap when there is nothing to do; runs its probes at most every few seconds."""
        now = self.clock()
        if now < self._next_maintenance:
            return
        self._next_maintenance = now + min(self.probe_seconds, self.down_probe_seconds, 1.0)
        self._maintain_pauses()
        with self._lock:
            due = [c for c, at in self._down.items() if at <= now]
            for connection in due:
                self._down[connection] = now + self.down_probe_seconds
        for connection in due:
            if self._probe(connection):
                self.working(connection)

    def _maintain_pauses(self) -> None:
        paused = pauses.list_pauses(self.rt.store)
        if not paused:
            return
        by_connection: dict[str, list[pauses.Pause]] = {}
        lift: list[str] = []
        for p in paused:
            settings = self.rt.config.connections.get(p.connection)
            if p.flow not in self.rt.flows or settings is None:
                lift.append(p.flow)
            elif settings_digest(settings) != p.settings_digest:
                log.info("flow %s resumes: the settings of %s changed", p.flow, p.connection)
                lift.append(p.flow)
            else:
                by_connection.setdefault(p.connection, []).append(p)
        wall = time.time()
        for connection, items in by_connection.items():
            last = max((p.probed_at.timestamp() if p.probed_at else 0.0) for p in items)
            if wall - last < self.probe_seconds:
                continue
            flows = [p.flow for p in items]
            if self._probe(connection, fatal_only=True):
                log.info("flows %s resume: %s accepts crmsync again", ", ".join(flows), connection)
                lift.extend(flows)
                try:
                    auth_ok(self.rt.alerter, connection)
                except Exception:
                    log.exception("could not clear the alert for %s", connection)
            else:
                pauses.probed(self.rt.store, flows)
        if lift:
            pauses.resume(self.rt.store, lift)
            with self._lock:
                self._paused_read_at = float("-inf")

    def _probe(self, connection: str, *, fatal_only: bool = False) -> bool:
        """One cheap call. ``fatal_only``: only a refusal (Fatal) counts as failing — a pause is
        about credentials and settings, and a vendor that is merely slow will say so on the next write."""
        try:
            self.rt.connector(connection).check()
        except Fatal:
            return False
        except CrmsyncError as exc:
            if fatal_only:
                return True
            log.debug("%s still failing: %s", connection, exc)
            return False
        except Exception:
            log.exception("probing %s failed", connection)
            return False
        return True
