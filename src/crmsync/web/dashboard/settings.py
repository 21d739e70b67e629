"""The settings: the effective configuration (secrets hidden), and the two edits the dashboard
makes — a flow's field map and a connection's credentials.

Both edits go through :class:`~crmsync.config.edit.ConfigEditor`: the change is made on
``crmsync.yaml`` itself (its comments and layout kept) or on the secret store, validated as
``crmsync check`` validates, and the runtime reloads the saved configuration. A refused edit
writes nothing and shows its problems on the form. Edits of this process are made one at a
time (a lock), so two saves never build on the same old file. Editing needs the admin role.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from typing import Any

import yaml
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from crmsync.config.edit import ConfigEditor, FieldRow, secret_fields
from crmsync.engine.runtime import Runtime
from crmsync.errors import ConfigError
from crmsync.web.dashboard.base import DashboardBase, back, form_text
from crmsync.web.dashboard.security import Session

log = logging.getLogger(__name__)


class SettingsPages(DashboardBase):
    """The Settings pages and their JSON; saving a field map or credentials."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self._edit_lock = threading.Lock()

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
        return back("/settings", f"flow {flow} saved; crmsync uses it from the next change")

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
        values = {f: form_text(form, f"secret_{f}") or "" for f in secret_fields(conn.type)}
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
        return back("/settings", f"credentials of {name} saved to the secret store")

    def _save_credentials(self, name: str, values: dict[str, str]) -> None:
        with self._edit_lock:
            editor = self._editor()
            text, secrets = editor.with_credentials(name, values)
            self.rt.reload(editor.save(text, secrets))


def _field_rows(form: FormData) -> list[FieldRow]:
    rows = []
    for i in range(200):
        source, target = form_text(form, f"source_{i}"), form_text(form, f"target_{i}")
        if source is None and target is None:
            if i > 0 and form_text(form, f"source_{i + 1}") is None:
                break
            continue
        if not (source or "").strip() and not (target or "").strip():
            continue  # an empty row (the one for adding a field, left blank)
        rows.append(
            FieldRow(
                source=(source or "").strip(),
                target=(target or "").strip(),
                transform=(form_text(form, f"transform_{i}") or "").strip() or None,
                owner=(form_text(form, f"owner_{i}") or "").strip() or None,
                direction=(form_text(form, f"direction_{i}") or "").strip() or None,
            )
        )
    return rows
