"""``GET /api/v1/openapi.json``: the OpenAPI 3.1 description of every HTTP endpoint.

Request and response bodies are the JSON Schemas of the pydantic models that validate and build
them (:mod:`.ingest`, :mod:`.views`, :mod:`.errors`), so the description cannot drift from what
the server does. Each configured view is its own path, its query parameters taken from the model
that validates them; the flows that take records are listed by name. Because it names the
deployment's flows and views, the document needs a bearer token like the rest of ``/api/v1``.

Endpoints owned by other modules (webhooks, health, readiness, metrics) are described by the
route table :data:`OTHER_ROUTES` here; a test checks that every route the app serves is in the
document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field, RootModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request

from crmsync import __version__
from crmsync.engine.runtime import Runtime
from crmsync.web.auth import authenticate
from crmsync.web.dashboard.jobs import JobStarted
from crmsync.web.dashboard.monitoring import DiscardLetters, Done, LetterIds
from crmsync.web.dashboard.routes import API as DASHBOARD
from crmsync.web.errors import MAX_DETAILS, ErrorReply
from crmsync.web.ingest import Accepted, IngestBatch, IngestRecord
from crmsync.web.views import ViewRows

PATH = "/api/v1/openapi.json"
_REF = "#/components/schemas/{model}"


class IngestBody(RootModel[IngestRecord | IngestBatch | list[IngestRecord]]):
    """One record, ``{"records": [...]}`` or a JSON array of records (what ingest accepts)."""


class Health(BaseModel):
    status: Literal["ok"] = Field(description="The process is up.")


class Readiness(BaseModel):
    """Whether this process can do its work now; 503 with the reasons when it cannot."""

    model_config = ConfigDict(extra="allow")

    status: str = Field(description="ready, or why not.")
    reasons: list[str] = Field(default_factory=list, description="What keeps the process from being ready.")


class MondayChallenge(BaseModel):
    """monday.com's handshake when a webhook is created: the reply echoes it."""

    challenge: str


class MondayDelivery(BaseModel):
    """A monday.com event (see monday's webhook reference for the event's fields)."""

    model_config = ConfigDict(extra="allow")

    event: dict[str, Any] = Field(description="monday's event: type, boardId, pulseId, columnId, value, …")


class MondayReceived(BaseModel):
    """What was made of a delivery: changes queued, or the event ignored (a board no flow reads)."""

    model_config = ConfigDict(extra="allow")

    accepted: int | None = Field(None, description="Changes queued.")
    duplicates: int | None = Field(None, description="Changes seen before (monday delivered again).")
    stale: list[str] | None = Field(None, description="Fields dropped: older than a value already received.")
    ignored: bool | None = Field(None, description="True when no flow reads the event's board.")


MODELS: list[type[BaseModel]] = [
    IngestBody,
    IngestRecord,
    IngestBatch,
    Accepted,
    ErrorReply,
    ViewRows,
    Health,
    Readiness,
    MondayChallenge,
    MondayDelivery,
    MondayReceived,
    LetterIds,
    DiscardLetters,
    Done,
    JobStarted,
]


@dataclass(frozen=True)
class Route:
    """One operation of the description: what is sent and what comes back."""

    method: str
    path: str
    summary: str
    tag: str
    description: str = ""
    authenticated: bool = False
    parameters: list[dict[str, Any]] = field(default_factory=list)
    request: str | None = None  # a model's name
    responses: dict[int, tuple[str, str | None]] = field(default_factory=dict)  # status → (what, model)
    content_type: str = "application/json"
    #: the dashboard's session cookie (a GET also takes a bearer token; a POST needs X-CSRF-Token)
    session: bool = False


