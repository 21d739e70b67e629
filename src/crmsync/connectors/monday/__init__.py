"""The monday.com connector: a GraphQL client paced to the complexity budget (see :mod:`.connector`)."""

from crmsync.connectors.monday.client import MondayClient
from crmsync.connectors.monday.connector import MondayConnector
from crmsync.connectors.monday.settings import MondaySettings

__all__ = ["MondayClient", "MondayConnector", "MondaySettings"]
