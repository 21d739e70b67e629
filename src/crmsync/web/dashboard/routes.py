"""The dashboard's routes: its pages (HTML, under a mount) and its JSON endpoints
(``/api/v1/dashboard/``), every URL in one place.

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

The handlers live by topic — :mod:`.login`, :mod:`.monitoring` (overview, charts, dead letters,
trace), :mod:`.jobs`, :mod:`.settings` — on the common ground of :mod:`.base` (sessions, CSRF
and role checks, error replies); :class:`Dashboard` joins them and lists their routes.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from crmsync.engine.runtime import Runtime
from crmsync.web.dashboard.jobs import JobPages
from crmsync.web.dashboard.login import LoginPages
from crmsync.web.dashboard.monitoring import MonitoringPages
from crmsync.web.dashboard.settings import SettingsPages

API = "/api/v1/dashboard"


class Dashboard(LoginPages, MonitoringPages, JobPages, SettingsPages):
    """Every handler of the dashboard, on one runtime, sessions and templates; and its routes."""

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
