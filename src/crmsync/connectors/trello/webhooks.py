"""Trello webhook deliveries: the signature, de-duplication, and actions as typed changes.

Trello POSTs ``{"action", "model", "webhook"}`` for every action involving a webhook's model (a
board webhook sees its cards, lists, labels, comments and custom fields) and signs it::

    X-Trello-Webhook = base64(HMAC-SHA1(key = the Power-Up's secret, raw body + callback URL))

:func:`verify_signature` checks it on the raw bytes, in constant time. Deliveries may repeat and
arrive out of order: :class:`RecentActions` drops an ``action.id`` already seen.

:func:`parse_action` turns one action (from a delivery or from ``/boards/{id}/actions``) into a
:class:`TrelloChange`:

==============================================  ==============  ===================================
``action.type``                                  kind            ``fields`` / ``previous``
==============================================  ==============  ===================================
createCard, copyCard, moveCardToBoard            create          name, idList, list
updateCard with ``old.idList``                   move            idList, list (listAfter/Before)
updateCard with ``old.closed``                   archive /       closed
                                                 unarchive
updateCard with ``old.name``                     rename          name
updateCard with ``old.due/start/dueComplete``    due             that field
updateCard, other ``old`` keys (desc, pos...)    update          those fields
updateCustomFieldItem                            custom_field    the field's name: its plain value
addMemberToCard / removeMemberFromCard           members         member (id) in fields / previous
addLabelToCard / removeLabelFromCard             labels          label (name) in fields / previous
commentCard, updateComment, deleteComment        comment         text
deleteCard, moveCardFromBoard                    delete          (nothing: the card is gone)
createList, updateList, moveListToBoard          list            the list's changed fields
addAttachmentToCard                              attachment      attachment (name)
updateCheckItemStateOnCard                       checklist       checkItem (name), state
==============================================  ==============  ===================================

A list option arrives as its id (``idValue``): :meth:`TrelloChange.resolved` names it, given the
board's definitions. Other action types (board, member or Power-Up actions) are not changes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from crmsync.connectors.trello.cards import LIST, BoardInfo, decode_item, strip_marker

ChangeKind = Literal[
    "create", "move", "archive", "unarchive", "rename", "due", "update", "custom_field", "members",
    "labels", "comment", "delete", "list", "attachment", "checklist",
]  # fmt: skip

#: action types that are not ``updateCard`` → their kind
ACTION_KINDS: dict[str, ChangeKind] = {
    "createCard": "create",
    "copyCard": "create",
    "moveCardToBoard": "create",
    "updateCustomFieldItem": "custom_field",
    "addMemberToCard": "members",
    "removeMemberFromCard": "members",
    "addLabelToCard": "labels",
    "removeLabelFromCard": "labels",
    "commentCard": "comment",
    "updateComment": "comment",
    "deleteComment": "comment",
    "deleteCard": "delete",
    "moveCardFromBoard": "delete",
    "createList": "list",
    "updateList": "list",
    "moveListToBoard": "list",
    "addAttachmentToCard": "attachment",
    "updateCheckItemStateOnCard": "checklist",
}
#: every action type read as a change (the ``filter`` of a catch-up read)
ACTION_TYPES: tuple[str, ...] = ("updateCard", *ACTION_KINDS)
#: the largest delivery read (Trello's bodies carry the watched board: tens of kilobytes)
MAX_BODY = 2_000_000


class WebhookRefused(Exception):
    """A delivery whose signature does not check out: answer 401 and store nothing."""


class MalformedEvent(ValueError):
    """A delivery whose body is not a Trello action crmsync can read."""


def signature(secret: str, body: bytes, callback_url: str) -> str:
    """Trello's ``X-Trello-Webhook`` value for ``body`` delivered to ``callback_url``."""
    digest = hmac.new(secret.encode(), body + callback_url.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_signature(secret: str | None, body: bytes, callback_url: str, header: str | None) -> None:
    """Check a delivery against the callback URL exactly as registered; raise :class:`WebhookRefused`."""
    if not secret:
        raise WebhookRefused("no app_secret is configured for this connection: deliveries cannot be verified")
    if not header:
        raise WebhookRefused("the delivery carries no X-Trello-Webhook signature")
    expected = signature(secret, body, callback_url)
    if not hmac.compare_digest(expected.encode(), header.strip().encode()):
        raise WebhookRefused("the delivery's X-Trello-Webhook signature does not match")


def signature_header(headers: Mapping[str, str]) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == "x-trello-webhook"), None)


class RecentActions:
    """The ids of the last ``size`` actions seen, to drop repeated deliveries (thread-safe)."""

    def __init__(self, size: int = 50_000) -> None:
        self.size = size
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, action_id: str) -> bool:
        """True the first time ``action_id`` is offered, False for a repeat."""
        with self._lock:
            if action_id in self._seen:
                self._seen.move_to_end(action_id)
                return False
            self._seen[action_id] = None
            if len(self._seen) > self.size:
                self._seen.popitem(last=False)
            return True


@dataclass(frozen=True)
class TrelloChange:
    """One action on a board, as a change."""

    kind: ChangeKind
    action_id: str
    action_type: str
    board_id: str | None
    card_id: str | None = None
    list_id: str | None = None
    at: dt.datetime | None = None
    member_id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    previous: dict[str, Any] = field(default_factory=dict)
    custom_field_id: str | None = None
    comment_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def resolved(self, info: BoardInfo) -> TrelloChange:
        """The same change with a list option's id named by the board's definitions."""
        definition = info.custom_fields.get(self.custom_field_id or "")
        if definition is None or definition.get("type") != "list":
            return self
        named = {k: info.option_text(definition, v) or v for k, v in self.fields.items()}
        before = {k: info.option_text(definition, v) or v for k, v in self.previous.items()}
        return replace(self, fields=named, previous=before)


