"""The boards and columns of a monday account, for ``crmsync check --connect``: a board named or
numbered in the configuration, and its columns (one query per board, cached by the connector)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from crmsync.connectors.monday.fields import GROUP, NAME
from crmsync.errors import ConfigError

if TYPE_CHECKING:
    from crmsync.connectors.monday.connector import MondayConnector


class MondayCatalog:
    """Boards (by name or id) and their columns, as :class:`~crmsync.connectors.capabilities.Catalog`."""

    def __init__(self, connector: MondayConnector) -> None:
        self.connector = connector
        self._boards: dict[str, str | None] = {}
        self._missing: dict[str, str] = {}

    def object_names(self) -> Sequence[str]:
        return []  # the lookup's own message lists the boards

    def _board(self, name: str) -> str | None:
        if name not in self._boards:
            try:
                board = str(self.connector.board_id(name))
                self.connector.columns(board)
            except ConfigError as exc:
                self._missing[name] = exc.message
                self._boards[name] = None
            else:
                self._boards[name] = board
        return self._boards[name]

    def field_names(self, object_name: str) -> Sequence[str] | None:
        board = self._board(object_name)
        if board is None:
            return None
        return [NAME, GROUP, *self.connector.columns(board)]

    def parent_of(self, object_name: str, relationship: str) -> str | None:
        return None  # columns have no dotted paths

    def describe_missing(self, object_name: str) -> str:
        return self._missing.get(object_name, f"no monday board {object_name!r}")
