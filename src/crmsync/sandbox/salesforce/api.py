"""The REST dispatcher: one table of ``(method, path pattern) -> handler`` under ``/services/data/vXX.X``.

HTTP requests and Composite subrequests go through the same :meth:`Router.dispatch`, so a
subrequest behaves exactly like the call it stands for. Handlers are plain synchronous functions
``(call, **path_groups) -> Reply`` run under the emulator's lock; they raise :class:`ApiError`
(or :class:`~.store.DmlError`) for Salesforce's list-shaped error bodies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from crmsync.sandbox.salesforce.store import DmlError
from crmsync.sandbox.salesforce.values import ErrorItem

_UNSET: Any = object()


class ApiError(Exception):
    """A request-level error: ``status`` and ``[{"message", "errorCode"[, "fields"]}]``."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.items = [ErrorItem(code, message, fields)]

    @classmethod
    def from_dml(cls, exc: DmlError) -> ApiError:
        err = cls(exc.status, exc.errors[0].code, exc.errors[0].message, exc.errors[0].fields)
        err.items = exc.errors
        return err

    def body(self) -> list[dict[str, Any]]:
        return [item.rest() for item in self.items]


def not_found(message: str = "The requested resource does not exist") -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


@dataclass
class Call:
    """One API request, from HTTP or from a Composite subrequest."""

    method: str
    path: str  # below /services/data/vXX.X, starting with "/"
    version: str
    params: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    client: str | None = None
    parsed: Any = _UNSET

    def json(self) -> Any:
        if self.parsed is _UNSET:
            if not self.body.strip():
                raise ApiError(400, "JSON_PARSER_ERROR", "The request body is empty.")
            try:
                self.parsed = json.loads(self.body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from None
        return self.parsed

    def json_object(self) -> dict[str, Any]:
        body = self.json()
        if not isinstance(body, dict):
            raise ApiError(
                400,
                "JSON_PARSER_ERROR",
                "Cannot deserialize instance of object from START_ARRAY value [ or request may be missing "
                "a required field at [line:1, column:1]",
            )
        return body

    def flag(self, name: str) -> bool:
        return str(self.params.get(name, "")).lower() == "true"


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-able; or str when media_type is not JSON
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"

    @property
    def is_json(self) -> bool:
        return self.media_type == "application/json"


Handler = Callable[..., Reply]


def parse_call_options(header: str | None) -> str | None:
    """The ``client`` of ``Sforce-Call-Options: client=<name>[, defaultNamespace=<ns>]``."""
    if not header:
        return None
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "client" and value.strip():
            return value.strip()
    return None


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = []

    def add(self, methods: str, pattern: str, handler: Handler) -> None:
        """``pattern`` like ``/sobjects/{object}/{id}``; a group named ``rest`` may hold slashes."""
        regex = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m[1]}>{'.+' if m[1] == 'rest' else '[^/]+'})", pattern)
        compiled = re.compile(f"^{regex}/?$")
        for existing, table in self._routes:
            if existing.pattern == compiled.pattern:
                for m in methods.split():
                    table[m] = handler
                return
        self._routes.append((compiled, dict.fromkeys(methods.split(), handler)))

    def dispatch(self, call: Call) -> Reply:
        for regex, table in self._routes:
            m = regex.match(call.path)
            if m is None:
                continue
            handler = table.get(call.method)
            if handler is None:
                allowed = ",".join(sorted(table))
                raise ApiError(
                    405,
                    "METHOD_NOT_ALLOWED",
                    f"HTTP Method '{call.method}' not allowed. Allowed are {allowed}",
                )
            groups = {k: unquote(v) for k, v in m.groupdict().items()}
            try:
                return handler(call, **groups)
            except DmlError as exc:
                raise ApiError.from_dml(exc) from None
        raise not_found()
