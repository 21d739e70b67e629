"""``GET /api/v1/views/{name}?param=...``: read-through views, served live from the source system.

A view is a named, parameterised SOQL query declared in the configuration. Parameters are typed
and bound by the connector with SOQL escaping — never pasted into the query text.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import anyio
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model
from starlette.requests import Request

from crmsync.engine.runtime import Runtime
from crmsync.errors import CrmsyncError, FixTheData, RetryLater
from crmsync.web.auth import authenticate
from crmsync.web.errors import ApiError

_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")


def _id(raw: str) -> str:
    if not _ID.match(raw):
        raise ValueError("a Salesforce id has 15 or 18 letters and digits")
    return raw


def _number(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"{raw!r} is not a finite number")
    return value


def _boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered not in ("true", "false"):
        raise ValueError("use true or false")
    return lowered == "true"


def _int(raw: str) -> int:
    if len(raw) > 20:  # past 64 bits, and int() of thousands of digits is not free
        raise ValueError(f"{raw[:20]!r}… is not a whole number of at most 20 digits")
    return int(raw)


def _parsed(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    def validate(raw: Any) -> Any:
        return parse(raw) if isinstance(raw, str) else raw  # defaults come as they are configured

    return validate


#: each parameter type: how a query-string value is read, and its JSON Schema
PARAM_TYPES: dict[str, Any] = {
    "id": Annotated[str, Field(pattern=_ID.pattern), BeforeValidator(_parsed(_id))],
    "string": str,
    "int": Annotated[int, BeforeValidator(_parsed(_int))],
    "number": Annotated[float, BeforeValidator(_parsed(_number))],
    "boolean": Annotated[bool, BeforeValidator(_parsed(_boolean))],
    "date": Annotated[dt.date, BeforeValidator(_parsed(dt.date.fromisoformat))],
}


def params_model(name: str, view: Any) -> type[BaseModel]:
    """The model that validates a view's query string, built from its declared parameters."""
    fields: dict[str, Any] = {}
    for param, spec in view.params.items():
        kind = PARAM_TYPES[spec.type]
        if spec.required:
            fields[param] = (kind, Field(description=f"{spec.type} (required)"))
        else:
            fields[param] = (kind, Field(spec.default, description=spec.type, validate_default=False))
    title = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name)) or "View"
    return create_model(f"{title}ViewParams", __config__=ConfigDict(extra="forbid"), **fields)


class ViewRows(BaseModel):
    """The rows a view read, live from the system that owns them."""

    view: str = Field(description="The view's name.")
    totalSize: int = Field(description="How many rows follow.")  # Salesforce's own name
    records: list[dict[str, Any]] = Field(description="The rows, without Salesforce's `attributes`.")


def bind(model: type[BaseModel], view: Any, query: Mapping[str, str]) -> dict[str, Any]:
    """The view's parameters from the query string, validated by ``model`` (:func:`params_model`).

    A 422 names the first problem: unknown parameters, then each declared one in order.
    """
    declared: dict[str, Any] = dict(view.params)
    try:
        given = model.model_validate(dict(query))
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
        if unknown:
            raise ApiError(
                422,
                "unknown_parameter",
                f"unknown parameters {unknown}; this view takes {sorted(declared) or 'none'}",
            ) from exc
        first = min(errors, key=lambda e: list(declared).index(str(e["loc"][0])))
        param = str(first["loc"][0])
        if first["type"] == "missing":
            raise ApiError(422, "missing_parameter", f"parameter {param!r} is required") from exc
        cause = (first.get("ctx") or {}).get("error", first["msg"])
        raise ApiError(
            422, "invalid_parameter", f"parameter {param!r} must be of type {declared[param].type}: {cause}"
        ) from exc
    return {param: getattr(given, param) for param in declared}


def _clean(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (_clean(v) if isinstance(v, Mapping) else v) for k, v in record.items() if k != "attributes"}


class Views:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.models = {name: params_model(name, view) for name, view in runtime.config.views.items()}

    def run(self, name: str, query: Mapping[str, str]) -> dict[str, Any]:
        view = self.rt.config.views.get(name)
        if view is None:
            valid = ", ".join(sorted(self.rt.config.views)) or "none"
            raise ApiError(404, "unknown_view", f"no view {name!r}; valid: {valid}")
        params = bind(self.models[name], view, query)
        try:
            rows = self.rt.queryable(view.connection).query_view(view.query, params)
        except RetryLater as exc:
            raise ApiError(503, "source_unavailable", f"{view.connection} cannot be read now: {exc}") from exc
        except FixTheData as exc:
            raise ApiError(502, "source_refused", f"{view.connection} refused the query: {exc}") from exc
        except CrmsyncError as exc:
            raise ApiError(502, "source_error", f"{view.connection}: {exc}") from exc
        records = [_clean(r) for r in rows]
        return ViewRows(view=name, totalSize=len(records), records=records).model_dump()

    async def __call__(self, request: Request, token: str) -> dict[str, Any]:
        name, query = request.path_params["name"], dict(request.query_params)
        return await anyio.to_thread.run_sync(self.handle, token, name, query)

    def handle(self, token: str, name: str, query: Mapping[str, str]) -> dict[str, Any]:
        """Authenticate first, then read the view live, in one worker thread."""
        authenticate(self.rt.store, token)
        return self.run(name, query)