def load_delivery(body: bytes) -> Mapping[str, Any]:
    """The JSON of a delivery's body (refusing bodies too large, not JSON, or with no ``action``)."""
    if len(body) > MAX_BODY:
        raise MalformedEvent(f"the body is larger than {MAX_BODY} bytes")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise MalformedEvent(f"the body is not JSON: {exc}") from exc
    if not isinstance(data, Mapping) or not isinstance(data.get("action"), Mapping):
        raise MalformedEvent("the body has no 'action' object")
    return data


def parse_delivery(body: bytes) -> TrelloChange | None:
    """The change a delivery reports; None for an action type that is not a change."""
    return parse_action(load_delivery(body)["action"])


def _ref(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _when(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _custom_value(data: Mapping[str, Any], item: Any) -> Any:
    definition = _ref(data, "customField")
    if not isinstance(item, Mapping):
        return None
    if definition.get("type") == "list" or ("idValue" in item and "value" not in item):
        return item.get("idValue") or None
    if not item.get("value"):
        return None
    return decode_item(definition, item, BoardInfo(id=""))


def parse_action(action: Mapping[str, Any]) -> TrelloChange | None:
    """One action as a change (see the table of this module); None when it is not a change."""
    try:
        return _parse(action)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise MalformedEvent(f"the action holds a value crmsync cannot read: {exc}") from exc


def _update_kind(old: Mapping[str, Any], card: Mapping[str, Any]) -> ChangeKind:
    if "idList" in old:
        return "move"
    if "closed" in old:
        return "archive" if card.get("closed") else "unarchive"
    if "name" in old:
        return "rename"
    if set(old) & {"due", "start", "dueComplete"}:
        return "due"
    return "update"


def _parse(action: Mapping[str, Any]) -> TrelloChange | None:
    action_type = str(action.get("type") or "")
    ident = action.get("id")
    if not ident:
        raise MalformedEvent("the action has no id")
    data = _ref(action, "data")
    card = _ref(data, "card")
    old = _ref(data, "old")
    if action_type == "updateCard":
        kind = _update_kind(old, card)
    elif action_type in ACTION_KINDS:
        kind = ACTION_KINDS[action_type]
    else:
        return None
    fields: dict[str, Any] = {}
    previous: dict[str, Any] = {}
    list_id = _text(_ref(data, "list").get("id") or card.get("idList"))
    custom_field_id = comment_id = None
    if kind == "create":
        fields = {"name": card.get("name"), "idList": list_id, LIST: _ref(data, "list").get("name")}
    elif kind == "move":
        after, before = _ref(data, "listAfter"), _ref(data, "listBefore")
        list_id = _text(after.get("id") or card.get("idList"))
        fields = {"idList": list_id, LIST: after.get("name")}
        previous = {"idList": _text(before.get("id") or old.get("idList")), LIST: before.get("name")}
    elif action_type == "updateCard":
        for name, before in old.items():
            fields[name] = card.get(name)
            previous[name] = before
        if "desc" in fields:
            fields["desc"], previous["desc"] = strip_marker(fields["desc"]), strip_marker(previous["desc"])
    elif kind == "custom_field":
        definition = _ref(data, "customField")
        custom_field_id = _text(definition.get("id"))
        name = str(definition.get("name") or custom_field_id)
        fields[name] = _custom_value(data, data.get("customFieldItem"))
        previous[name] = _custom_value(data, old) if old else None
    elif kind == "members":
        member = _text(data.get("idMember") or _ref(action, "member").get("id"))
        (fields if action_type == "addMemberToCard" else previous)["member"] = member
    elif kind == "labels":
        label = _ref(data, "label")
        (fields if action_type == "addLabelToCard" else previous)["label"] = label.get("name") or data.get(
            "text"
        )
    elif kind == "comment":
        comment_id = _text(ident if action_type == "commentCard" else _ref(data, "action").get("id"))
        if action_type != "deleteComment":
            fields["text"] = (
                data.get("text") if action_type == "commentCard" else _ref(data, "action").get("text")
            )
        if action_type == "updateComment":
            previous["text"] = old.get("text")
    elif kind == "list":
        trello_list = _ref(data, "list")
        list_id = _text(trello_list.get("id"))
        fields = {name: trello_list.get(name) for name in (old or {"name": None})}
        previous = dict(old)
    elif kind == "attachment":
        fields["attachment"] = _ref(data, "attachment").get("name")
    elif kind == "checklist":
        item = _ref(data, "checkItem")
        fields = {"checkItem": item.get("name"), "state": item.get("state")}
    board = _ref(data, "board") or _ref(data, "boardSource")
    return TrelloChange(
        kind=kind,
        action_id=str(ident),
        action_type=action_type,
        board_id=_text(board.get("id")),
        card_id=_text(card.get("id")),
        list_id=list_id,
        at=_when(action.get("date")),
        member_id=_text(action.get("idMemberCreator")),
        fields=fields,
        previous=previous,
        custom_field_id=custom_field_id,
        comment_id=comment_id,
        raw=dict(action),
    )
