"""What the board's history tells the scheduled jobs: when cards last changed, and the events a
webhook missed (a mixin of :class:`.connector.TrelloConnector`).

- :meth:`~TrelloHistory.last_changed`: each card's newest action (``GET /cards/{id}/actions``,
  ten cards a ``/batch`` request), leaving out custom-field updates and card updates that touch
  only the fields named in ``ignoring``; a card whose newest 50 actions are all left out counts
  from the oldest of them;
- :meth:`~TrelloHistory.events_since`: the board's actions after an action id
  (``GET /boards/{id}/actions?since=``, paged), parsed as webhook deliveries would be, with their
  action ids as delivery ids.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from crmsync.connectors.trello.subscriptions import actions_since, newest_action
from crmsync.errors import CrmsyncError, FixTheData

if TYPE_CHECKING:
    from crmsync.connectors.capabilities import SourceEvent
    from crmsync.connectors.trello.client import TrelloClient

#: actions read per card when looking for its last change
CARD_ACTIONS = 50


class TrelloHistory:
    """The history half of a Trello connector (``client``, ``board_id``, ``parse`` are the connector's)."""

    client: TrelloClient

    if TYPE_CHECKING:  # the connector's and the receiver's

        def parse(self, body: bytes) -> list[SourceEvent]: ...

        def object_id(self, name: str) -> str: ...

    def last_changed(
        self, object_name: str, ids: Sequence[str], *, ignoring: Sequence[str] = ()
    ) -> dict[str, dt.datetime]:
        """Card id → when it last changed, leaving out changes only to the fields in ``ignoring``."""
        if object_name != "Card":
            raise FixTheData(f"a Trello connection tells when cards changed, not {object_name!r}")
        skip = set(ignoring)
        out: dict[str, dt.datetime] = {}
        ids = list(ids)
        routes = [f"/cards/{i}/actions?filter=all&limit={CARD_ACTIONS}" for i in ids]
        for ident, answer in zip(ids, self.client.batch(routes), strict=True):
            if isinstance(answer, CrmsyncError) or not isinstance(answer, list) or not answer:
                continue
            counted = [a for a in answer if not _only_ignored(a, skip)]
            chosen = counted[0] if counted else answer[-1]
            when = _time(chosen.get("date"))
            if when is not None:
                out[str(ident)] = when
        return out

    def events_since(self, object_id: str, cursor: str | None) -> tuple[list[SourceEvent], str | None]:
        """The board's changes after action ``cursor`` (oldest first) and the newest action id."""
        board = self.object_id(object_id)
        if cursor is None:
            return [], newest_action(self.client, board)
        events: list[SourceEvent] = []
        newest = cursor
        for action in actions_since(self.client, board, cursor):
            newest = str(action["id"])
            events.extend(self.parse(json.dumps({"action": action}).encode()))
        return events, newest


def _only_ignored(action: dict[str, Any], skip: set[str]) -> bool:
    data = action.get("data") or {}
    if action.get("type") == "updateCustomFieldItem":
        return str((data.get("customField") or {}).get("name")) in skip
    if action.get("type") == "updateCard":
        changed = set((data.get("old") or {}).keys())
        return bool(changed) and changed <= skip
    return False


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
