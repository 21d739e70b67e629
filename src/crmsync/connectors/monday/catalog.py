"""The boards and columns of a monday account, for ``crmsync check --connect``: a board named or
numbered in the configuration, and its columns (one query per board, cached by the connector);
and the labels of a board's status and dropdown columns (``ChoiceFields``, for a dry run)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crmsync.connectors.capabilities import Choices
from crmsync.connectors.monday.client import COMPLEXITY_FIELD, SMALL_QUERY_COST, MondayClient, raise_first
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


@dataclass(frozen=True)
class ColumnChoices(Choices):
    """A status or dropdown column's labels; a value may also be monday's own JSON
    (``{"label": …}``, ``{"labels": [...]}``) or a label's index (a number, always accepted)."""

    def refused(self, value: Any) -> list[str]:
        if isinstance(value, Mapping):
            value = value.get("label", value.get("labels"))
        if isinstance(value, int) and not isinstance(value, bool):
            return []  # an index: monday's own numbering, not a label
        return super().refused(value)


def choices_of(columns: Iterable[Mapping[str, Any]]) -> dict[str, Choices]:
    """Status and dropdown columns (``id title type settings_str``) → their labels, by column id."""
    out: dict[str, Choices] = {}
    for column in columns:
        kind = "status" if column.get("type") in ("status", "color") else str(column.get("type"))
        if kind not in ("status", "dropdown"):
            continue
        labels = json.loads(column.get("settings_str") or "{}").get("labels") or {}
        names = labels.values() if isinstance(labels, dict) else [lab.get("name") for lab in labels]
        out[str(column["id"])] = ColumnChoices(
            field=str(column["id"]),
            title=str(column.get("title")),
            labels=tuple(str(n) for n in names if n),
            multiple=kind == "dropdown",
        )
    return out


def board_choices(client: MondayClient, board: str) -> dict[str, Choices]:
    """The status and dropdown columns of ``board`` with their labels: one small query."""
    reply = client.query(
        "query ($b: [ID!]) { boards(ids: $b) { columns { id title type settings_str } } "
        f"{COMPLEXITY_FIELD} }}",
        {"b": [board]},
        cost=SMALL_QUERY_COST,
    )
    raise_first(reply)
    return choices_of(column for b in reply.data.get("boards") or [] for column in b.get("columns") or [])
