"""Polling for changes: what a poller is asked for, what it hands over, and how it reports.

The engine polls every connection whose connector is a :class:`~.capabilities.PolledSource` and
receives no webhooks. By default it runs its own generic poller over ``read_changes`` (one call per
object and watermark, :mod:`crmsync.engine.poller`); a connector that can do better — read several
objects in one call, look back for late commits — also implements :class:`PollsItself` and builds
the poller of its connection itself (Salesforce: Composite calls, a lookback sweep)::

    engine ── targets (flow, object, fields) ──► connector.change_poller(targets, sink, store)
                                                   │ one cycle: poll_once() → PollResult
    queue  ◄── sink.enqueue(PolledChange…, conn) ──┘ changes and the watermark in ONE transaction

A poller keeps its watermarks in the store (:mod:`crmsync.store.watermarks`, per connection and
key) and moves one only in the transaction that enqueues the changes read up to it, so a crash
re-reads rather than skips; changes read again carry the same ``delivery_id`` and are dropped by
the queue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from crmsync.store.db import Store


@dataclass(frozen=True)
class PollTarget:
    """One flow's interest in one object of a polled connection."""

    flow: str
    """the flow the changes belong to"""
    connection: str
    """the polled connection (the changes' ``source``)"""
    object_name: str
    """the object to poll, e.g. ``Lead``"""
    fields: tuple[str, ...]
    """fields copied into each change (the connector's own spelling; ``Account.Name`` may read a
    parent's field where the vendor allows)"""
    stamped: bool = False
    """each change also carries when the record changed, as ``_at`` (two-way flows order by it)"""


@dataclass(frozen=True)
class PolledChange:
    """A change a poller read, as the queue stores it."""

    source: str
    flow: str
    record_key: str
    operation: Literal["upsert", "delete"]
    fields: Mapping[str, Any]
    delivery_id: str | None = None


class Enqueued(Protocol):
    @property
    def accepted(self) -> int: ...

    @property
    def duplicates(self) -> int: ...


class ChangeSink(Protocol):
    """Where a poller hands its changes: the engine's queue, inside the poller's transaction."""

    def enqueue(self, changes: Sequence[PolledChange], *, conn: Connection) -> Enqueued:
        """Store ``changes`` in ``conn``'s transaction; a ``delivery_id`` seen before is a duplicate."""
        ...


@dataclass(frozen=True)
class PollResult:
    """What one cycle did."""

    changes: int
    """new change rows stored (rows read again are not counted)"""
    calls: int
    """calls made to the vendor"""
    per_target: dict[PollTarget, int]
    """new change rows per target"""
    duplicates: int = 0
    """rows read again that the queue already had (the overlap)"""
    skipped: bool = False
    """the cycle stopped early on a transient error; the next one resumes from the watermarks"""
    late: int = 0
    """new change rows a lookback sweep found (rows that committed after the fast poll passed)"""
    swept: int = 0
    """rows a lookback sweep read again and skipped without a queue write"""
    retry_after: float | None = field(default=None, compare=False)
    """after a skipped cycle: seconds the vendor asked to wait, if it said"""


class ChangePoller(Protocol):
    """The poller of one connection: one cycle per call (the engine runs the loop, under a lease)."""

    @property
    def connection(self) -> str: ...

    def poll_once(self) -> PollResult:
        """Read every target's changes since its watermark and hand them to the sink. A transient
        error ends the cycle (``skipped``); :class:`~crmsync.errors.Fatal` is raised."""
        ...


@runtime_checkable
class PollsItself(Protocol):
    """A polled source that runs its own polling cycle (several objects a call, lookback sweeps)."""

    def change_poller(self, targets: Sequence[PollTarget], sink: ChangeSink, store: Store) -> ChangePoller:
        """The poller of this connection for ``targets`` (its settings decide the rest)."""
        ...
