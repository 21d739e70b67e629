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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self

from crmsync.errors import CrmsyncError

Operation = Literal["create", "update", "upsert", "delete"]


@dataclass(frozen=True)
class Write:
    """One record to write. ``key`` identifies it in the results (the change's record key).

    - ``create``: ``fields`` only;
    - ``update`` / ``delete``: ``target_id`` (the record's id in the target system);
    - ``upsert``: ``external_id_field`` and ``external_id`` (the match key in the target).
    """

    key: str
    operation: Operation
    fields: Mapping[str, Any] = field(default_factory=dict)
    target_id: str | None = None
    external_id_field: str | None = None
    external_id: str | None = None


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
