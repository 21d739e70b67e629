"""The ``app`` connection: an application that submits records through the ingest API.

It is a source only: records arrive over HTTP (:mod:`crmsync.web.ingest`) or through the Python
client (:mod:`crmsync.client`), so there is nothing to log in to and nothing to write back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crmsync.connectors.base import Connector, Write, WriteResult
from crmsync.connectors.registry import register
from crmsync.errors import Fatal


@register("app")
class AppConnector(Connector):
    @classmethod
    def from_config(cls, name: str, conn: Any) -> AppConnector:
        return cls(name)

    def check(self) -> None:
        """Nothing to check: applications authenticate to crmsync with API tokens."""

    def write_batch(self, object_name: str, writes: Sequence[Write]) -> list[WriteResult]:
        raise Fatal(
            f"connection {self.name!r} is an application (type app): it only submits records; "
            "use it as a flow's source, not its target"
        )
