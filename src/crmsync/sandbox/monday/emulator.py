"""The Monday.com emulator: GraphQL API v2 on ``POST /v2``, board webhooks, limits and faults.

Fault kinds (``FaultRule.error``), each answered with monday's own status and body:

=======================  ======  ======================================================
kind                     status  body (``errors[0].extensions.code``)
=======================  ======  ======================================================
``server_error``         500     ``INTERNAL_SERVER_ERROR``
``unavailable``          503     ``SERVICE_UNAVAILABLE`` (``Retry-After``)
``bad_gateway``          502     ``BAD_GATEWAY``
``gateway_timeout``      504     ``GATEWAY_TIMEOUT``
``rate_limit``           429     ``RATE_LIMIT_EXCEEDED`` per-minute limit, ``retry_in_seconds``
``complexity``           429     ``COMPLEXITY_BUDGET_EXHAUSTED``, ``retry_in_seconds`` (in the
                                 request's API-Version shape, legacy included)
``concurrency``          429     ``maxConcurrencyExceeded``
``daily_limit``          429     ``DAILY_LIMIT_EXCEEDED``
``ip_rate_limit``        429     ``IP_RATE_LIMIT_EXCEEDED``
``locked``               423     ``RESOURCE_LOCKED``: "Resource is currently locked, ..."
``temporarily_blocked``  200     ``API_TEMPORARILY_BLOCKED`` inside ``errors``
``invalid_token``        401     ``UNAUTHORIZED``, as for a missing or wrong token
=======================  ======  ======================================================

``status=N`` answers N with monday's generic body for it (``errors[0].message`` the HTTP
reason phrase). Webhook faults (``drop``/``duplicate``/``reorder``) apply to deliveries.

Tokens: ``token`` is a personal API token (one 10M/min budget, webhooks unsigned);
``app_token`` is an app's token (5M/min for reads and 5M/min for writes, and the webhooks it
creates are signed with ``signing_secret``). ``clock`` drives the complexity window, cursor
expiry and the idempotency cache, so tests can move time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from crmsync.sandbox.base import Emulator
from crmsync.sandbox.faults import FaultRule
from crmsync.sandbox.monday import columns as cols
from crmsync.sandbox.monday import seeds
from crmsync.sandbox.monday.complexity import DEFAULT_PER_MINUTE, BudgetExhausted, CallLimit, ComplexityBudget
from crmsync.sandbox.monday.endpoint import (
    GraphQLEndpoint,
    complexity_exhausted,
    daily_limit_exceeded,
    rate_limited,
    unauthorized,
)
from crmsync.sandbox.monday.errors import (
    error_response,
    generic_error_response,
)
from crmsync.sandbox.monday.idempotency import DEFAULT_TTL, IdempotencyCache
from crmsync.sandbox.monday.operations import DEFAULT_MAX_ITEMS, Operations
from crmsync.sandbox.monday.paging import DEFAULT_CURSOR_TTL, CursorStore
from crmsync.sandbox.monday.resolvers.meta import CURRENT_VERSION, VERSIONS
from crmsync.sandbox.monday.schema import DocumentCache, monday_schema
from crmsync.sandbox.monday.store import Item, Store
from crmsync.sandbox.monday.webhooks import DEFAULT_RETRY_DELAYS, WebhookHub

DEFAULT_TOKEN = "sandbox-monday-token"  # noqa: S105 (a sandbox credential)
DEFAULT_APP_TOKEN = "sandbox-monday-app-token"  # noqa: S105
DEFAULT_SIGNING_SECRET = "sandbox-monday-signing-secret-change-me"  # noqa: S105

FAULT_KINDS = (
    "server_error",
    "unavailable",
    "bad_gateway",
    "gateway_timeout",
    "rate_limit",
    "complexity",
    "concurrency",
    "daily_limit",
    "ip_rate_limit",
    "locked",
    "temporarily_blocked",
    "invalid_token",
)


class MondayEmulator(Emulator):
    name = "monday"
    seeds: ClassVar[tuple[str, ...]] = ("empty", "demo")

    def __init__(
        self,
        *,
        state_file: Path | None = None,
        token: str = DEFAULT_TOKEN,
        app_token: str = DEFAULT_APP_TOKEN,
        signing_secret: str = DEFAULT_SIGNING_SECRET,
        complexity_per_minute: int = DEFAULT_PER_MINUTE,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        webhook_timeout: float = 5.0,
        requests_per_minute: int | None = None,
        calls_per_day: int | None = None,
        max_items_per_board: int = DEFAULT_MAX_ITEMS,
        cursor_ttl: float = DEFAULT_CURSOR_TTL,
        idempotency_ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(state_file=state_file)
        self.token = token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.max_items_per_board = max_items_per_board
        self.clock = clock
        self.schema = monday_schema()
        self.documents = DocumentCache(self.schema)
        self.budget = ComplexityBudget(complexity_per_minute, clock=clock)
        self.minute_limit = CallLimit(requests_per_minute, 60.0, clock=clock)
        self.daily_limit = CallLimit(calls_per_day, 86_400.0, clock=clock)
        self.cursors = CursorStore(ttl=cursor_ttl, clock=clock)
        self.idempotency = IdempotencyCache(ttl=idempotency_ttl, clock=clock)
        self.hub = WebhookHub(
            self.faults,
            signing_secret=signing_secret,
            short_lived_token=app_token,
            retry_delays=retry_delays,
            timeout=webhook_timeout,
        )
        self.dispatcher = self.hub.dispatcher
        self.api_user_id = seeds.API_USER.id
        self.store = Store()
        self.ops = Operations(self.store, self.hub, max_items_per_board=max_items_per_board)
        self.reset_state()

    # -- Emulator ------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        return [Route("/v2", GraphQLEndpoint(self).handle, methods=["POST"])]

    def reset_state(self) -> None:
        with self.lock:
            self._use(Store())
            seeds.base_account(self.store)
            self.budget.clear()
            self.minute_limit.clear()
            self.daily_limit.clear()
            self.cursors.clear()
            self.idempotency.clear()
            self.dispatcher.clear()

    def _use(self, store: Store) -> None:
        self.store = store
        self.ops = Operations(store, self.hub, max_items_per_board=self.max_items_per_board)

    def load_seed(self, name: str) -> None:
        with self.lock:
            seeds.load(self.store, name)

    def fault_response(self, rule: FaultRule, request: Request) -> Response:
        kind = rule.error
        wait = rule.retry_after_seconds  # a rule's retry_after also goes into the body's retry_in_seconds
        if kind is None:
            return generic_error_response(rule.status or 500)
        if kind == "server_error":
            return generic_error_response(500)
        if kind == "unavailable":
            return generic_error_response(503)
        if kind == "bad_gateway":
            return generic_error_response(502)
        if kind == "gateway_timeout":
            return generic_error_response(504)
        if kind == "rate_limit":
            return rate_limited(wait(60))
        if kind == "complexity":
            version = request.headers.get("api-version") or CURRENT_VERSION
            limit = self.budget.per_minute
            return complexity_exhausted(
                version if version in VERSIONS or version < CURRENT_VERSION else CURRENT_VERSION,
                0,
                0,
                limit,
                wait(60),
            )
        if kind == "concurrency":
            return error_response(
                429,
                "Max concurrency exceeded",
                "maxConcurrencyExceeded",
                retry_after=wait(10),
                retry_in_seconds=wait(10),
            )
        if kind == "daily_limit":
            return daily_limit_exceeded(wait(3600))
        if kind == "ip_rate_limit":
            return error_response(
                429,
                "IP rate limit exceeded",
                "IP_RATE_LIMIT_EXCEEDED",
                retry_after=wait(10),
                retry_in_seconds=wait(10),
            )
        if kind == "locked":
            return error_response(
                423,
                "Resource is currently locked, please try again later",
                "RESOURCE_LOCKED",
                retry_after=wait(5),
                status_code=423,
            )
        if kind == "temporarily_blocked":
            return error_response(
                200, "API temporarily blocked", "API_TEMPORARILY_BLOCKED", retry_after=wait(30)
            )
        if kind == "invalid_token":
            return unauthorized()
        return error_response(
            500,
            f"unknown sandbox fault kind {kind!r}; valid: {', '.join(FAULT_KINDS)}",
            "INTERNAL_SERVER_ERROR",
            status_code=500,
        )

    def dump_state(self) -> dict[str, Any]:
        with self.lock:
            return self.store.dump()

    def restore_state(self, data: dict[str, Any]) -> None:
        with self.lock:
            self._use(Store.load(data))
            if self.api_user_id not in self.store.users:
                seeds.base_account(self.store)

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return {
                "boards": len(self.store.boards),
                "items": sum(1 for i in self.store.items.values() if i.state != "deleted"),
                "updates": len(self.store.updates),
                "webhooks": len(self.store.webhooks),
                "users": len(self.store.users),
            }

    def credentials(self) -> dict[str, str]:
        return {
            "MONDAY_API_URL": f"{self.base_url}/v2",
            "MONDAY_TOKEN": self.token,
            "MONDAY_SIGNING_SECRET": self.signing_secret,
            "MONDAY_APP_TOKEN": self.app_token,
        }

    def close(self) -> None:
        self.dispatcher.stop()

    # -- Python API for tests --------------------------------------------------------------------
    def board_id(self, name: str) -> str:
        """The id of the board called ``name``."""
        with self.lock:
            for board in self.store.boards.values():
                if board.name == name:
                    return str(board.id)
            names = ", ".join(b.name for b in self.store.boards.values()) or "none"
            raise KeyError(f"no board named {name!r}; boards: {names}")

    def column_id(self, board_id: str | int, title: str) -> str:
        with self.lock:
            board = self.ops.board(int(board_id))
            for column in board.columns:
                if column.title == title:
                    return column.id
            raise KeyError(f"no column titled {title!r} on board {board.name}")

    def group_id(self, board_id: str | int, title: str) -> str:
        with self.lock:
            board = self.ops.board(int(board_id))
            for group in board.groups:
                if group.title == title and not group.deleted:
                    return group.id
            raise KeyError(f"no group titled {title!r} on board {board.name}")

    def items(self, board_id: str | int, *, include_inactive: bool = False) -> list[dict[str, Any]]:
        """The board's items as plain data: id, name, state, group_id, and per column id its
        ``text`` (``columns``) and stored ``value`` JSON string (``values``)."""
        with self.lock:
            items = self.store.board_items(int(board_id), active_only=not include_inactive)
            return [self._view(i) for i in items]

    def item(self, item_id: str | int) -> dict[str, Any]:
        with self.lock:
            found = self.store.items.get(int(item_id))
            if found is None:
                raise KeyError(f"no item {item_id}")
            return self._view(found)

    def _view(self, item: Item) -> dict[str, Any]:
        board = self.store.boards[item.board_id]
        columns = [c for c in board.columns if c.type != "name"]
        return {
            "id": str(item.id),
            "name": item.name,
            "state": item.state,
            "group_id": item.group_id,
            "updated_at": item.updated_at,
            "columns": {c.id: cols.text_of(c, item.values.get(c.id), self.ops) for c in columns},
            "values": {c.id: cols.api_value(c, item.values.get(c.id)) for c in columns},
        }

    def _ui_user(self, user_id: int | None) -> int:
        if user_id is not None:
            return user_id
        people = sorted(
            u.id for u in self.store.users.values() if u.kind == "person" and u.id != self.api_user_id
        )
        return people[0] if people else self.api_user_id

    # What a person does in the board UI: validated like the API and delivered to webhooks,
    # with ``userId`` the person's (by default the first seeded person who is not the API user).
    def ui_create_item(
        self,
        board_id: str | int,
        name: str,
        *,
        group_id: str | None = None,
        values: dict[str, Any] | None = None,
        user_id: int | None = None,
    ) -> str:
        with self.lock:
            item = self.ops.create_item(
                int(board_id),
                name,
                group_id=group_id,
                values=values,
                create_labels=False,
                user_id=self._ui_user(user_id),
            )
            return str(item.id)

    def ui_change_values(
        self, item_id: str | int, values: dict[str, Any], *, user_id: int | None = None
    ) -> None:
        """Change several columns (write formats or simple strings; ``"name"`` renames)."""
        with self.lock:
            item = self.ops.live_item(int(item_id))
            self.ops.change_values(
                item.board_id, item.id, values, create_labels=False, user_id=self._ui_user(user_id)
            )

    def ui_change_column(
        self, item_id: str | int, column_id: str, value: Any, *, user_id: int | None = None
    ) -> None:
        self.ui_change_values(item_id, {column_id: value}, user_id=user_id)

    def ui_rename_item(self, item_id: str | int, name: str, *, user_id: int | None = None) -> None:
        self.ui_change_values(item_id, {"name": name}, user_id=user_id)

    def ui_move_item(self, item_id: str | int, group_id: str, *, user_id: int | None = None) -> None:
        with self.lock:
            self.ops.move_item(int(item_id), group_id, user_id=self._ui_user(user_id))

    def ui_archive_item(self, item_id: str | int, *, user_id: int | None = None) -> None:
        with self.lock:
            self.ops.archive_item(int(item_id), user_id=self._ui_user(user_id))

    def ui_delete_item(self, item_id: str | int, *, user_id: int | None = None) -> None:
        with self.lock:
            self.ops.delete_item(int(item_id), user_id=self._ui_user(user_id))

    def ui_add_update(self, item_id: str | int, body: str, *, user_id: int | None = None) -> str:
        with self.lock:
            update = self.ops.create_update(
                int(item_id), body, parent_id=None, user_id=self._ui_user(user_id)
            )
            return str(update.id)

    def add_webhook(
        self,
        board_id: str | int,
        url: str,
        event: str,
        config: dict[str, Any] | None = None,
        *,
        app: bool = False,
    ) -> str:
        """Subscribe ``url`` without the challenge (as if created earlier); ``app`` signs deliveries."""
        with self.lock:
            board = self.ops.board(int(board_id))
            return str(
                self.ops.add_webhook(board.id, url, event, config, app=app, user_id=self.api_user_id).id
            )

    def webhooks(self, board_id: str | int | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {
                    "id": str(w.id),
                    "board_id": str(w.board_id),
                    "url": w.url,
                    "event": w.event,
                    "config": w.config,
                    "app": w.app,
                }
                for w in self.store.webhooks.values()
                if board_id is None or w.board_id == int(board_id)
            ]

    def deliveries(self) -> list[dict[str, Any]]:
        """Every delivery attempt so far: ``{"url", "status", "event"}`` (status None: no answer)."""
        out = []
        for delivery, status in list(self.dispatcher.sent):
            out.append({"url": delivery.url, "status": status, "event": json.loads(delivery.body)["event"]})
        return out


__all__ = ["BudgetExhausted", "MondayEmulator"]
