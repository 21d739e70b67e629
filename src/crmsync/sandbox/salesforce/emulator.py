"""The Salesforce emulator: an org that simple-salesforce (and crmsync's connector) cannot tell apart.

Routes: ``POST /services/oauth2/token``; ``GET /services/data/`` (versions, no auth, not counted);
everything under ``/services/data/vXX.X/`` through one dispatcher (:mod:`.api`): sObjects
(:mod:`.rest`), SOQL (:mod:`.query`), Collections and Composite (:mod:`.composite`), Bulk 2.0
(:mod:`.bulk`), the Reports API (:mod:`.reports`); and the report export servlet
``GET /00O…?export=1&xf=csv`` (:mod:`.report`).

Every call under ``/services/data/vXX.X/`` needs a live session (else 401 ``INVALID_SESSION_ID``
as a list, with ``WWW-Authenticate: Token``), counts against the daily API limit (spent: 403
``REQUEST_LIMIT_EXCEEDED``) and answers ``Sforce-Limit-Info: api-usage=N/M``.

Control routes besides the shared ones of :mod:`crmsync.sandbox.base`:
``POST /_sandbox/salesforce/expire-sessions`` (every token answers 401 from now on),
``POST /_sandbox/salesforce/daily-limit`` with ``{"limit": N}``, and
``POST /_sandbox/salesforce/late-commits`` with ``{"seconds": S, "object": "Opportunity",
"every": N, "count": N}`` (writes visible to queries S seconds late, :mod:`.late`; ``DELETE``
clears the rules).

Fault kinds for :class:`~crmsync.sandbox.faults.FaultRule` ``error``:

==================  ======  ==========================================================
``server_error``    500     ``[{"message": …, "errorCode": "UNKNOWN_EXCEPTION"}]``
``unavailable``     503     ``SERVER_UNAVAILABLE``
``limit_exceeded``  403     ``REQUEST_LIMIT_EXCEEDED`` (TotalRequests Limit exceeded.)
``rate_limit``      403     ``REQUEST_LIMIT_EXCEEDED`` (ConcurrentRequests … Limit exceeded.)
``session_expired`` 401     ``INVALID_SESSION_ID`` list body, ``WWW-Authenticate: Token``
``lock``            400     ``UNABLE_TO_LOCK_ROW``
==================  ======  ==========================================================

``status=N`` answers N with a Salesforce-shaped body (``[{"message", "errorCode"}]``; on the
token endpoint ``{"error", "error_description"}``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from crmsync.sandbox.base import Emulator
from crmsync.sandbox.faults import FaultRule
from crmsync.sandbox.salesforce import bulk, composite, query, reports, rest, seeds
from crmsync.sandbox.salesforce.api import ApiError, Call, Reply, Router, parse_call_options
from crmsync.sandbox.salesforce.auth import AppConfig, OAuthError, Sessions
from crmsync.sandbox.salesforce.ids import make_id, normalize
from crmsync.sandbox.salesforce.late import LateRule
from crmsync.sandbox.salesforce.org import ApiUsage, Org, ReportDef
from crmsync.sandbox.salesforce.report import export_csv
from crmsync.sandbox.salesforce.schema import ObjectDef, Schema, custom_object, standard_objects
from crmsync.sandbox.salesforce.store import DmlError, Store
from crmsync.sandbox.salesforce.wire import SERIES, SESSION_EXPIRED, fault_reply, json_response, read_form
from crmsync.sandbox.tls import Materials

ORG_ID = make_id("00D", 1)
ADMIN_USER_ID = make_id("005", 1)
ALL_METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"]
_VERSION_RE = re.compile(r"^\d+\.\d$")


class SalesforceEmulator(Emulator):
    """An emulated Salesforce org; see the module docstring for what it serves."""

    name = "salesforce"
    seeds: ClassVar[tuple[str, ...]] = seeds.SEEDS

    def __init__(
        self,
        *,
        materials: Materials | None = None,
        state_file: Path | None = None,
        api_version: str = "66.0",
        session_seconds: float = 7200,
        daily_api_limit: int = 15000,
        page_size: int = 2000,
        custom_objects: Mapping[str, Mapping[str, Any]] | None = None,
        client_id: str = "3MVG9crmsync.sandbox.consumer.key",
        client_secret: str = "crmsync-sandbox-consumer-secret",  # noqa: S107 - a sandbox's published secret
        username: str = "admin@crmsync.sandbox",
        password: str = "sandbox-password",  # noqa: S107 - a sandbox's published password
    ) -> None:
        super().__init__(state_file=state_file)
        if not _VERSION_RE.match(api_version):
            raise ValueError(f"api_version looks like 66.0, not {api_version!r}")
        if not 1 <= page_size <= 2000:
            raise ValueError("page_size must be between 1 and 2000")
        self.materials = materials
        self.clock_offset = 0.0
        self.app_config = AppConfig(client_id, client_secret, username, password, ORG_ID, ADMIN_USER_ID)
        schema = Schema(standard_objects())
        store = Store(schema, self._now, ADMIN_USER_ID)
        public_key = materials.jwt_public_key_pem if materials is not None else None
        self.org = Org(
            schema=schema,
            store=store,
            sessions=Sessions(self.app_config, self._now, session_seconds, public_key),
            usage=ApiUsage(daily_api_limit, self._now),
            app=self.app_config,
            clock=self._now,
            api_version=api_version,
            page_size=page_size,
        )
        #: custom objects: name -> (key prefix, spec); ``_fixed`` ones survive resets
        self._fixed_custom = dict(custom_objects or {})
        self._custom: dict[str, tuple[str, Mapping[str, Any]]] = {}
        self.locators = query.Locators(self.org)
        self.bulk = bulk.Bulk(self.org)
        self.router = Router()
        rest.register(self.router, self.org)
        query.register(self.router, self.org, self.locators)
        composite.register(self.router, self.org, self.router.dispatch)
        bulk.register(self.router, self.bulk)
        self.reports = reports.Reports(self.org)
        reports.register(self.router, self.org, self.reports)
        store.on_write = lambda obj, rid, old: self.org.late.on_write(obj, rid, old, self._now().timestamp())
        self.reset_state()

    # -- time ------------------------------------------------------------------------------------
    def _now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.clock_offset)

    def advance_clock(self, seconds: float) -> None:
        """Move the org's clock forward (timestamps, session expiry, ``/updated`` windows)."""
        with self.lock:
            self.clock_offset += seconds

    # -- Emulator ----------------------------------------------------------------------------------
    def on_bound(self, base_url: str) -> None:
        super().on_bound(base_url)
        self.org.base_url = base_url

    def reset_state(self) -> None:
        self.org.schema.replace(standard_objects())
        self._custom.clear()
        for name, spec in self._fixed_custom.items():
            self.define_object(name, spec)
        store = self.org.store
        store.tables.clear()
        store.deleted_log.clear()
        store.journal.clear()
        store.ext_index.clear()
        store.auto_numbers.clear()
        store.ids.reset()
        self.org.reports.clear()
        self.reports.clear()
        self.org.late.clear()
        self.org.usage.clear()
        self.locators.clear()
        self.bulk.clear()
        user = self.org.schema.get("User")
        assert user is not None
        store.create(
            user,
            {
                "Username": self.app_config.username,
                "FirstName": "Sandbox",
                "LastName": "Admin",
                "Email": "admin@example.com",
                "Alias": "admin",
            },
            system=True,
            record_id=ADMIN_USER_ID,
        )
        store.journal.clear()

    def load_seed(self, name: str) -> None:
        def add_report(report: ReportDef) -> None:
            reports.install(self.org, report)

        seeds.load(name, self._insert, self.define_object, self._now().date(), add_report)
        self.org.store.journal.clear()

    def fault_response(self, rule: FaultRule, request: Request) -> Response:
        return fault_reply(rule, request.url.path, self.org.usage.header())

    def dump_state(self) -> dict[str, Any]:
        store = self.org.store
        return {
            "format": 1,
            "custom": {
                name: {"prefix": prefix, "spec": dict(spec)} for name, (prefix, spec) in self._custom.items()
            },
            "tables": store.tables,
            "deleted_log": store.deleted_log,
            "journal": [c.to_dict() for c in store.journal],
            "ids": store.ids.counters,
            "auto_numbers": store.auto_numbers,
            "reports": [r.to_dict() for r in self.org.reports.values()],
            "sessions": self.org.sessions.access,
            "refresh_tokens": sorted(self.org.sessions.refresh),
        }

    def restore_state(self, data: dict[str, Any]) -> None:
        from crmsync.sandbox.salesforce.store import Change

        with self.lock:
            self.reset_state()
            store = self.org.store
            for name, entry in data.get("custom", {}).items():
                if self.org.schema.get(name) is None:
                    self._add_custom(name, entry["prefix"], entry["spec"])
            store.tables.clear()
            store.ext_index.clear()
            for name, table in data.get("tables", {}).items():
                obj = self.org.schema.get(name)
                if obj is None:
                    continue
                store.tables[obj.name] = table
                for rec in table.values():
                    store._index(obj, rec)
            store.deleted_log[:] = [tuple(x) for x in data.get("deleted_log", [])]
            store.journal[:] = [
                Change(c["at"], c["object"], c["id"], c["operation"], c["client"], tuple(c["fields"]))
                for c in data.get("journal", [])
            ]
            store.ids.counters.update(data.get("ids", {}))
            store.auto_numbers.update(data.get("auto_numbers", {}))
            report_table = store.tables.get("Report", {})
            for r in data.get("reports", []):
                report = ReportDef.from_dict(r)
                if report.id in report_table:
                    self.org.reports[report.id] = report
                else:  # a state saved before reports were records
                    reports.install(self.org, report)
            self.org.sessions.access.update(data.get("sessions", {}))
            self.org.sessions.refresh.update(data.get("refresh_tokens", []))

    def summary(self) -> dict[str, Any]:
        counts = {
            name: sum(1 for r in table.values() if not r["IsDeleted"])
            for name, table in self.org.store.tables.items()
        }
        return {
            "objects": counts,
            "recycle_bin": sum(
                1 for t in self.org.store.tables.values() for r in t.values() if r["IsDeleted"]
            ),
            "api_usage": self.org.usage.header(),
            "reports": len(self.org.reports),
        }

    def credentials(self) -> dict[str, str]:
        m = self.materials
        return {
            "SALESFORCE_INSTANCE_URL": self.base_url,
            "SALESFORCE_LOGIN_URL": self.base_url,
            "SALESFORCE_CLIENT_ID": self.app_config.client_id,
            "SALESFORCE_CLIENT_SECRET": self.app_config.client_secret,
            "SALESFORCE_USERNAME": self.app_config.username,
            "SALESFORCE_PASSWORD": self.app_config.password,
            "SALESFORCE_JWT_KEY_FILE": str(m.jwt_key_file) if m is not None else "",
            "SALESFORCE_CA_FILE": str(m.ca_file) if m is not None else "",
        }

    # -- Python API for tests -----------------------------------------------------------------------
    def define_object(self, name: str, spec: Mapping[str, Any]) -> None:
        """Define a custom object (``Usage__c``…) from a spec as in :func:`.schema.custom_object`."""
        with self.lock:
            if self.org.schema.get(name) is not None:
                return
            self._add_custom(name, self.org.schema.next_custom_prefix(), spec)

    def _add_custom(self, name: str, prefix: str, spec: Mapping[str, Any]) -> None:
        obj = custom_object(name, prefix, spec)
        for f in obj.fields.values():
            for target in f.reference_to:
                if self.org.schema.get(target) is None:
                    raise ValueError(f"{name}.{f.name} refers to unknown object {target}")
        self.org.schema.add(obj)
        self._custom[name] = (prefix, spec)

    def _object(self, object_name: str) -> ObjectDef:
        obj = self.org.schema.get(object_name)
        if obj is None:
            raise KeyError(f"unknown object {object_name!r}; known: {', '.join(self.org.schema.objects)}")
        return obj

    def _insert(self, object_name: str, fields: Mapping[str, Any], record_id: str | None = None) -> str:
        return self.org.store.create(self._object(object_name), fields, system=True, record_id=record_id)

    def insert(self, object_name: str, fields: Mapping[str, Any], *, record_id: str | None = None) -> str:
        """Create a record without HTTP or call counting; audit fields (CreatedDate…) may be set.

        Raises :class:`~.store.DmlError` when Salesforce would refuse the record.
        """
        with self.lock:
            return self._insert(object_name, fields, record_id)

    def update(self, object_name: str, record_id: str, fields: Mapping[str, Any]) -> None:
        """Change a record as a user in the Salesforce UI would (journaled with no client)."""
        with self.lock:
            obj = self._object(object_name)
            self.org.store.update(obj, normalize(record_id) or record_id, fields, system=True)

    def delete(self, object_name: str, record_id: str) -> None:
        with self.lock:
            obj = self._object(object_name)
            self.org.store.delete(obj, normalize(record_id) or record_id)

    def get(self, object_name: str, record_id: str) -> dict[str, Any] | None:
        """A copy of the record (deleted ones too), or None."""
        with self.lock:
            rec = self.org.store.tables.get(self._object(object_name).name, {}).get(
                normalize(record_id) or ""
            )
            return dict(rec) if rec is not None else None

    def records(self, object_name: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Copies of the records of one object (live ones unless ``include_deleted``)."""
        with self.lock:
            table = self.org.store.tables.get(self._object(object_name).name, {})
            return [dict(r) for r in table.values() if include_deleted or not r["IsDeleted"]]

    def changes(
        self, object_name: str | None = None, record_id: str | None = None, *, client: str | None = None
    ) -> list[dict[str, Any]]:
        """The write journal, oldest first: ``{at, object, id, operation, client, fields}``.

        ``client`` is what the writer sent in ``Sforce-Call-Options: client=<name>`` (None: no
        header, or a write through this Python API).
        """
        rid = normalize(record_id) if record_id else None
        with self.lock:
            return [
                c.to_dict()
                for c in self.org.store.journal
                if (object_name is None or c.object.lower() == object_name.lower())
                and (rid is None or c.id == rid)
                and (client is None or c.client == client)
            ]

    def add_report(self, report: ReportDef) -> None:
        """Add a report (Reports API, ``Report`` record, CSV export link); replaces one with its id."""
        with self.lock:
            reports.install(self.org, report)

    def late_commits(
        self, seconds: float, *, object_name: str | None = None, every: int = 1, count: int | None = None
    ) -> None:
        """Make writes commit late: the record's SystemModstamp is the write's time, but queries
        see the write ``seconds`` later (by the org's clock). ``every``-th write to ``object_name``
        (any object when None), at most ``count`` of them; rules add up, the first that fires wins."""
        with self.lock:
            self.org.late.rules.append(LateRule(seconds, object_name, every, count))

    def clear_late_commits(self) -> None:
        """No more late writes; those pending become visible at once."""
        with self.lock:
            self.org.late.clear()

    def expire_sessions(self) -> None:
        """Every access token issued so far answers 401 INVALID_SESSION_ID from now on."""
        with self.lock:
            self.org.sessions.expire_all()

    def new_session(self) -> str:
        """A fresh access token, as if the client had logged in."""
        with self.lock:
            return self.org.sessions.new_access_token()

    def set_daily_limit(self, n: int) -> None:
        with self.lock:
            self.org.usage.limit = n

    @property
    def api_usage(self) -> int:
        with self.lock:
            return self.org.usage.used

    # -- HTTP --------------------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/services/oauth2/token", self._token, methods=["POST"]),
            Route("/services/oauth2/revoke", self._revoke, methods=["GET", "POST"]),
            Route("/services/data", self._versions, methods=["GET"]),
            Route("/services/data/", self._versions, methods=["GET"]),
            Route("/services/data/v{version}", self._api, methods=ALL_METHODS),
            Route("/services/data/v{version}/{rest:path}", self._api, methods=ALL_METHODS),
            Route("/_sandbox/salesforce/expire-sessions", self._expire, methods=["POST"]),
            Route("/_sandbox/salesforce/daily-limit", self._daily_limit, methods=["POST"]),
            Route("/_sandbox/salesforce/late-commits", self._late_commits, methods=["GET", "POST", "DELETE"]),
            Route("/{report_id}", self._report, methods=["GET"]),
        ]

    async def _expire(self, request: Request) -> Response:
        self.expire_sessions()
        return json_response(200, {"expired": True})

    async def _daily_limit(self, request: Request) -> Response:
        try:
            limit = int((await request.json())["limit"])
        except (ValueError, KeyError, TypeError):
            return json_response(400, {"error": 'send {"limit": N}'})
        self.set_daily_limit(limit)
        return json_response(200, {"limit": limit})

    async def _late_commits(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.clear_late_commits()
        elif request.method == "POST":
            try:
                body = await request.json()
                self.late_commits(
                    float(body["seconds"]),
                    object_name=body.get("object"),
                    every=int(body.get("every", 1)),
                    count=int(body["count"]) if body.get("count") is not None else None,
                )
            except (ValueError, KeyError, TypeError) as exc:
                return json_response(
                    400, {"error": f'send {{"seconds": S, "object", "every", "count"}}: {exc}'}
                )
        with self.lock:
            rules = [rule.describe() for rule in self.org.late.rules]
            pending = len(self.org.late.pending)
        return json_response(200, {"rules": rules, "pending": pending})

    async def _token(self, request: Request) -> Response:
        form = await read_form(request)
        with self.lock:
            try:
                body = self.org.sessions.grant(form, request.headers.get("authorization"), self.base_url)
            except OAuthError as exc:
                return json_response(exc.status, exc.body())
        return json_response(200, body)

    async def _revoke(self, request: Request) -> Response:
        token = request.query_params.get("token") or (await read_form(request)).get("token")
        with self.lock:
            if isinstance(token, str):
                self.org.sessions.access.pop(token, None)
                self.org.sessions.refresh.discard(token)
        return Response(status_code=200)

    async def _versions(self, request: Request) -> Response:
        return json_response(
            200,
            [
                {
                    "label": SERIES.get(int(float(v)), "Spring '26"),
                    "url": f"/services/data/v{v}",
                    "version": v,
                }
                for v in self.org.versions
            ],
        )

    def _bearer(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() in ("bearer", "oauth") and token:
            return token.strip()
        return None

    async def _api(self, request: Request) -> Response:
        version = request.path_params["version"]
        limit_headers = {"Sforce-Limit-Info": self.org.usage.header()}
        if version not in self.org.versions:
            major = version.split(".")[0]
            if major.isdigit() and 21 <= int(major) <= 30:
                return json_response(
                    410, [{"errorCode": "GONE", "message": "The requested resource is no longer available"}]
                )
            return json_response(
                404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
            )
        body = await request.body()
        with self.lock:
            if not self.org.sessions.valid(self._bearer(request)):
                return json_response(401, SESSION_EXPIRED, {"WWW-Authenticate": "Token", **limit_headers})
            if not self.org.usage.take():
                return json_response(
                    403,
                    [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
                    {"Sforce-Limit-Info": self.org.usage.header()},
                )
            raw_path = request.scope.get("raw_path") or request.url.path.encode()
            path = raw_path.decode("latin-1").split("?", 1)[0]
            prefix = f"/services/data/v{version}"
            call = Call(
                method=request.method,
                path=path[len(prefix) :] if path.startswith(prefix) else path,
                version=version,
                params=request.query_params,
                body=body,
                headers=request.headers,
                client=parse_call_options(request.headers.get("sforce-call-options")),
            )
            try:
                reply = self.router.dispatch(call)
            except ApiError as exc:
                reply = Reply(exc.status, exc.body())
            except DmlError as exc:
                reply = Reply(exc.status, [e.rest() for e in exc.errors])
            headers = {**reply.headers, "Sforce-Limit-Info": self.org.usage.header()}
        if reply.status == 204:
            return Response(status_code=204, headers=headers)
        if reply.is_json:
            return (
                json_response(reply.status, reply.body, headers)
                if reply.body is not None
                else Response(status_code=reply.status, headers=headers)
            )
        return Response(reply.body, status_code=reply.status, headers=headers, media_type=reply.media_type)

    async def _report(self, request: Request) -> Response:
        raw = request.path_params["report_id"]
        rid = normalize(raw)
        with self.lock:
            report = self.org.reports.get(rid or "")
            if report is None:
                return Response("<html><body>Data Not Available</body></html>", 404, media_type="text/html")
            token = request.cookies.get("sid") or self._bearer(request)
            if not self.org.sessions.valid(token):
                return RedirectResponse(f"{self.base_url}/?startURL=%2F{raw}", status_code=302)
            if request.query_params.get("export") != "1":
                return Response(
                    f"<html><head><title>{report.name} ~ Salesforce</title></head>"
                    f"<body>{report.name}</body></html>",
                    media_type="text/html",
                )
            text = export_csv(self.org, report)
        filename = re.sub(r"[^A-Za-z0-9]+", "_", report.name)
        return Response(
            text.encode("utf-8"),
            media_type="text/csv; charset=UTF-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
        )