def _path_param(name: str, description: str, enum: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if enum:
        schema["enum"] = enum
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


_CONNECTION = _path_param("connection", "The monday connection's name in the configuration.")
_MONDAY_RESPONSES: dict[int, tuple[str, str | None]] = {
    200: ("The challenge echoed, or what was made of the event.", "MondayReceived"),
    400: ("The body is not a monday event (malformed, too deep).", "ErrorReply"),
    401: ("Not authenticated: bad or replayed signature, or a wrong URL secret.", "ErrorReply"),
    404: ("No monday connection of this name.", "ErrorReply"),
    413: ("The body is over web.max_body_bytes.", "ErrorReply"),
    503: ("The store cannot be reached; monday delivers again.", "ErrorReply"),
}

#: endpoints served by other modules, described here so the document covers every route
OTHER_ROUTES: list[Route] = [
    Route(
        "post",
        "/webhooks/monday/{connection}",
        "Receive a signed monday.com webhook delivery",
        "webhooks",
        "For webhooks created with an app's token: the Authorization JWT must verify with the "
        "connection's signing_secret and name this URL as its audience.",
        parameters=[
            _CONNECTION,
            {
                "name": "Authorization",
                "in": "header",
                "required": False,
                "description": "monday's JWT, signed with the app's signing secret.",
                "schema": {"type": "string"},
            },
        ],
        request="MondayDelivery",
        responses=_MONDAY_RESPONSES,
    ),
    Route(
        "post",
        "/webhooks/monday/{connection}/{secret}",
        "Receive a monday.com webhook delivery to a secret URL",
        "webhooks",
        "For webhooks created with a personal token (monday does not sign them): the URL carries "
        "the connection's unguessable secret, compared in constant time.",
        parameters=[_CONNECTION, _path_param("secret", "The connection's webhook URL secret.")],
        request="MondayDelivery",
        responses=_MONDAY_RESPONSES,
    ),
    Route(
        "post",
        "/webhooks/{connection}",
        "Receive a signed webhook delivery for a connection",
        "webhooks",
        "Any connection whose connector receives webhooks; its connector authenticates the delivery "
        "(for monday.com: as on /webhooks/monday/{connection}).",
        parameters=[_path_param("connection", "The connection's name in the configuration.")],
        request="MondayDelivery",
        responses=_MONDAY_RESPONSES,
    ),
    Route(
        "post",
        "/webhooks/{connection}/{secret}",
        "Receive a webhook delivery to a connection's secret URL",
        "webhooks",
        "Unsigned deliveries: the URL carries the connection's unguessable secret, compared in "
        "constant time.",
        parameters=[
            _path_param("connection", "The connection's name in the configuration."),
            _path_param("secret", "The connection's webhook URL secret."),
        ],
        request="MondayDelivery",
        responses=_MONDAY_RESPONSES,
    ),
    Route("get", "/healthz", "The process is up", "operations", responses={200: ("Up.", "Health")}),
    Route(
        "get",
        "/readyz",
        "The process can do its work: the store accepts writes, the logins are accepted",
        "operations",
        responses={200: ("Ready.", "Readiness"), 503: ("Not ready; the reasons say why.", "Readiness")},
    ),
    Route(
        "get",
        "/metrics",
        "Prometheus metrics",
        "operations",
        responses={
            200: ("Metrics in Prometheus' text format.", None),
            503: ("The store cannot be reached: the process's own metrics only.", None),
        },
        content_type="text/plain",
    ),
]

_REFUSED: dict[int, tuple[str, str | None]] = {
    401: ("Missing, unknown or revoked bearer token.", "ErrorReply"),
    503: ("The store cannot be reached; send again.", "ErrorReply"),
}


def api_routes(runtime: Runtime, views: dict[str, type[BaseModel]]) -> list[Route]:
    """The ``/api/v1`` operations of this deployment: its flows and each of its views."""
    flows = sorted(n for n, f in runtime.flows.items() if runtime.is_app_source(f))
    routes = [
        Route(
            "post",
            "/api/v1/flows/{flow}/records",
            "Hand over records to a flow",
            "ingest",
            "Queues every record, or none: a refusal names each problem (at most "
            f"{MAX_DETAILS} are listed). Sending the same delivery_id again is harmless.",
            authenticated=True,
            parameters=[_path_param("flow", "A flow whose source is an application.", flows)],
            request="IngestBody",
            responses={
                202: ("Every record is durably queued.", "Accepted"),
                400: ("The body is not JSON, is empty, or was cut short.", "ErrorReply"),
                404: ("No flow of this name takes records from applications.", "ErrorReply"),
                409: ("A record's parent is locked (e.g. its contract is fulfilled).", "ErrorReply"),
                413: ("The body is over web.max_body_bytes, or too many records.", "ErrorReply"),
                422: (
                    "A record has the wrong shape, a field the application may not write, or a "
                    "value the target cannot hold; details name each one.",
                    "ErrorReply",
                ),
                **_REFUSED,
            },
        ),
        Route(
            "get",
            PATH,
            "This description",
            "meta",
            authenticated=True,
            responses={200: ("The OpenAPI 3.1 document.", None), **_REFUSED},
        ),
    ]
    for name, model in sorted(views.items()):
        view = runtime.config.views[name]
        schema = model.model_json_schema()
        required = set(schema.get("required", []))
        parameters = [
            {
                "name": param,
                "in": "query",
                "required": param in required,
                "description": prop.get("description", ""),
                "schema": {k: v for k, v in prop.items() if k not in ("description", "title", "default")},
            }
            for param, prop in schema.get("properties", {}).items()
        ]
        routes.append(
            Route(
                "get",
                f"/api/v1/views/{name}",
                f"Read the view {name!r} live from {view.connection}",
                "views",
                authenticated=True,
                parameters=parameters,
                responses={
                    200: ("The rows, read live.", "ViewRows"),
                    422: ("A parameter is unknown, missing or of the wrong type.", "ErrorReply"),
                    502: (f"{view.connection} refused the query.", "ErrorReply"),
                    **_REFUSED,
                },
            )
        )
    return routes


_CSRF = {
    "name": "X-CSRF-Token",
    "in": "header",
    "required": True,
    "description": "The session's CSRF token (the pages carry it in <body data-csrf>).",
    "schema": {"type": "string"},
}
_DASHBOARD_REFUSED: dict[int, tuple[str, str | None]] = {
    401: ("No session (log in at /login), or a bad bearer token.", "ErrorReply"),
    503: ("The store cannot be reached.", "ErrorReply"),
}
_ADMIN_REFUSED: dict[int, tuple[str, str | None]] = {
    401: ("No session: log in at /login.", "ErrorReply"),
    403: (
        "A missing or wrong X-CSRF-Token, or a viewer's session (this needs the admin role).",
        "ErrorReply",
    ),
    422: ("The body is not valid.", "ErrorReply"),
    503: ("The store cannot be reached.", "ErrorReply"),
}


def _query(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": kind},
    }


#: the dashboard's JSON, what its pages and charts read (:mod:`crmsync.web.dashboard.routes`)
DASHBOARD_ROUTES: list[Route] = [
    Route(
        "get",
        f"{DASHBOARD}/overview",
        "Per flow: applied, queue, latency, dead letters, pauses; connections, webhooks, jobs",
        "dashboard",
        session=True,
        responses={200: ("The overview.", None), **_DASHBOARD_REFUSED},
    ),
    Route(
        "get",
        f"{DASHBOARD}/charts",
        "Throughput, latency and queue depth over time per flow; API budget use; workload snapshot trend",
        "dashboard",
        session=True,
        parameters=[_query("hours", "The period: the last 1 to 168 hours (default 1).", "integer")],
        responses={200: ("The series, one value per time bucket of `labels`.", None), **_DASHBOARD_REFUSED},
    ),
    Route(
        "get",
        f"{DASHBOARD}/dead-letters",
        "Dead letters, newest first (as crmsync dead-letters list)",
        "dashboard",
        session=True,
        parameters=[
            _query("flow", "Only this flow."),
            _query("state", "open, replayed or discarded."),
            _query("q", "Only those whose record key or error message holds this."),
            _query("limit", "At most this many (default 100).", "integer"),
        ],
        responses={200: ("{letters: [...]}", None), **_DASHBOARD_REFUSED},
    ),
    Route(
        "get",
        f"{DASHBOARD}/dead-letters/{{id}}",
        "One dead letter: its fields and the vendor's error",
        "dashboard",
        session=True,
        parameters=[_path_param("id", "The dead letter's id.")],
        responses={
            200: ("The dead letter.", None),
            404: ("No such dead letter.", "ErrorReply"),
            **_DASHBOARD_REFUSED,
        },
    ),
    Route(
        "post",
        f"{DASHBOARD}/dead-letters/replay",
        "Replay dead letters (as crmsync dead-letters replay); admin",
        "dashboard",
        session=True,
        parameters=[_CSRF],
        request="LetterIds",
        responses={200: ("How many were replayed.", "Done"), **_ADMIN_REFUSED},
    ),
    Route(
        "post",
        f"{DASHBOARD}/dead-letters/discard",
        "Discard dead letters with a reason (as crmsync dead-letters discard --reason); admin",
        "dashboard",
        session=True,
        parameters=[_CSRF],
        request="DiscardLetters",
        responses={200: ("How many were discarded.", "Done"), **_ADMIN_REFUSED},
    ),
    Route(
        "get",
        f"{DASHBOARD}/trace",
        "A record's links and history across systems by any of its ids (as crmsync log --record --json)",
        "dashboard",
        session=True,
        parameters=[_query("record", "Any id of the record."), _query("flow", "Only this flow.")],
        responses={200: ("{record, links, entries}", None), **_DASHBOARD_REFUSED},
    ),
    Route(
        "get",
        f"{DASHBOARD}/jobs",
        "The configured jobs (next and last run) and the recent runs with their progress",
        "dashboard",
        session=True,
        responses={200: ("{jobs, recent}", None), **_DASHBOARD_REFUSED},
    ),
    Route(
        "post",
        f"{DASHBOARD}/jobs/{{name}}/run",
        "Run a job now (recorded like a scheduled run); admin",
        "dashboard",
        session=True,
        parameters=[_path_param("name", "The job's name under jobs: in the configuration."), _CSRF],
        responses={
            200: ("Started; follow it on GET /api/v1/dashboard/jobs.", "JobStarted"),
            404: ("No such job.", "ErrorReply"),
            **_ADMIN_REFUSED,
        },
    ),
    Route(
        "get",
        f"{DASHBOARD}/settings",
        "The effective configuration, secrets redacted (as crmsync config show)",
        "dashboard",
        session=True,
        responses={200: ("{path, config}", None), **_DASHBOARD_REFUSED},
    ),
]


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": route.summary,
        "operationId": f"{route.method}_{route.path}".replace("/", "_").replace("{", "").replace("}", ""),
        "tags": [route.tag],
        "responses": {},
    }
    if route.description:
        op["description"] = route.description
    if route.parameters:
        op["parameters"] = route.parameters
    if route.authenticated:
        op["security"] = [{"bearer": []}]
    if route.session:
        op["security"] = [{"session": []}, {"bearer": []}] if route.method == "get" else [{"session": []}]
    if route.request:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=route.request)}}},
        }
    for status, (what, model) in route.responses.items():
        if model is None:
            schema: dict[str, Any] = (
                {"type": "string"} if route.content_type == "text/plain" else {"type": "object"}
            )
            content = {route.content_type: {"schema": schema}}
        else:
            content = {"application/json": {"schema": {"$ref": _REF.format(model=model)}}}
        op["responses"][str(status)] = {"description": what, "content": content}
    return op


def document(runtime: Runtime, views: dict[str, type[BaseModel]]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of this deployment (``views``: each view's parameter model)."""
    _, schemas = models_json_schema([(m, "validation") for m in MODELS], ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in [*api_routes(runtime, views), *OTHER_ROUTES, *DASHBOARD_ROUTES]:
        paths.setdefault(route.path, {})[route.method] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "crmsync",
            "version": __version__,
            "description": "Hand records to crmsync, read views live, receive webhooks. See docs/api.md.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from `crmsync token create NAME`.",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "crmsync_session",
                    "description": "The dashboard's session, from logging in at /login.",
                },
            },
        },
    }


class OpenApi:
    """The endpoint: the document is built once, on the first request, in a worker thread."""

    def __init__(self, runtime: Runtime, views: dict[str, type[BaseModel]]) -> None:
        self.rt = runtime
        self.views = views
        self._document: dict[str, Any] | None = None

    async def __call__(self, request: Request, token: str) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(self.handle, token)

    def handle(self, token: str) -> dict[str, Any]:
        authenticate(self.rt.store, token)
        if self._document is None:
            self._document = document(self.rt, self.views)
        return self._document
