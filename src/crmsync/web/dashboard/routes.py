"""The dashboard's pages (HTML, under a mount) and its JSON endpoints (``/api/v1/dashboard/``).

=================================================  =====================================  ======
``GET  /``, ``/charts``, ``/dead-letters[/{id}]``   pages (``/ui/*``: htmx fragments)      viewer
``GET  /trace``, ``/jobs``, ``/settings[/...]``
``POST /dead-letters/replay|discard``               forms (CSRF field)                     admin
``POST /jobs/{name}/run``, ``/settings/...``
``GET  /api/v1/dashboard/...``                      JSON (session, or a bearer token)       viewer
``POST /api/v1/dashboard/...``                      JSON (session + ``X-CSRF-Token``)       admin
=================================================  =====================================  ======

A page without a session redirects to ``/login``; JSON without one is 401. A form or JSON call
without the session's CSRF token is 403, and so is a viewer's replay, discard, job run or edit.
Dead letters and traces go through :mod:`crmsync.engine.operations`, the code behind
``crmsync dead-letters`` and ``crmsync log``; settings are validated as ``crmsync check`` does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any
from urllib.parse import quote, urlencode

import anyio
import yaml
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from crmsync.config.edit import ConfigEditor, FieldRow, secret_fields
from crmsync.engine import operations
from crmsync.engine.runtime import Runtime
from crmsync.errors import ConfigError
from crmsync.scheduler import runs
from crmsync.scheduler.scheduler import run_job, specs_from_config
from crmsync.store import tokens, users
from crmsync.web.dashboard import data
from crmsync.web.dashboard.security import CSRF_FIELD, CSRF_HEADER, LoginLimiter, Session, Sessions
from crmsync.web.errors import ApiError

log = logging.getLogger(__name__)

API = "/api/v1/dashboard"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
LOGIN_COOKIE = "crmsync_login"


class LetterIds(BaseModel):
    """Dead letters to replay."""

    ids: list[int] = Field(min_length=1, max_length=1000, description="The dead letters' ids.")


class DiscardLetters(LetterIds):
    """Dead letters to discard, and why."""

    reason: str = Field(min_length=1, max_length=2000, description="Why they are discarded (kept with them).")


class Done(BaseModel):
    """What an action did."""

    done: int = Field(
        description="How many it acted on (letters already replayed or discarded are left alone)."
    )
    of: int = Field(description="How many were asked for.")


class JobStarted(BaseModel):
    """A job run started by hand; follow it on GET /api/v1/dashboard/jobs."""

    job: str
    started: bool


class Dashboard:
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
        self.templates.filters["when"] = _when
        self._edit_lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------------

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
                if not Sessions.csrf_ok(session, _text(form, CSRF_FIELD)):
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
            except ApiError as exc:
                return exc.response()
            except SQLAlchemyError as exc:
                log.warning("store unavailable: %s", exc)
                return ApiError(503, "store_unavailable", "the store cannot be reached; try again").response()
            except Exception:
                log.exception("unexpected error on %s %s", request.method, request.url.path)
                return ApiError(500, "internal_error", "unexpected error; see the server log").response()

        return endpoint

    def _bearer(self, request: Request) -> Session | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        name = tokens.verify_token(self.rt.store, token.strip())
        return None if name is None else Session(f"token:{name}", "viewer", "")

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(lambda: fn(*args))

    # -- login ----------------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        nonce = request.cookies.get(LOGIN_COOKIE) or _nonce()
        response = self.render(
            request, "login.html", None, next=_safe_next(request.query_params.get("next")), login_csrf=nonce
        )
        response.set_cookie(
            LOGIN_COOKIE, nonce, max_age=3600, httponly=True, samesite="strict", path="/login"
        )
        return response

    async def login(self, request: Request) -> Response:
        form = await request.form()
        nonce = request.cookies.get(LOGIN_COOKIE)
        target = _safe_next(_text(form, "next"))
        if not nonce or _text(form, CSRF_FIELD) != nonce:
            return self.render(
                request,
                "login.html",
                None,
                status=403,
                next=target,
                login_csrf=nonce or _nonce(),
                error="the form expired: try again",
            )
        client = request.client.host if request.client else "?"
        if not self.limiter.allow(client):
            return self.render(
                request,
                "login.html",
                None,
                status=429,
                next=target,
                login_csrf=nonce,
                error="too many attempts: wait a minute",
            )
        name, password = _text(form, "username") or "", _text(form, "password") or ""
        result = await self.run(users.log_in, self.rt.store, name, password)
        if result.user is None:
            error = "wrong user name or password"
            if result.locked_until is not None:
                error = f"too many wrong passwords: this user is locked until {_when(result.locked_until)}"
            return self.render(
                request, "login.html", None, status=401, next=target, login_csrf=nonce, error=error
            )
        response = RedirectResponse(target, status_code=303)
        self.sessions.issue(response, result.user, secure=request.url.scheme == "https")
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    async def logout(self, request: Request, session: Session) -> Response:
        await self.run(users.end_sessions, self.rt.store, session.user)
        response = RedirectResponse("/login", status_code=303)
        Sessions.clear(response)
        return response

    # -- overview, charts -------------------------------------------------------------------------

    async def overview_page(self, request: Request, session: Session) -> Response:
        return self.render(request, "overview.html", session, overview=await self.run(data.overview, self.rt))

    async def overview_fragment(self, request: Request, session: Session) -> Response:
        return self.render(
            request, "_overview.html", session, overview=await self.run(data.overview, self.rt)
        )

    async def charts_page(self, request: Request, session: Session) -> Response:
        return self.render(request, "charts.html", session, hours=_int(request.query_params.get("hours"), 1))

    async def overview_json(self, request: Request, session: Session) -> Any:
        return await self.run(data.overview, self.rt)

    async def charts_json(self, request: Request, session: Session) -> Any:
        return await self.run(data.charts, self.rt, _int(request.query_params.get("hours"), 1))

    # -- dead letters ---------------------------------------------------------------------------

    def _letters(self, request: Request) -> list[dict[str, Any]]:
        q = request.query_params
        state = q.get("state") or None
        found = operations.list_letters(
            self.rt.queue,
            flow=q.get("flow") or None,
            state=state if state in ("open", "replayed", "discarded") else None,  # type: ignore[arg-type]
            search=q.get("q") or None,
            limit=min(_int(q.get("limit"), 100), 1000),
        )
        return [operations.letter_as_dict(x) for x in found]

    async def letters_page(self, request: Request, session: Session) -> Response:
        letters = await self.run(self._letters, request)
        return self.render(
            request,
            "dead_letters.html",
            session,
            letters=letters,
            flows=list(self.rt.config.flows),
            query=dict(request.query_params),
            notice=request.query_params.get("notice"),
        )

    async def letter_page(self, request: Request, session: Session) -> Response:
        letter = await self.run(self.rt.queue.dead_letter, _int(request.path_params["id"], 0))
        if letter is None:
            return self.refusal(request, session, 404, "no such dead letter")
        return self.render(request, "dead_letter.html", session, letter=operations.letter_as_dict(letter))

    async def replay_form(self, request: Request, session: Session) -> Response:
        ids = _ids(await request.form())
        done = await self.run(operations.replay_letters, self.rt.queue, ids)
        log.info("%s replayed %d of dead letters %s", session.user, done, ids)
        return _back("/dead-letters", f"replayed {done} of {len(ids)}")

    async def discard_form(self, request: Request, session: Session) -> Response:
        form = await request.form()
        ids, reason = _ids(form), (_text(form, "reason") or "").strip()
        if not reason:
            return _back("/dead-letters", "say why they are discarded")
        done = await self.run(operations.discard_letters, self.rt.queue, ids, reason)
        log.info("%s discarded %d of dead letters %s: %s", session.user, done, ids, reason)
        return _back("/dead-letters", f"discarded {done} of {len(ids)}")

    async def letters_json(self, request: Request, session: Session) -> Any:
        return {"letters": await self.run(self._letters, request)}

    async def letter_json(self, request: Request, session: Session) -> Any:
        letter = await self.run(self.rt.queue.dead_letter, _int(request.path_params["id"], 0))
        if letter is None:
            raise ApiError(404, "not_found", "no such dead letter")
        return operations.letter_as_dict(letter)

    async def replay_json(self, request: Request, session: Session) -> Any:
        body = _body(LetterIds, await request.body())
        done = await self.run(operations.replay_letters, self.rt.queue, body.ids)
        return Done(done=done, of=len(body.ids)).model_dump()

    async def discard_json(self, request: Request, session: Session) -> Any:
        body = _body(DiscardLetters, await request.body())
        done = await self.run(operations.discard_letters, self.rt.queue, body.ids, body.reason)
        return Done(done=done, of=len(body.ids)).model_dump()

    # -- trace ----------------------------------------------------------------------------------

    def _trace(self, request: Request) -> dict[str, Any]:
        record = (request.query_params.get("record") or "").strip() or None
        flow = request.query_params.get("flow") or None
        found, entries = operations.trace(self.rt.store, flow=flow, record=record, limit=100)
        return operations.trace_as_json(record, found, entries)

    async def trace_page(self, request: Request, session: Session) -> Response:
        return self.render(request, "trace.html", session, trace=await self.run(self._trace, request))

    async def trace_json(self, request: Request, session: Session) -> Any:
        return await self.run(self._trace, request)

    # -- jobs -----------------------------------------------------------------------------------

    def _jobs(self) -> dict[str, Any]:
        return {
            "jobs": data.jobs(self.rt),
            "recent": [data.run_as_dict(r) for r in runs.recent(self.rt.store, limit=20)],
        }

    async def jobs_page(self, request: Request, session: Session) -> Response:
        return self.render(
            request,
            "jobs.html",
            session,
            jobs=await self.run(self._jobs),
            notice=request.query_params.get("notice"),
        )

    async def jobs_fragment(self, request: Request, session: Session) -> Response:
        return self.render(request, "_jobs.html", session, jobs=await self.run(self._jobs))

    def start_job(self, name: str) -> bool:
        specs = specs_from_config(self.rt.config)
        if name not in specs:
            return False
        thread = threading.Thread(
            target=run_job,
            args=(self.rt.store, name, specs[name]),
            kwargs={"config": self.rt.config, "runtime": self.rt},
            name=f"job-{name}",
            daemon=True,
        )
        thread.start()
        return True

    async def run_job_form(self, request: Request, session: Session) -> Response:
        name = request.path_params["name"]
        started = self.start_job(name)
        log.info("%s started job %s", session.user, name)
        return _back("/jobs", f"{name} started" if started else f"no job {name}")

    async def jobs_json(self, request: Request, session: Session) -> Any:
        return await self.run(self._jobs)

    async def run_job_json(self, request: Request, session: Session) -> Any:
        name = request.path_params["name"]
        if not self.start_job(name):
            raise ApiError(
                404, "not_found", f"no job {name!r}; valid: {', '.join(specs_from_config(self.rt.config))}"
            )
        return JobStarted(job=name, started=True).model_dump()

    # -- settings -------------------------------------------------------------------------------

    async def settings_page(self, request: Request, session: Session) -> Response:
        cfg = self.rt.config
        return self.render(
            request,
            "settings.html",
            session,
            effective=yaml.safe_dump(cfg.redacted(), sort_keys=False, allow_unicode=True),
            flows=list(cfg.flows),
            connections={n: c.type for n, c in cfg.connections.items()},
            config_path=str(cfg.path) if cfg.path else None,
            notice=request.query_params.get("notice"),
        )

    async def settings_json(self, request: Request, session: Session) -> Any:
        cfg = self.rt.config
        return {"path": str(cfg.path) if cfg.path else None, "config": cfg.redacted()}

    def _editor(self) -> ConfigEditor:
        return ConfigEditor(self.rt.config)

    async def flow_page(self, request: Request, session: Session) -> Response:
        flow = request.path_params["flow"]
        if flow not in self.rt.config.flows:
            return self.refusal(request, session, 404, f"no flow {flow}")
        rows = await self.run(lambda: self._editor().fields_of(flow))
        return self.render(request, "settings_flow.html", session, flow=flow, rows=[asdict(r) for r in rows])

    async def flow_save(self, request: Request, session: Session) -> Response:
        flow = request.path_params["flow"]
        form = await request.form()
        rows = _field_rows(form)
        try:
            await self.run(self._save_fields, flow, rows)
        except ConfigError as exc:
            return self.render(
                request,
                "settings_flow.html",
                session,
                status=422,
                flow=flow,
                rows=[asdict(r) for r in rows],
                problems=exc.problems or [exc.message],
            )
        log.info("%s changed the field map of flow %s", session.user, flow)
        return _back("/settings", f"flow {flow} saved; crmsync uses it from the next change")

    def _save_fields(self, flow: str, rows: list[FieldRow]) -> None:
        with self._edit_lock:
            editor = self._editor()
            self.rt.reload(editor.save(editor.with_fields(flow, rows)))

    async def connection_page(self, request: Request, session: Session) -> Response:
        name = request.path_params["connection"]
        conn = self.rt.config.connections.get(name)
        if conn is None:
            return self.refusal(request, session, 404, f"no connection {name}")
        return self.render(
            request,
            "settings_connection.html",
            session,
            connection=name,
            type=conn.type,
            fields=secret_fields(conn.type),
        )

    async def connection_save(self, request: Request, session: Session) -> Response:
        name = request.path_params["connection"]
        conn = self.rt.config.connections.get(name)
        if conn is None:
            return self.refusal(request, session, 404, f"no connection {name}")
        form = await request.form()
        values = {f: _text(form, f"secret_{f}") or "" for f in secret_fields(conn.type)}
        try:
            await self.run(self._save_credentials, name, values)
        except ConfigError as exc:
            return self.render(
                request,
                "settings_connection.html",
                session,
                status=422,
                connection=name,
                type=conn.type,
                fields=secret_fields(conn.type),
                problems=exc.problems or [exc.message],
            )
        log.info("%s changed the credentials of connection %s", session.user, name)
        return _back("/settings", f"credentials of {name} saved to the secret store")

    def _save_credentials(self, name: str, values: dict[str, str]) -> None:
        with self._edit_lock:
            editor = self._editor()
            text, secrets = editor.with_credentials(name, values)
            self.rt.reload(editor.save(text, secrets))

    # -- routes ---------------------------------------------------------------------------------

    def api_routes(self) -> list[Route]:
        """The JSON endpoints (each is described in the OpenAPI document)."""
        a = self.api
        return [
            Route(f"{API}/overview", a(self.overview_json), methods=["GET"]),
            Route(f"{API}/charts", a(self.charts_json), methods=["GET"]),
            Route(f"{API}/dead-letters", a(self.letters_json), methods=["GET"]),
            Route(f"{API}/dead-letters/replay", a(self.replay_json, admin=True), methods=["POST"]),
            Route(f"{API}/dead-letters/discard", a(self.discard_json, admin=True), methods=["POST"]),
            Route(f"{API}/dead-letters/{{id}}", a(self.letter_json), methods=["GET"]),
            Route(f"{API}/trace", a(self.trace_json), methods=["GET"]),
            Route(f"{API}/jobs", a(self.jobs_json), methods=["GET"]),
            Route(f"{API}/jobs/{{name}}/run", a(self.run_job_json, admin=True), methods=["POST"]),
            Route(f"{API}/settings", a(self.settings_json), methods=["GET"]),
        ]

    def page_routes(self) -> Mount:
        """The pages, their htmx fragments and the static files, under one mount."""
        p = self.page
        return Mount(
            "",
            routes=[
                Route("/login", self.login_page, methods=["GET"]),
                Route("/login", self.login, methods=["POST"]),
                Route("/logout", p(self.logout), methods=["POST"]),
                Route("/", p(self.overview_page), methods=["GET"]),
                Route("/ui/overview", p(self.overview_fragment), methods=["GET"]),
                Route("/charts", p(self.charts_page), methods=["GET"]),
                Route("/dead-letters", p(self.letters_page), methods=["GET"]),
                Route("/dead-letters/replay", p(self.replay_form, admin=True), methods=["POST"]),
                Route("/dead-letters/discard", p(self.discard_form, admin=True), methods=["POST"]),
                Route("/dead-letters/{id:int}", p(self.letter_page), methods=["GET"]),
                Route("/trace", p(self.trace_page), methods=["GET"]),
                Route("/jobs", p(self.jobs_page), methods=["GET"]),
                Route("/ui/jobs", p(self.jobs_fragment), methods=["GET"]),
                Route("/jobs/{name}/run", p(self.run_job_form, admin=True), methods=["POST"]),
                Route("/settings", p(self.settings_page), methods=["GET"]),
                Route("/settings/flows/{flow}", p(self.flow_page), methods=["GET"]),
                Route("/settings/flows/{flow}", p(self.flow_save, admin=True), methods=["POST"]),
                Route("/settings/connections/{connection}", p(self.connection_page), methods=["GET"]),
                Route(
                    "/settings/connections/{connection}",
                    p(self.connection_save, admin=True),
                    methods=["POST"],
                ),
                Mount(
                    "/static", app=StaticFiles(packages=[("crmsync.web.dashboard", "static")]), name="static"
                ),
            ],
        )


def routes(runtime: Runtime) -> tuple[list[Route], list[BaseRoute]]:
    """The dashboard's JSON routes (top level, described by OpenAPI) and its pages (one mount)."""
    dashboard = Dashboard(runtime)
    return dashboard.api_routes(), [dashboard.page_routes()]


