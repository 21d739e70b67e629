"""``GET /api/v1/views/{name}?param=...``: read-through views, served live from the source system.

A view is a named, parameterised SOQL query declared in the configuration. Parameters are typed
and bound by the connector with SOQL escaping — never pasted into the query text.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import anyio
from starlette.requests import Request

from crmsync.engine.runtime import Runtime
from crmsync.errors import CrmsyncError, FixTheData, RetryLater
from crmsync.web.auth import authenticate
from crmsync.web.errors import ApiError

_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")


def coerce(name: str, kind: str, raw: str) -> Any:
    """A query-string value as the parameter's declared type; 422 naming the problem otherwise."""
    try:
        if kind == "id":
            if not _ID.match(raw):
                raise ValueError("a Salesforce id has 15 or 18 letters and digits")
            return raw
        if kind == "int":
            return int(raw)
        if kind == "number":
            return float(raw)
        if kind == "boolean":
            lowered = raw.lower()
            if lowered not in ("true", "false"):
                raise ValueError("use true or false")
            return lowered == "true"
        if kind == "date":
            return dt.date.fromisoformat(raw)
        return raw
    except ValueError as exc:
        raise ApiError(422, "invalid_parameter", f"parameter {name!r} must be of type {kind}: {exc}") from exc


def bind(view: Any, query: Mapping[str, str]) -> dict[str, Any]:
    declared: dict[str, Any] = dict(view.params)
    unknown = sorted(set(query) - set(declared))
    if unknown:
        raise ApiError(
            422,
            "unknown_parameter",
            f"unknown parameters {unknown}; this view takes {sorted(declared) or 'none'}",
        )
    params: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in query:
            params[name] = coerce(name, spec.type, query[name])
        elif spec.required:
            raise ApiError(422, "missing_parameter", f"parameter {name!r} is required")
        else:
            params[name] = spec.default
    return params


def _clean(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (_clean(v) if isinstance(v, Mapping) else v) for k, v in record.items() if k != "attributes"}


class Views:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def run(self, name: str, query: Mapping[str, str]) -> dict[str, Any]:
        view = self.rt.config.views.get(name)
        if view is None:
            valid = ", ".join(sorted(self.rt.config.views)) or "none"
            raise ApiError(404, "unknown_view", f"no view {name!r}; valid: {valid}")
        params = bind(view, query)
        try:
            rows = self.rt.queryable(view.connection).query_view(view.query, params)
        except RetryLater as exc:
            raise ApiError(503, "source_unavailable", f"{view.connection} cannot be read now: {exc}") from exc
        except FixTheData as exc:
            raise ApiError(502, "source_refused", f"{view.connection} refused the query: {exc}") from exc
        except CrmsyncError as exc:
            raise ApiError(502, "source_error", f"{view.connection}: {exc}") from exc
        records = [_clean(r) for r in rows]
        return {"view": name, "totalSize": len(records), "records": records}

    async def __call__(self, request: Request, token: str) -> dict[str, Any]:
        name, query = request.path_params["name"], dict(request.query_params)
        return await anyio.to_thread.run_sync(self.handle, token, name, query)

    def handle(self, token: str, name: str, query: Mapping[str, str]) -> dict[str, Any]:
        """Authenticate first, then read the view live, in one worker thread."""
        authenticate(self.rt.store, token)
        return self.run(name, query)
