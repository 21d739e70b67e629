"""monday.com webhook deliveries: the challenge, the JWT check, and events as typed values.

monday POSTs ``{"challenge": "..."}`` when a webhook is created (the endpoint echoes it), then
``{"event": {...}}`` for every change, with legacy type names:

=========================  ===========  =======================================================
``event.type``             kind         what :class:`MondayEvent` holds
=========================  ===========  =======================================================
``create_pulse``           create       ``fields``: ``"name"`` and the initial column values
``update_column_value``    update       ``fields``/``previous``: the column's new and old value
``update_name``            rename       ``fields``/``previous``: ``"name"``
``delete_pulse``           delete       the item id (``itemId``)
``archive_pulse``          archive      the item id (``itemId``)
``move_pulse_into_group``  move         ``group_id`` (destination); ``fields``/``previous``:
                                        ``"__group__"``
=========================  ===========  =======================================================

Values are decoded by :mod:`.columns` to the same plain values the connector reads through the
API, whatever the event's shape (internal type names such as ``color`` for status; ids as numbers
or strings; ``changedAt`` as an epoch float, or masked text as in captured payloads).

Webhooks created with an app's token carry ``Authorization: <JWT>`` signed HS256 with the app's
signing secret; :func:`verify_request` checks signature, expiry and (when given) the audience.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import jwt

from crmsync.connectors.monday import columns as codec
from crmsync.connectors.monday.connector import GROUP, NAME

EventKind = Literal["create", "update", "rename", "delete", "archive", "move"]

#: legacy ``event.type`` → the kind of change
EVENT_KINDS: dict[str, EventKind] = {
    "create_pulse": "create",
    "update_column_value": "update",
    "update_name": "rename",
    "delete_pulse": "delete",
    "archive_pulse": "archive",
    "move_pulse_into_group": "move",
}
#: the webhook subscriptions (``create_webhook`` events) that deliver each kind
SUBSCRIPTIONS: dict[EventKind, str] = {
    "create": "create_item",
    "update": "change_column_value",
    "rename": "change_name",
    "delete": "item_deleted",
    "archive": "item_archived",
    "move": "item_moved_to_any_group",
}
#: seconds of clock difference tolerated when checking ``exp``/``iat``
JWT_LEEWAY = 30


class WebhookRefused(Exception):
    """A delivery that fails the signature check: answer 401 and store nothing."""


class MalformedEvent(ValueError):
    """A delivery whose body is not a monday event crmsync can read."""


@dataclass(frozen=True)
class MondayEvent:
    """One change on a board, as a webhook reported it."""

    kind: EventKind
    board_id: str
    item_id: str
    trigger_uuid: str
    fields: dict[str, Any] = field(default_factory=dict)
    previous: dict[str, Any] = field(default_factory=dict)
    group_id: str | None = None
    at: dt.datetime | None = None
    #: the delivery's ``event`` object as received
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _load(body: bytes | str | Mapping[str, Any]) -> Any:
    if isinstance(body, Mapping):
        return body
    try:
        return json.loads(body)
    except ValueError as exc:
        raise MalformedEvent(f"the body is not JSON: {exc}") from exc


def challenge_reply(body: bytes | str | Mapping[str, Any]) -> dict[str, Any] | None:
    """``{"challenge": value}`` to answer when ``body`` is monday's URL challenge, else None."""
    try:
        data = _load(body)
    except MalformedEvent:
        return None
    if isinstance(data, Mapping) and "challenge" in data and "event" not in data:
        return {"challenge": data["challenge"]}
    return None


def verify_request(
    headers: Mapping[str, str],
    body: bytes | str,
    secret: str | None,
    *,
    audience: str | None = None,
) -> None:
    """Check the ``Authorization`` JWT of a delivery; raise :class:`WebhookRefused` when it fails.

    With no ``secret`` configured (webhooks made with a personal token carry no signature) every
    request passes. ``audience``, when given, must be the JWT's ``aud`` (the webhook's URL).
    ``body`` is not covered by monday's signature; it is taken for symmetry with other vendors.
    """
    del body
    if not secret:
        return
    lowered = {k.lower(): v for k, v in headers.items()}
    token = (lowered.get("authorization") or "").strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    if not token:
        raise WebhookRefused("the delivery carries no Authorization header")
    try:
        jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=audience,
            options={"require": ["exp"], "verify_aud": audience is not None},
            leeway=JWT_LEEWAY,
        )
    except jwt.PyJWTError as exc:
        raise WebhookRefused(f"the delivery's signature is not valid: {exc}") from exc


def _text_id(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _time(event: Mapping[str, Any]) -> dt.datetime | None:
    changed = event.get("changedAt")
    if isinstance(changed, int | float) and not isinstance(changed, bool):
        return dt.datetime.fromtimestamp(float(changed), dt.UTC)
    stamp = event.get("triggerTime")
    if isinstance(stamp, str):
        try:
            parsed = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None


def _value(column_type: Any, value: Any) -> Any:
    kind = str(column_type) if column_type else codec.infer_type(value)
    return codec.decode(kind, value)


def parse_event(body: bytes | str | Mapping[str, Any]) -> MondayEvent | None:
    """The change a delivery reports; None for event types crmsync does not sync (updates, ...).

    Raises :class:`MalformedEvent` for a body that is not a monday event.
    """
    data = _load(body)
    event = data.get("event") if isinstance(data, Mapping) else None
    if not isinstance(event, Mapping):
        raise MalformedEvent("the body has no 'event' object")
    kind = EVENT_KINDS.get(str(event.get("type")))
    if kind is None:
        return None
    board = _text_id(event.get("boardId"))
    item = _text_id(event.get("pulseId") if kind not in ("delete", "archive") else None)
    item = item or _text_id(event.get("itemId")) or _text_id(event.get("pulseId"))
    trigger = _text_id(event.get("triggerUuid"))
    if board is None or item is None or trigger is None:
        raise MalformedEvent(f"a {event.get('type')} event needs boardId, the item id and triggerUuid")
    fields: dict[str, Any] = {}
    previous: dict[str, Any] = {}
    group = _text_id(event.get("groupId"))
    if kind == "create":
        if event.get("pulseName") is not None:
            fields[NAME] = str(event["pulseName"])
        values = event.get("columnValues")
        if isinstance(values, Mapping):
            for column_id, value in values.items():
                fields[str(column_id)] = _value(None, value)
    elif kind == "update":
        column = _text_id(event.get("columnId"))
        if column is None:
            raise MalformedEvent("an update_column_value event needs columnId")
        fields[column] = _value(event.get("columnType"), event.get("value"))
        previous[column] = _value(event.get("columnType"), event.get("previousValue"))
    elif kind == "rename":
        for target, key in ((fields, "value"), (previous, "previousValue")):
            named = event.get(key)
            if isinstance(named, Mapping) and named.get("name") is not None:
                target[NAME] = str(named["name"])
    elif kind == "move":
        group = _text_id(event.get("destGroupId"))
        dest = event.get("destGroup")
        if group is None and isinstance(dest, Mapping):
            group = _text_id(dest.get("id"))
        source = _text_id(event.get("sourceGroupId"))
        fields[GROUP] = group
        if source is not None:
            previous[GROUP] = source
    return MondayEvent(
        kind=kind,
        board_id=board,
        item_id=item,
        trigger_uuid=trigger,
        fields=fields,
        previous=previous,
        group_id=group,
        at=_time(event),
        raw=dict(event),
    )
