"""The values the change queue takes and hands out, and the pure helpers its modules share.

A trigger hands the queue :class:`NewChange` values and hears back an :class:`EnqueueResult`; a
worker claims :class:`ClaimedChange` values (one record's coalesced work); ``stats`` answers with
:class:`QueueStats`. They live apart from :mod:`crmsync.engine.queue` because most of their
readers (the ledger, the two-way writer, the routes that ingest) never touch the queue's tables.

:func:`fold` is the one rule for a record's net change (the claim folds with it, previews show
it); :func:`in_chunks` bounds every ``IN (...)`` list the queue's statements build, so a large
batch never meets a database's limit on bound parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from crmsync.connectors.base import EventMeta

Operation = Literal["upsert", "delete"]
#: the states of a change not yet finished (the others, ``done`` and ``dead``, are final)
UNFINISHED = ("pending", "leased")
CHUNK = 500  # ids or keys per IN (...) list


@dataclass(frozen=True)
class NewChange:
    """A change as a trigger reports it."""

    source: str
    flow: str
    record_key: str
    operation: Operation
    fields: Mapping[str, Any]
    delivery_id: str | None = None
    #: what the source said of the event behind the change (travels to the target's write)
    meta: EventMeta | None = None


@dataclass(frozen=True)
class EnqueueResult:
    accepted: int
    duplicates: int


@dataclass(frozen=True)
class ClaimedChange:
    """One record's coalesced work, leased to ``lease_owner``."""

    change_ids: tuple[int, ...]
    source: str
    flow: str
    record_key: str
    operation: Operation
    fields: Mapping[str, Any]
    attempts: int
    created_at: datetime
    lease_owner: str
    #: the event behind the change (a change with one is never folded with others)
    meta: EventMeta | None = None
    #: the changes folded into this one, oldest first (operation, payload, queued at), when there
    #: were several: each field's value came from one of them, and happened when that one did
    parts: tuple[tuple[Operation, Mapping[str, Any], datetime], ...] = ()
    #: its last lease ended without an outcome once the worker holding it may have written it: the
    #: lease ran out, or the change was given back after its write was sent (``release(sent=True)``)
    reclaimed: bool = False

    @property
    def maybe_applied(self) -> bool:
        """Whether an earlier attempt may have written this change already (it was tried before,
        claimed again after its lease ran out, or given back after its write was sent): its writes
        say so (``Write.maybe_applied``)."""
        return self.attempts > 0 or self.reclaimed


@dataclass(frozen=True)
class QueueStats:
    """``pending`` and ``leased`` count change rows; ``retrying`` the pending rows that failed
    before; ``dead`` the open dead letters (neither replayed nor discarded);
    ``oldest_pending_age`` the age in seconds of the oldest change not yet done."""

    pending: int
    leased: int
    dead: int
    retrying: int
    oldest_pending_age: float | None


def fold(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> tuple[Operation, dict[str, Any]]:
    """The net effect of a record's changes, oldest first: upserts merge (later wins), a delete
    wipes the fields, an upsert after a delete starts afresh."""
    operation: Operation | None = None
    fields: dict[str, Any] = {}
    for op, payload in rows:
        if op == "delete":
            operation, fields = "delete", {}
        elif operation == "upsert":
            fields.update(payload)
        else:
            operation, fields = "upsert", dict(payload)
    if operation is None:
        raise ValueError("nothing to fold")
    return operation, fields


def in_chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    """``items`` in slices of at most ``size``, one ``IN (...)`` list each."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
