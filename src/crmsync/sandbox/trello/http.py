"""Requests as the route handlers see them, Trello's error replies, and the path router.

Handlers are plain functions ``handler(call) -> body`` (or ``async`` where they must wait on the
network, as webhook creation does): they read :class:`Call`, change the state and return the JSON
body of a 200, or raise :class:`TrelloError`. One router serves both the HTTP route and each entry
of ``/batch``. Singular collection names (``/card/{id}``) are folded into the plural ones.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crmsync.sandbox.trello.store import State

NOT_FOUND = "The requested resource was not found."

#: singular aliases Trello accepts for its collections
SINGULAR = {
    "card": "cards",
    "board": "boards",
    "list": "lists",
    "label": "labels",
    "member": "members",
    "action": "actions",
    "webhook": "webhooks",
    "token": "tokens",
    "customField": "customFields",
    "organization": "organizations",
    "checklist": "checklists",
}


class TrelloError(Exception):
    """An error reply: text/plain unless ``body`` is JSON data."""

    def __init__(self, status: int, body: str | dict[str, Any]) -> None:
        super().__init__(body if isinstance(body, str) else json.dumps(body))
        self.status = status
        self.body = body

    @property
    def message(self) -> str:
        if isinstance(self.body, str):
            return self.body
        return str(self.body.get("message", ""))


def invalid_id() -> TrelloError:
    return TrelloError(400, "invalid id")


def invalid_value(name: str) -> TrelloError:
    return TrelloError(400, f"invalid value for {name}")


def not_found() -> TrelloError:
    return TrelloError(404, NOT_FOUND)


@dataclass
class Call:
    """One API call (or one ``/batch`` entry): who makes it and with which parameters."""

    method: str
    path: str
    state: State
    params: dict[str, Any]
    member: str
    token: str
    key: str
    args: dict[str, str] = field(default_factory=dict)

    # -- parameters: query string and body merged, values are str or JSON data -------------
    def has(self, name: str) -> bool:
        return name in self.params

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.params.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def require(self, name: str) -> str:
        value = self.text(name)
        if value is None or value == "":
            raise invalid_value(name)
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.params.get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise invalid_value(name)

    def ids(self, name: str) -> list[str]:
        """A list parameter: a JSON array or a comma-separated string."""
        value = self.params.get(name)
        if value is None or value == "":
            return []
        if isinstance(value, list):
            return [str(v) for v in value]
        return [v for v in str(value).split(",") if v]

    def number(self, name: str, default: int, *, low: int = 0, high: int = 1_000_000) -> int:
        value = self.params.get(name)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise invalid_value(name) from None
        if not low <= number <= high:
            raise invalid_value(name)
        return number


Handler = Callable[[Call], Any]
AsyncHandler = Callable[[Call], Awaitable[Any]]


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler | AsyncHandler
    is_async: bool


class Router:
    """Maps ``METHOD /path`` (without ``/1``) to a handler; ``{name}`` matches one segment."""

    def __init__(self) -> None:
        self._routes: dict[str, list[_Route]] = {}

    def add(self, method: str, template: str, handler: Handler) -> None:
        self._add(method, template, handler, is_async=False)

    def add_async(self, method: str, template: str, handler: AsyncHandler) -> None:
        self._add(method, template, handler, is_async=True)

    def _add(self, method: str, template: str, handler: Handler | AsyncHandler, *, is_async: bool) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template.rstrip("/"))
        head = template.strip("/").split("/")[0]
        route = _Route(method, re.compile(f"^{regex}/?$"), handler, is_async)
        self._routes.setdefault(head, []).append(route)

    def match(self, method: str, path: str) -> tuple[_Route, dict[str, str]] | None:
        """The route for ``path`` (already without ``/1``), with its path parameters."""
        parts = path.strip("/").split("/", 1)
        head = SINGULAR.get(parts[0], parts[0])
        normalized = "/" + head + ("/" + parts[1] if len(parts) > 1 else "")
        for route in self._routes.get(head, ()):
            if route.method != method:
                continue
            found = route.pattern.match(normalized)
            if found:
                return route, found.groupdict()
        return None
