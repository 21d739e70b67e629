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
signing secret; :func:`verify_token` checks signature, audience (the URL the delivery was sent to)
and expiry. monday's signature does not cover the body, so the receiver also binds each token to
the body it first came with (:func:`crmsync.store.webhooks.use_token`). Webhooks made with a
personal token are unsigned: their URL carries a secret instead (:func:`secret_matches`).

Bodies are read by :func:`load_body`, bounded in size and nesting depth before the JSON parser
runs; every malformed body or value is a :class:`MalformedEvent` (the receiver answers 400).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import jwt

from crmsync.connectors.capabilities import MalformedDelivery, WebhookRefused
from crmsync.connectors.monday import columns as codec
from crmsync.connectors.monday.fields import GROUP, NAME

__all__ = ["MalformedEvent", "MondayEvent", "WebhookRefused"]

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
#: the deepest nesting of arrays and objects a delivery may have (monday's go 4 deep)
MAX_DEPTH = 32
#: the longest signed token read (monday's are a few hundred characters)
MAX_TOKEN_LENGTH = 4096
#: change times outside these bounds (epoch seconds: 2000-01-01 .. 2100-01-01) are malformed
EARLIEST_CHANGE = 946_684_800.0
LATEST_CHANGE = 4_102_444_800.0


class MalformedEvent(MalformedDelivery):
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


_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _depth(body: bytes) -> int:
    """The deepest nesting of ``[``/``{`` in a JSON text, strings skipped (no parser run)."""
    depth = deepest = 0
    for match in _TOKENS.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    break
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise MalformedEvent(f"the body holds {name}, which is not JSON")


def load_body(body: bytes | str | Mapping[str, Any]) -> Any:
    """The JSON value of a delivery's body, refusing (:class:`MalformedEvent`) bodies nested deeper
    than :data:`MAX_DEPTH`, ``NaN``/``Infinity``, numbers too long to convert and invalid UTF-8."""
    if isinstance(body, Mapping):
        return body
    raw = body.encode() if isinstance(body, str) else body
    if _depth(raw) > MAX_DEPTH:
        raise MalformedEvent(f"the body is nested more than {MAX_DEPTH} levels deep")
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except MalformedEvent:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, huge ints
        raise MalformedEvent(f"the body is not JSON: {exc}") from exc


def challenge_reply(body: bytes | str | Mapping[str, Any]) -> dict[str, Any] | None:
    """``{"challenge": value}`` to answer when ``body`` is monday's URL challenge, else None.

    Raises :class:`MalformedEvent` for a body that is not JSON (see :func:`load_body`).
    """
    data = load_body(body)
    if isinstance(data, Mapping) and "challenge" in data and "event" not in data:
        challenge = data["challenge"]
        if not isinstance(challenge, str | int) or isinstance(challenge, bool) or len(str(challenge)) > 1000:
            raise MalformedEvent("the challenge must be a short text")
        return {"challenge": challenge}
    return None


def bearer(headers: Mapping[str, str]) -> str:
    """The token of a delivery's ``Authorization`` header (bare, as monday sends it, or Bearer)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    token = (lowered.get("authorization") or "").strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    return token


def verify_token(token: str, secret: str, audience: Collection[str]) -> dict[str, Any]:
    """The claims of a delivery's JWT, checked: HS256 with ``secret``, ``aud`` one of ``audience``
    (the URL the delivery came to), ``exp`` and ``iat`` present and ``exp`` not past (with
    :data:`JWT_LEEWAY`). Raises :class:`WebhookRefused`."""
    if not token:
        raise WebhookRefused("the delivery carries no Authorization header")
    if len(token) > MAX_TOKEN_LENGTH:
        raise WebhookRefused("the delivery's Authorization header is too long to be monday's")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=list(audience),
            options={"require": ["exp", "iat", "aud"], "verify_aud": True},
            leeway=JWT_LEEWAY,
        )
    except jwt.PyJWTError as exc:
        raise WebhookRefused(f"the delivery's signature is not valid: {exc}") from exc
    return claims


def verify_request(
    headers: Mapping[str, str],
    body: bytes | str,
    secret: str | None,
    *,
    audience: Collection[str] | str,
) -> dict[str, Any]:
    """Check the ``Authorization`` JWT of a delivery (see :func:`verify_token`); its claims.

    With no ``secret`` there is nothing to check a signature with: refused (a connection without a
    signing secret receives on its secret URL). ``body`` is not covered by monday's signature: the
    receiver binds the token to it (single use).
    """
    del body
    if not secret:
        raise WebhookRefused(
            "no signing_secret is configured for this connection, so unsigned deliveries must come "
            "to the callback URL `crmsync webhooks ensure` registers (it carries a secret)"
        )
    audiences = [audience] if isinstance(audience, str) else list(audience)
    return verify_token(bearer(headers), secret, audiences)


def secret_matches(given: str, expected: str) -> bool:
    """Does the secret in a callback URL match (compared in constant time)?"""
    return hmac.compare_digest(given.encode(), expected.encode())


def digest(data: bytes | str) -> str:
    """SHA-256 of a token or a body, as hex (what the store keeps instead of the token)."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


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
        seconds = float(changed)
        if not math.isfinite(seconds) or not EARLIEST_CHANGE <= seconds <= LATEST_CHANGE:
            raise MalformedEvent(f"changedAt {changed!r} is not a time between 2000 and 2100")
        return dt.datetime.fromtimestamp(seconds, dt.UTC)
    stamp = event.get("triggerTime")
    if isinstance(stamp, str) and len(stamp) <= 64:
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

    Raises :class:`MalformedEvent` for a body that is not a monday event, or holds a value crmsync
    cannot read (an impossible ``changedAt``, a column value of an unexpected shape).
    """
    try:
        return _parse_event(load_body(body))
    except MalformedEvent:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
        raise MalformedEvent(f"the event holds a value crmsync cannot read: {exc}") from exc


def _parse_event(data: Any) -> MondayEvent | None:
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
