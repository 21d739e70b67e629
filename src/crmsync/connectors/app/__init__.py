"""The ``app`` connection: an application that submits records through the ingest API.

It is a source only (:class:`~crmsync.connectors.capabilities.IngestSource`): records arrive over
HTTP (:mod:`crmsync.web.ingest`) or through the Python client (:mod:`crmsync.client`), so there is
nothing to log in to, nothing to read and nothing to write back.
"""

from __future__ import annotations

from crmsync.connectors.base import Connector
from crmsync.connectors.capabilities import IngestSource


class AppConnector(Connector, IngestSource):
    kind = "app"

    def check(self) -> None:
        """Nothing to check: applications authenticate to crmsync with API tokens."""

    def accepts_ingest(self) -> bool:
        return True
