"""What resolvers see of one request (``info.context``), and the helpers they share."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias

from graphql import GraphQLResolveInfo

from crmsync.sandbox.monday.complexity import Charge
from crmsync.sandbox.monday.errors import MondayError
from crmsync.sandbox.monday.operations import Operations
from crmsync.sandbox.monday.paging import CursorStore
from crmsync.sandbox.monday.webhooks import WebhookHub


@dataclass
class RequestContext:
    ops: Operations
    cursors: CursorStore
    hub: WebhookHub
    lock: threading.RLock
    user_id: int
    app: bool  # the caller used the app token
    version: str
    charge: Charge

    @property
    def legacy_relations(self) -> bool:
        """Before 2025-04, board_relation ``value`` still held ``linkedPulseIds``."""
        return self.version < "2025-04"

    @contextmanager
    def unlocked(self) -> Iterator[None]:
        """Let other requests run while this one waits on the network (webhook challenge)."""
        self.lock.release()
        try:
            yield
        finally:
            self.lock.acquire()


#: what resolvers receive as ``info``
Info: TypeAlias = "GraphQLResolveInfo[RequestContext]"


def ctx(info: Info) -> RequestContext:
    return info.context


def to_id(value: Any, code: str = "InvalidArgumentException", what: str = "id") -> int:
    """An ``ID`` argument (string or number) as an int, or monday's error for a malformed one."""
    try:
        return int(str(value))
    except (TypeError, ValueError):
        raise MondayError(code, f"Invalid {what}: {value!r}", error_data={what: value}) from None


def optional_id(value: Any, code: str = "InvalidArgumentException", what: str = "id") -> int | None:
    return None if value is None else to_id(value, code, what)


def decode_json(value: Any, argument: str) -> Any:
    """A ``JSON`` argument: clients send a JSON-encoded string or, with variables, the value itself."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise MondayError(
            "JsonParseException",
            f"Invalid JSON in argument '{argument}'",
            error_data={"argument": argument},
            status_code=400,
        ) from None


def decode_object(value: Any, argument: str) -> dict[str, Any]:
    decoded = decode_json(value, argument)
    if decoded is None:
        return {}
    if not isinstance(decoded, dict):
        raise MondayError(
            "InvalidArgumentException",
            f"Argument '{argument}' must be a JSON object",
            error_data={"argument": argument},
        )
    return decoded
