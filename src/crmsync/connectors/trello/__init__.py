"""The Trello connector: a REST client paced by a shared rate governor (see :mod:`.connector`)."""

from crmsync.connectors.trello.client import TrelloClient
from crmsync.connectors.trello.connector import TrelloConnector
from crmsync.connectors.trello.settings import TrelloConnection

__all__ = ["TrelloClient", "TrelloConnection", "TrelloConnector"]
