"""The one interface every connector implements.

A connector talks to one system for one configured connection. The engine asks it for four
things only: write a batch, read records, read changes since a watermark, and (for systems that
push) verify and parse a webhook. Each connector knows its vendor's limits and sorts every
vendor error into the classes of :mod:`crmsync.errors` (retry later / fix the data / fatal).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from crmsync.errors import CrmsyncError, Fatal

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
    """Base of every connector. Subclasses register under ``kind`` (see :mod:`.registry`)."""

    kind: ClassVar[str]

    def __init__(self, name: str) -> None:
        self.name = name

    @abc.abstractmethod
    def check(self) -> None:
        """Try the credentials with one cheap call; raise :class:`crmsync.errors.Fatal` if refused."""

    @abc.abstractmethod
    def write_batch(self, object_name: str, writes: Sequence[Write]) -> list[WriteResult]:
        """Apply ``writes`` with as few calls as the vendor allows; one result per write, in order.

        A refused record is a result with ``ok=False`` and its error; a failure of the whole call
        (network, 5xx, budget, credentials) raises.
        """

    def read_records(self, object_name: str, ids: Sequence[str]) -> Iterator[Record]:
        raise Fatal(f"a {self.kind} connection cannot read records (asked for {object_name})")

    def read_changes(self, object_name: str, watermark: str | None) -> ChangeBatch:
        raise Fatal(f"a {self.kind} connection cannot be polled for changes (asked for {object_name})")

    def api_usage(self) -> ApiUsage | None:
        """The vendor's last reported budget use, if it reports one."""
        return None

    def close(self) -> None:
        """Release connections."""