# ---------------------------------------------------------------- helpers


def _nonce() -> str:
    import secrets

    return secrets.token_urlsafe(24)


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def _int(raw: str | int | None, default: int) -> int:
    if isinstance(raw, int):
        return raw
    try:
        return int(raw) if raw is not None and len(raw) < 12 else default
    except ValueError:
        return default


def _ids(form: FormData) -> list[int]:
    return [int(v) for v in form.getlist("ids") if isinstance(v, str) and v.isdigit()][:1000]


def _field_rows(form: FormData) -> list[FieldRow]:
    rows = []
    for i in range(200):
        source, target = _text(form, f"source_{i}"), _text(form, f"target_{i}")
        if source is None and target is None:
            if i > 0 and _text(form, f"source_{i + 1}") is None:
                break
            continue
        if not (source or "").strip() and not (target or "").strip():
            continue  # an empty row (the one for adding a field, left blank)
        rows.append(
            FieldRow(
                source=(source or "").strip(),
                target=(target or "").strip(),
                transform=(_text(form, f"transform_{i}") or "").strip() or None,
                owner=(_text(form, f"owner_{i}") or "").strip() or None,
                direction=(_text(form, f"direction_{i}") or "").strip() or None,
            )
        )
    return rows


def _body(model: type[BaseModel], raw: bytes) -> Any:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        details = [
            {"loc": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ApiError(422, "invalid_value", "the body is not valid", details) from exc


def _back(path: str, notice: str) -> Response:
    return RedirectResponse(f"{path}?{urlencode({'notice': notice})}", status_code=303)


def _safe_next(target: str | None) -> str:
    """Only a path of this site (never another host) after logging in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


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


def _when(value: Any) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else value.isoformat()
    return text[:19].replace("T", " ") + " UTC"
