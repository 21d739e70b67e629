"""The ASGI app: routes, authentication, error replies.

===========================================  =========================================
``POST /api/v1/flows/{flow}/records``       ingest (bearer token) — :mod:`.ingest`
``GET  /api/v1/views/{name}``               read-through views (bearer token) — :mod:`.views`
``GET  /api/v1/openapi.json``               this table as OpenAPI 3.1 (bearer token) — :mod:`.openapi`
``POST /webhooks/{connection}``             a webhook source's events, signed — :mod:`.webhooks`
``POST /webhooks/{connection}/{s}``         the same, a secret in the URL — :mod:`.webhooks`
``POST /webhooks/monday/{connection}[/{s}]`` the same (where monday's webhooks are registered)
``GET  /healthz``                           the process is up
``GET  /readyz``                            ready to work (503 and why otherwise)
``GET  /metrics``                           Prometheus metrics (503 if the store fails)
``GET  /``, ``/login``, ...                 the dashboard's pages (a session) — :mod:`.dashboard`
``/api/v1/dashboard/...``                   the dashboard's JSON (a session) — :mod:`.dashboard`
===========================================  =========================================
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crmsync.engine.metrics import CONTENT_TYPE
from crmsync.engine.readiness import readiness
from crmsync.engine.runtime import Runtime
from crmsync.web.auth import bearer_token
from crmsync.web.dashboard.routes import routes as dashboard_routes
from crmsync.web.errors import ApiError, error_response
from crmsync.web.ingest import Ingestor
from crmsync.web.openapi import OpenApi
from crmsync.web.views import Views
from crmsync.web.webhooks import Webhooks

log = logging.getLogger(__name__)

#: ``handler(request, token)``: authenticates the token (see :func:`crmsync.web.auth.authenticate`)
#: in the same worker thread as the rest of its blocking work, before anything else
Handler = Callable[[Request, str], Awaitable[dict[str, Any]]]


def _api(handler: Handler, status: int) -> Callable[[Request], Awaitable[Response]]:
    """Run ``handler`` with the request's bearer token; every refusal becomes a JSON error reply."""

    async def endpoint(request: Request) -> Response:
        try:
            return JSONResponse(await handler(request, bearer_token(request)), status_code=status)
        except Exception as exc:
            return error_response(request, exc)

    return endpoint


def create_app(runtime: Runtime) -> Starlette:
    ingestor = Ingestor(runtime)
    views = Views(runtime)
    openapi = OpenApi(runtime, views.models)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        ingestor.close()

    receive = Webhooks(runtime)
    dashboard_api, dashboard_pages = dashboard_routes(runtime)

    async def webhook(request: Request) -> Response:
        try:
            return await receive(request)
        except (ApiError, SQLAlchemyError) as exc:  # the store away: not acknowledged, the vendor retries
            return error_response(request, exc)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        found = await anyio.to_thread.run_sync(readiness, runtime.store)
        if not found.ready:
            log.warning("not ready: %s", "; ".join(found.reasons))
        return JSONResponse(found.as_json(), status_code=200 if found.ready else 503)

    async def metrics(request: Request) -> Response:
        body, store_ok = await anyio.to_thread.run_sync(runtime.metrics.scrape)
        return Response(body, status_code=200 if store_ok else 503, media_type=CONTENT_TYPE)

    async def not_found(request: Request, exc: Exception) -> Response:
        return ApiError(404, "not_found", f"no route {request.url.path}").response()

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return ApiError(
            405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}"
        ).response()

    return Starlette(
        routes=[
            Route("/api/v1/flows/{flow}/records", _api(ingestor, 202), methods=["POST"]),
            Route("/api/v1/views/{name}", _api(views, 200), methods=["GET"]),
            Route("/api/v1/openapi.json", _api(openapi, 200), methods=["GET"]),
            Route("/webhooks/monday/{connection}", webhook, methods=["POST"]),
            Route("/webhooks/monday/{connection}/{secret}", webhook, methods=["POST"]),
            Route("/webhooks/{connection}", webhook, methods=["POST", "HEAD"]),
            Route("/webhooks/{connection}/{secret}", webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            *dashboard_api,
            *dashboard_pages,  # last: a mount of the pages, the static files and the login
        ],
        exception_handlers={404: not_found, 405: not_allowed},
        lifespan=lifespan,
    )
