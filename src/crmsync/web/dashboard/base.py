"""What every dashboard handler stands on: the runtime, the sessions, the templates, and the
wrappers that make a handler an endpoint.

A handler is ``async (request, session) -> response`` and is written once for what it does;
:meth:`DashboardBase.page` and :meth:`DashboardBase.api` wrap it with what every page or JSON
endpoint must do the same way — find the session (or a bearer token, for a JSON GET), check the
CSRF token and the admin role, and turn a store that cannot be reached or an unexpected error
into a reply (a page, or a JSON error) instead of a stack trace. The topics' handlers
(:mod:`.login`, :mod:`.monitoring`, :mod:`.jobs`, :mod:`.settings`) build on this class, and
:mod:`.routes` joins them into one dashboard.

The small readers of a request shared by those modules live here too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

import anyio
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from crmsync.engine.runtime import Runtime
from crmsync.store import tokens
from crmsync.web.dashboard.security import CSRF_FIELD, CSRF_HEADER, LoginLimiter, Session, Sessions
from crmsync.web.errors import ApiError, error_response

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class DashboardBase:
    """The runtime, sessions and templates every handler uses, and the endpoint wrappers."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.sessions = Sessions(runtime.store)
        self.limiter = LoginLimiter()
        self.templates = Environment(
            loader=PackageLoader("crmsync.web.dashboard", "templates"),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["seconds"] = _seconds
        self.templates.filters["when"] = when

    def render(
        self, request: Request, name: str, session: Session | None, status: int = 200, **ctx: Any
    ) -> Response:
        html = self.templates.get_template(name).render(
            request=request, session=session, csrf_field=CSRF_FIELD, path=request.url.path, **ctx
        )
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    async def session_of(self, request: Request) -> Session | None:
        return await anyio.to_thread.run_sync(self.sessions.read, request)

    def page(
        self, handler: Callable[[Request, Session], Awaitable[Response]], *, admin: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """A page: a session first (else to the login page); a POST needs the CSRF field."""

        async def endpoint(request: Request) -> Response:
            session = await self.session_of(request)
            if session is None:
                if request.method != "GET":
                    return self.refusal(request, None, 401, "log in first")
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
            if request.method == "POST":
                form = await request.form()
                if not Sessions.csrf_ok(session, form_text(form, CSRF_FIELD)):
                    return self.refusal(
                        request, session, 403, "the form's CSRF token is missing or wrong: reload the page"
                    )
            if admin and not session.admin:
                return self.refusal(request, session, 403, "this needs the admin role")
            try:
                return await handler(request, session)
            except SQLAlchemyError as exc:
                log.warning("store unavailable: %s", exc)
                return self.refusal(request, session, 503, "the store cannot be reached; try again")
            except Exception:
                log.exception("unexpected error on %s %s", request.method, request.url.path)
                return self.refusal(request, session, 500, "unexpected error; see the server log")

        return endpoint

    def refusal(self, request: Request, session: Session | None, status: int, message: str) -> Response:
        return self.render(
            request, "refused.html", session, status=status, status_code=status, message=message
        )

    def api(
        self, handler: Callable[[Request, Session], Awaitable[Any]], *, admin: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """JSON: a session (a GET also takes a bearer token); a POST needs the X-CSRF-Token header."""

        async def endpoint(request: Request) -> Response:
            try:
                session = await self.session_of(request)
                if session is None and request.method == "GET" and request.headers.get("authorization"):
                    session = await anyio.to_thread.run_sync(self._bearer, request)
                if session is None:
                    raise ApiError(
                        401, "unauthorized", "log in to the dashboard (or send a bearer token to GET)"
                    )
                if request.method != "GET" and not Sessions.csrf_ok(
                    session, request.headers.get(CSRF_HEADER)
                ):
                    raise ApiError(403, "csrf", f"missing or wrong {CSRF_HEADER} header")
                if admin and not session.admin:
                    raise ApiError(403, "forbidden", "this needs the admin role")
                body = await handler(request, session)
                return JSONResponse(body, headers={"Cache-Control": "no-store"})
            except Exception as exc:
                return error_response(request, exc)

        return endpoint

    def _bearer(self, request: Request) -> Session | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        name = tokens.verify_token(self.rt.store, token.strip())
        return None if name is None else Session(f"token:{name}", "viewer", "")

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(lambda: fn(*args))


# ---------------------------------------------------------------- helpers


def form_text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def number(raw: str | int | None, default: int) -> int:
    if isinstance(raw, int):
        return raw
    try:
        return int(raw) if raw is not None and len(raw) < 12 else default
    except ValueError:
        return default


def back(path: str, notice: str) -> Response:
    return RedirectResponse(f"{path}?{urlencode({'notice': notice})}", status_code=303)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def when(value: Any) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else value.isoformat()
    return text[:19].replace("T", " ") + " UTC"
