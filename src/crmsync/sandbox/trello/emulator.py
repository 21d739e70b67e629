"""The Trello REST API v1 emulator: :class:`TrelloEmulator`.

Fault rule ``error`` kinds (``POST /_sandbox/faults``):

==================  =========================================================================
``server_error``    500, text/plain ``Internal Server Error``
``unavailable``     503, text/plain ``Service Unavailable``
``rate_limit``      429, JSON ``{"error":"API_TOKEN_LIMIT_EXCEEDED","message":"Rate limit exceeded"}``
``key_rate_limit``  429, JSON ``{"error":"API_KEY_LIMIT_EXCEEDED","message":"Rate limit exceeded"}``
``invalid_token``   401, text/plain ``invalid token``
``invalid_key``     401, text/plain ``invalid key``
==================  =========================================================================

``status=N`` answers N with the body Trello sends for it (text/plain for 4xx and 5xx, the
token-limit JSON for 429). Webhook rules (``drop``, ``duplicate``, ``reorder``) apply to
deliveries, matched against the callback URL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from crmsync.sandbox.base import Emulator
from crmsync.sandbox.faults import FaultRule
from crmsync.sandbox.trello import boards, cards, customfields, labels, lists, members, misc, seeds, views
from crmsync.sandbox.trello.actions import query
from crmsync.sandbox.trello.customfields import parse_item, set_item
from crmsync.sandbox.trello.http import NOT_FOUND, Call, Router, TrelloError
from crmsync.sandbox.trello.ids import now_iso, object_id
from crmsync.sandbox.trello.ratelimit import KEY_EXCEEDED, TOKEN_EXCEEDED, RateLimiter
from crmsync.sandbox.trello.store import Record, State
from crmsync.sandbox.trello.webhooks import Webhooks
from crmsync.sandbox.webhooks import WebhookDispatcher

DEFAULT_KEY = "b7f6a4d0f5c1254bc1255775ed975527"
#: fixed sandbox credentials (not secrets: the sandbox is local and public)
DEFAULT_TOKEN = "ATTA090b9489598b4c69c52190494a26fd4b6148ea1c717cb1bd4e30fcae48c2a3579DD4E461"  # noqa: S105
DEFAULT_SECRET = "a85bd4d43a2633973a932dd04cc9da62a4425f52761a41f5ad1f3a190c8be4f1"  # noqa: S105
OWNER_USERNAME = "sandboxowner"
MAX_BATCH = 10
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]

_OAUTH_PARAM = re.compile(r'(\w+)="([^"]*)"')
_TOKEN_PATH = re.compile(r"^/1/tokens?/([^/]+)")
_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json; charset=utf-8"


def _text(status: int, body: str, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=_TEXT, headers=headers)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return Response(data, status_code=status, media_type=_JSON, headers=headers)


def _error(exc: TrelloError, headers: dict[str, str] | None = None) -> Response:
    if isinstance(exc.body, str):
        return _text(exc.status, exc.body, headers)
    return _json(exc.body, exc.status, headers)


def _body_params(body: bytes, content_type: str) -> dict[str, Any]:
    if not body:
        return {}
    if "json" in content_type:
        try:
            data = json.loads(body)
        except ValueError:
            raise TrelloError(400, "invalid json") from None
        return data if isinstance(data, dict) else {}
    if "x-www-form-urlencoded" in content_type or not content_type:
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return {}


class TrelloEmulator(Emulator):
    """Trello REST API v1 in memory: boards, lists, cards, labels, members, custom fields, actions,
    webhooks, ``/batch`` and ``/search``, with Trello's auth, errors and rate limits."""

    name = "trello"
    seeds = ("empty", "demo")

    def __init__(
        self,
        *,
        state_file: Path | None = None,
        key: str = DEFAULT_KEY,
        token: str = DEFAULT_TOKEN,
        secret: str = DEFAULT_SECRET,
        token_limit: int = 100,
        key_limit: int = 300,
        window_seconds: float = 10.0,
        retry_delays: Sequence[float] = (30, 60, 120),
        webhook_timeout: float = 5.0,
        member_limit: int = 100,
        member_window_seconds: float = 900.0,
        deactivate_after_failures: int | None = None,
    ) -> None:
        super().__init__(state_file=state_file)
        self.key = key
        self.token = token
        self.secret = secret
        self.state = State()
        self.limiter = RateLimiter(
            token_limit=token_limit,
            key_limit=key_limit,
            window_seconds=window_seconds,
            member_limit=member_limit,
            member_window_seconds=member_window_seconds,
        )
        self.dispatcher = WebhookDispatcher(self.faults, retry_delays=retry_delays, timeout=webhook_timeout)
        self.webhooks = Webhooks(
            self.state,
            self.lock,
            self.dispatcher,
            secret=secret,
            timeout=webhook_timeout,
            deactivate_after_failures=deactivate_after_failures,
        )
        self.router = Router()
        for module in (customfields, cards, lists, labels, boards, members, misc):
            module.register(self.router)
        self.webhooks.register(self.router)
        cards.register_fallbacks(self.router)
        boards.register_fallbacks(self.router)
        self.reset_state()

    # -- Emulator ------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        return [Route("/{path:path}", self._serve, methods=METHODS)]

    def reset_state(self) -> None:
        self.dispatcher.clear()
        self.state.load({})
        self.limiter.reset()
        owner = members.create_member(self.state, OWNER_USERNAME, "Sandbox Owner", email="owner@example.com")
        self._add_token(self.token, owner["id"])

    def load_seed(self, name: str) -> None:
        seeds.load(self.state, name, self.owner_id)

    def fault_response(self, rule: FaultRule, request: Request) -> Response:
        kind = rule.error
        if kind == "rate_limit":
            return _json(TOKEN_EXCEEDED, 429)
        if kind == "key_rate_limit":
            return _json(KEY_EXCEEDED, 429)
        if kind == "invalid_token":
            return _text(401, "invalid token")
        if kind == "invalid_key":
            return _text(401, "invalid key")
        if kind == "unavailable":
            return _text(503, "Service Unavailable")
        status = rule.status or 500
        if status == 429:
            return _json(TOKEN_EXCEEDED, 429)
        bodies = {
            400: "invalid id",
            401: "unauthorized permission requested",
            404: NOT_FOUND,
            500: "Internal Server Error",
        }
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        return _text(status, bodies.get(status, phrase))

    def dump_state(self) -> dict[str, Any]:
        return self.state.dump()

    def restore_state(self, data: dict[str, Any]) -> None:
        with self.lock:
            self.state.load(data)
            if self.token not in self.state.tokens:
                owner = next(iter(self.state.members.values()), None) or members.create_member(
                    self.state, OWNER_USERNAME, "Sandbox Owner"
                )
                self._add_token(self.token, owner["id"])

    def summary(self) -> dict[str, Any]:
        state = self.state
        return {
            "boards": len(state.boards),
            "lists": len(state.lists),
            "cards": len(state.cards),
            "labels": len(state.labels),
            "customFields": len(state.custom_fields),
            "members": len(state.members),
            "actions": len(state.actions),
            "webhooks": len(state.webhooks),
            "pending_deliveries": self.dispatcher.pending(),
        }

    def credentials(self) -> dict[str, str]:
        return {
            "TRELLO_API_URL": self.base_url + "/1",
            "TRELLO_KEY": self.key,
            "TRELLO_TOKEN": self.token,
            "TRELLO_SECRET": self.secret,
        }

    def close(self) -> None:
        self.dispatcher.stop()

    # -- serving -------------------------------------------------------------------------------
    def _auth(self, request: Request, params: dict[str, Any]) -> tuple[str | None, str | None]:
        key = params.pop("key", None)
        token = params.pop("token", None)
        header = request.headers.get("authorization", "")
        if header[:6].lower() == "oauth ":
            found = {k: unquote(v) for k, v in _OAUTH_PARAM.findall(header)}
            key = found.get("oauth_consumer_key", key)
            token = found.get("oauth_token", token)
        if token is None:
            in_path = _TOKEN_PATH.match(request.url.path)
            if in_path:
                token = in_path.group(1)
        return (None if key is None else str(key), None if token is None else str(token))

    def _member_of(self, key: str | None, token: str | None) -> str:
        if not key or key != self.key:
            raise TrelloError(401, "invalid key")
        if not token:
            raise TrelloError(401, "unauthorized permission requested")
        rec = self.state.tokens.get(token)
        if rec is None:
            raise TrelloError(401, "invalid token")
        if rec["key"] != key:
            raise TrelloError(401, "unauthorized token")
        return str(rec["idMember"])

    async def _serve(self, request: Request) -> Response:
        method = request.method
        path = request.url.path
        if not path.startswith("/1/"):
            return _text(404, f"Cannot {method} {path}")
        try:
            params: dict[str, Any] = dict(request.query_params)
            if method in ("POST", "PUT", "DELETE", "PATCH"):
                params.update(_body_params(await request.body(), request.headers.get("content-type", "")))
            key, token = self._auth(request, params)
            with self.lock:
                member = self._member_of(key, token)
        except TrelloError as exc:
            return _error(exc)
        assert key is not None and token is not None
        verdict = self.limiter.check(key, token, path)
        headers = verdict.headers
        if verdict.refusal is not None:
            return _json(verdict.refusal, 429, headers)
        rest = path[2:]
        try:
            if method == "GET" and rest.rstrip("/") == "/batch":
                with self.lock:
                    return _json(self._batch(params, member, token, key), headers=headers)
            found = self.router.match(method, rest)
            if found is None:
                raise TrelloError(404, f"Cannot {method} {path}")
            route, args = found
            call = Call(method, rest, self.state, params, member, token, key, args)
            if route.is_async:
                body = await route.handler(call)
            else:
                with self.lock:
                    body = route.handler(call)
        except TrelloError as exc:
            return _error(exc, headers)
        return _json(body, headers=headers)

    def _batch(self, params: dict[str, Any], member: str, token: str, key: str) -> list[Any]:
        raw = str(params.get("urls") or "")
        urls = [u for u in raw.split(",") if u]
        if not urls or len(urls) > MAX_BATCH:
            raise TrelloError(400, "invalid value for urls")
        out: list[Any] = []
        for url in urls:
            parts = urlsplit(unquote(url))
            route_path = parts.path if parts.path.startswith("/") else "/" + parts.path
            if route_path.startswith("/1/"):
                route_path = route_path[2:]
            sub_params: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
            try:
                found = self.router.match("GET", route_path)
                if found is None or found[0].is_async:
                    raise TrelloError(404, f"Cannot GET /1{route_path}")
                route, args = found
                call = Call("GET", route_path, self.state, sub_params, member, token, key, args)
                out.append({"200": route.handler(call)})
            except TrelloError as exc:
                out.append({"message": exc.message, "statusCode": exc.status})
        return out

    # -- Python API for tests and demos ----------------------------------------------------------
    @property
    def owner_id(self) -> str:
        """The member the default token belongs to."""
        return str(self.state.tokens[self.token]["idMember"])

    def _add_token(self, token: str, member_id: str) -> None:
        self.state.tokens[token] = {
            "id": object_id(),
            "idMember": member_id,
            "key": self.key,
            "dateCreated": now_iso(),
        }

    def add_token(self, member: str | None = None, token: str | None = None) -> str:
        """Issue another token (for ``member``: id or username; default the owner); returns it."""
        with self.lock:
            member_id = self._person(member)
            token = token or "ATTA" + object_id() + object_id() + object_id()[:16] + "0A1B2C3D"
            self._add_token(token, member_id)
            return token

    def revoke_token(self, token: str) -> None:
        """Revoke a token as its user would: it stops working and its webhooks are deleted."""
        with self.lock:
            self.webhooks.revoke(token)

    def add_member(self, username: str, full_name: str, board_id: str | None = None) -> str:
        """Create a member (and add them to ``board_id``); returns the member id."""
        with self.lock:
            rec = members.create_member(self.state, username, full_name)
            if board_id is not None:
                boards.add_board_member(self.state, self.state.boards[board_id], rec["id"])
            return str(rec["id"])

    def _person(self, who: str | None) -> str:
        if who is None:
            return self.owner_id
        return str(self.state.member(who)["id"])

    def _call(self, who: str | None, params: dict[str, Any], args: dict[str, str] | None = None) -> Call:
        member = self._person(who)
        return Call("PUT", "/", self.state, params, member, self.token, self.key, args or {})

    def board_id(self, name: str) -> str:
        """The id of the board called ``name`` (KeyError if there is none)."""
        with self.lock:
            for board in self.state.boards.values():
                if board["name"] == name:
                    return str(board["id"])
        raise KeyError(f"no board named {name!r}")

    def list_id(self, board_id: str, name: str) -> str:
        with self.lock:
            for lst in self.state.board_lists(board_id):
                if lst["name"] == name:
                    return str(lst["id"])
        raise KeyError(f"no list named {name!r}")

    def label_id(self, board_id: str, name: str) -> str:
        with self.lock:
            for lab in self.state.board_labels(board_id):
                if lab["name"] == name:
                    return str(lab["id"])
        raise KeyError(f"no label named {name!r}")

    def custom_field_id(self, board_id: str, name: str) -> str:
        with self.lock:
            for field in self.state.board_fields(board_id):
                if field["name"] == name:
                    return str(field["id"])
        raise KeyError(f"no custom field named {name!r}")

    def member_id(self, username: str) -> str:
        with self.lock:
            return str(self.state.member(username)["id"])

    def cards(self, board_id: str) -> list[dict[str, Any]]:
        """Every card of the board (open and archived) as the API renders it, with custom field items."""
        with self.lock:
            found = sorted(self.state.board_cards(board_id), key=lambda c: (c["idList"], c["pos"]))
            return [views.card(self.state, c, custom_field_items=True) for c in found]

    def card(self, card_id: str) -> dict[str, Any]:
        with self.lock:
            return views.card(self.state, self.state.card(card_id), custom_field_items=True)

    def actions(self, board_id: str, filter: str = "all", limit: int = 1000) -> list[dict[str, Any]]:
        """The board's actions, newest first."""
        with self.lock:
            call = self._call(None, {"filter": filter, "limit": str(limit)})
            return [dict(a) for a in query(call, "board", board_id, "all")]

    def webhook_list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [views.webhook(h) for h in self.state.webhooks.values()]

    def create_card(self, list_id: str, name: str, *, by: str | None = None, **params: Any) -> dict[str, Any]:
        """Create a card as member ``by`` would (default: the owner): the action and webhooks follow.

        ``params`` are the API's (``desc``, ``pos``, ``due``, ``idMembers``, ``idLabels``...).
        """
        with self.lock:
            call = self._call(by, {"idList": list_id, "name": name, **params})
            return dict(cards.post_card(call))

    def update_card(self, card_id: str, *, by: str | None = None, **changes: Any) -> dict[str, Any]:
        """Change a card as ``by`` would: ``name``, ``desc``, ``closed``, ``idList``, ``due``..."""
        with self.lock:
            return dict(cards.put_card(self._call(by, changes, {"card": card_id})))

    def move_card(self, card_id: str, list_id: str, *, by: str | None = None) -> dict[str, Any]:
        return self.update_card(card_id, by=by, idList=list_id)

    def delete_card(self, card_id: str, *, by: str | None = None) -> None:
        with self.lock:
            cards.delete_card_route(self._call(by, {}, {"card": card_id}))

    def comment(self, card_id: str, text: str, *, by: str | None = None) -> dict[str, Any]:
        with self.lock:
            return dict(cards.post_comment(self._call(by, {"text": text}, {"card": card_id})))

    def add_member_to_card(self, card_id: str, member: str, *, by: str | None = None) -> None:
        with self.lock:
            who = self._person(member)
            cards.post_member(self._call(by, {"value": who}, {"card": card_id}))

    def remove_member_from_card(self, card_id: str, member: str, *, by: str | None = None) -> None:
        with self.lock:
            who = self._person(member)
            cards.delete_member(self._call(by, {}, {"card": card_id, "member": who}))

    def add_label_to_card(self, card_id: str, label_id: str, *, by: str | None = None) -> None:
        with self.lock:
            cards.post_label(self._call(by, {"value": label_id}, {"card": card_id}))

    def remove_label_from_card(self, card_id: str, label_id: str, *, by: str | None = None) -> None:
        with self.lock:
            cards.delete_label(self._call(by, {}, {"card": card_id, "label": label_id}))

    def set_custom_field(self, card_id: str, field: str, value: Any, *, by: str | None = None) -> Record:
        """Set a custom field by id or name: a str (text, date, list option text), a number, a bool
        (checkbox) or None to clear it."""
        with self.lock:
            call = self._call(by, {})
            card = self.state.card(card_id)
            rec = self.state.custom_fields.get(field)
            if rec is None:
                rec = self.state.custom_fields[self.custom_field_id(card["idBoard"], field)]
            payload: dict[str, Any]
            if rec["type"] == "list":
                options = {o["value"]["text"]: o["id"] for o in rec["options"]}
                payload = {"idValue": "" if value is None else options.get(str(value), str(value))}
            elif value is None:
                payload = {"value": ""}
            else:
                key = customfields.VALUE_KEYS[rec["type"]]
                raw = value if rec["type"] == "checkbox" else str(value)
                payload = {"value": {key: raw}}
            kind, parsed = parse_item(rec, payload)
            return set_item(self.state, call.member, card, rec, kind, parsed)
