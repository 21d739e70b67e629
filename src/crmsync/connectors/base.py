"""The base every connector derives from, and the values that cross the seam.

A connector talks to one system for one configured connection. The base holds what every
connector has (a name, a check of its credentials, the budget the vendor reports, close); what it
can *do* — write, read, be a change source, answer queries, … — it declares by deriving from the
capability protocols of :mod:`crmsync.connectors.capabilities`, which the engine asks for. Each
connector knows its vendor's limits and sorts every vendor error into the classes of
:mod:`crmsync.errors` (retry later / fix the data / fatal).
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self

from crmsync.errors import CrmsyncError

Operation = Literal["create", "update", "upsert", "delete"]


@dataclass(frozen=True)
class EventMeta:
    """What a change's source says of the event behind it, beside the record's fields: when it
    happened, who did it, the vendor's action type and its id for the change (a Trello action id),
    and what the event says that is no field of the record (a comment's text).

    It travels with the change through the queue to the target's :class:`Write`; a target that
    keeps a history (the SQL reporting connector) records it, others may ignore it.

    ``changed`` and ``previous``: what the event itself says of the fields it changed, in the
    source's field names — the values it set, and the values they replaced (``{}`` for a
    creation; a Trello action's ``data.old``, a move's ``listBefore``) — whatever the record
    holds by the time the change is written. ``None``: the source does not say (a poll, a full
    read). ``previous_details``: what ``details`` held before the event (an edited comment's text,
    a member removed).
    """

    at: dt.datetime | None = None
    who: str | None = None
    action: str | None = None
    delivery_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    changed: Mapping[str, Any] | None = None
    previous: Mapping[str, Any] | None = None
    previous_details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tells_values(self) -> bool:
        """Whether the event says what it changed, before and after (see above)."""
        return self.changed is not None and self.previous is not None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (times as ISO text); :meth:`from_dict` reads it back."""
        return {
            "at": self.at.isoformat() if self.at is not None else None,
            "who": self.who,
            "action": self.action,
            "delivery_id": self.delivery_id,
            "details": dict(self.details),
            "changed": dict(self.changed) if self.changed is not None else None,
            "previous": dict(self.previous) if self.previous is not None else None,
            "previous_details": dict(self.previous_details),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> EventMeta | None:
        if not data:
            return None
        from crmsync.connectors.stamps import try_stamp

        return cls(
            at=try_stamp(data.get("at")),
            who=data.get("who"),
            action=data.get("action"),
            delivery_id=data.get("delivery_id"),
            details=dict(data.get("details") or {}),
            changed=_mapping(data.get("changed")),
            previous=_mapping(data.get("previous")),
            previous_details=dict(data.get("previous_details") or {}),
        )


def _mapping(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None


@dataclass(frozen=True)
class Write:
    """One record to write. ``key`` identifies it in the results (the change's record key).

    - ``create``: ``fields`` only;
    - ``update`` / ``delete``: ``target_id`` (the record's id in the target system);
    - ``upsert``: ``external_id_field`` and ``external_id`` (the match key in the target).

    ``meta``: when, who, what action and which delivery the write comes from (never in ``fields``).

    ``changed`` / ``previous``: when the event behind the write says what it changed
    (:attr:`EventMeta.changed` / :attr:`EventMeta.previous`), those values mapped by the flow's
    field rules like ``fields``, in the target's field names: what the event set, and what those
    fields held before it. ``None``: not told. ``fields`` is what to write now (a value older than
    one already written may be left out of it); these are the event's own, for a target that
    keeps a history.

    ``maybe_applied``: this write may have landed already — an earlier attempt at the same change
    ended without a known outcome (it was retried, the worker holding it stopped and its lease
    ran out, or its flow was paused by an error that came after the write was sent). A connector
    that makes creates exactly once by finding the record an earlier attempt made (a marker it
    wrote) looks for it only then: a first attempt cannot have landed before.
    """

    key: str
    operation: Operation
    fields: Mapping[str, Any] = field(default_factory=dict)
    target_id: str | None = None
    external_id_field: str | None = None
    external_id: str | None = None
    #: the event behind this write, when its source told one (see :class:`EventMeta`)
    meta: EventMeta | None = None
    #: an earlier attempt at this write may have landed (see above)
    maybe_applied: bool = False
    #: the values the event behind this write set, in the target's names (None: not told)
    changed: Mapping[str, Any] | None = None
    #: the values those fields held before the event, in the target's names (None: not told)
    previous: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class WriteResult:
    key: str
    ok: bool
    target_id: str | None = None
    created: bool | None = None
    error: CrmsyncError | None = None


@dataclass(frozen=True)
class Record:
    """A record read from a system: its id there, its fields, and its last-modified stamp."""

    object_name: str
    id: str
    fields: Mapping[str, Any]
    modified: str | None = None
    deleted: bool = False


@dataclass(frozen=True)
class ChangeBatch:
    """Records changed since a watermark, and the watermark to ask from next time."""

    records: Sequence[Record]
    watermark: str | None


@dataclass(frozen=True)
class ApiUsage:
    """An API budget as last reported by the vendor (e.g. ``Sforce-Limit-Info``)."""

    used: int
    limit: int

    @property
    def fraction(self) -> float:
        return self.used / self.limit if self.limit else 0.0


class Connector(abc.ABC):
    """Base of every connector; :mod:`.registry` maps its ``kind`` to it and its settings model."""

    kind: ClassVar[str]

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def from_config(cls, name: str, settings: Any) -> Self:
        """Build from a connection's validated settings model (the registry's one factory)."""
        return cls(name)

    @abc.abstractmethod
    def check(self) -> None:
        """Try the credentials with one cheap call; raise :class:`crmsync.errors.Fatal` if refused."""

    def api_usage(self) -> ApiUsage | None:
        """The vendor's last reported budget use, if it reports one."""
        return None

    @property
    def calls_made(self) -> int:
        """API calls made so far by this connector (for ``/metrics`` and summaries)."""
        return 0

    def close(self) -> None:
        """Release connections."""
