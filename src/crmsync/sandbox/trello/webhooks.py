"""Webhooks: registration (HEAD check, duplicates, owned by the token), signed deliveries, failures.

Creating a webhook sends ``HEAD callbackURL``; anything but 200 refuses it with Trello's 400 text
(``URL (...) did not return 200 status code, got 405``). Each action that involves a webhook's
model is POSTed as ``{"action", "model", "webhook"}`` (``model`` is the watched object) and signed
``X-Trello-Webhook: base64(HMAC-SHA1(secret, body + callbackURL))``. Deliveries go through the
shared :class:`~crmsync.sandbox.webhooks.WebhookDispatcher` (retries, drop/duplicate/reorder faults).
Each failed attempt increments ``consecutiveFailures`` (and sets ``firstConsecutiveFailDate``), a
success resets both; a webhook is deactivated (``active: false``) after ``deactivate_after_failures``
failed attempts in a row when that knob is set, or once it has failed for ``deactivate_after_days``;
a 410 reply deletes it, and so does revoking its token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from crmsync.sandbox.trello import access, views
from crmsync.sandbox.trello.actions import models_of
from crmsync.sandbox.trello.http import Call, Router, TrelloError, invalid_value
from crmsync.sandbox.trello.ids import now_iso, object_id, parse_date
from crmsync.sandbox.trello.store import Record, State
from crmsync.sandbox.webhooks import Delivery, WebhookDispatcher

MAX_DESCRIPTION = 16384
DUPLICATE = "A webhook with that callback, model, and token already exists"


def sign(secret: str, body: bytes, callback_url: str) -> str:
    """Trello's ``X-Trello-Webhook`` header for ``body`` sent to ``callback_url``."""
    digest = hmac.new(secret.encode(), body + callback_url.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class Webhooks:
    """Webhook registrations of one emulator and the deliveries of its actions."""

    def __init__(
        self,
        state: State,
        lock: threading.RLock,
        dispatcher: WebhookDispatcher,
        *,
        secret: str,
        timeout: float,
        deactivate_after_failures: int | None = None,
        deactivate_after_days: float = 30.0,
    ) -> None:
        self.state = state
        self.lock = lock
        self.dispatcher = dispatcher
        self.secret = secret
        self.timeout = timeout
        self.deactivate_after_failures = deactivate_after_failures
        self.deactivate_after_days = deactivate_after_days
        dispatcher.on_result = self.on_result
        state.listeners.append(self.notify)

    # -- deliveries ----------------------------------------------------------------------------
    def model(self, ident: str) -> dict[str, Any] | None:
        state = self.state
        if ident in state.boards:
            return views.board(state, state.boards[ident])
        if ident in state.cards:
            return views.card(state, state.cards[ident])
        if ident in state.lists:
            return views.trello_list(state.lists[ident])
        if ident in state.members:
            return views.member(state, state.members[ident])
        if ident in state.labels:
            return views.label(state.labels[ident])
        return None

    def notify(self, action: Record) -> None:
        """Queue a delivery of ``action`` to every active webhook whose model it involves."""
        involved = models_of(action)
        for hook in list(self.state.webhooks.values()):
            if not hook["active"] or hook["idModel"] not in involved:
                continue
            model = self.model(hook["idModel"])
            if model is None:
                continue
            payload = {"action": action, "model": model, "webhook": views.webhook(hook)}
            body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "Trello",
                "X-Trello-Webhook": sign(self.secret, body, hook["callbackURL"]),
            }
            meta = {"webhook": hook["id"], "action": action["id"]}
            self.dispatcher.submit(Delivery(hook["callbackURL"], body, headers, meta))

    def on_result(self, delivery: Delivery, status: int | None) -> bool:
        """Keep the failure counters; False stops retrying (webhook gone, deleted or deactivated)."""
        with self.lock:
            hook = self.state.webhooks.get(delivery.meta.get("webhook", ""))
            if hook is None:
                return False
            if status == 410:
                del self.state.webhooks[hook["id"]]
                return False
            if status is not None and 200 <= status < 300:
                hook["consecutiveFailures"] = 0
                hook["firstConsecutiveFailDate"] = None
                return True
            hook["consecutiveFailures"] += 1
            if hook["firstConsecutiveFailDate"] is None:
                hook["firstConsecutiveFailDate"] = now_iso()
            failing_for = datetime.now(UTC) - parse_date(hook["firstConsecutiveFailDate"])
            limit = self.deactivate_after_failures
            if (limit is not None and hook["consecutiveFailures"] >= limit) or failing_for >= timedelta(
                days=self.deactivate_after_days
            ):
                hook["active"] = False
                return False
            return bool(hook["active"])

    # -- registration ----------------------------------------------------------------------------
    async def head_check(self, url: str) -> None:
        """Trello's check of a new callback URL: anything but 200 refuses it."""
        got: str
        try:
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
                response = await client.head(url)
            if response.status_code == 200:
                return
            got = str(response.status_code)
        except httpx.HTTPError:
            got = "no response"
        raise TrelloError(400, f"URL ({url}) did not return 200 status code, got {got}")

    def _model_id(self, call: Call, ident: str | None) -> str:
        state = self.state
        if not ident:
            raise invalid_value("idModel")
        found = state.short_links.get(ident, ident)
        if found in state.boards:
            access.require_board(call, found)
        elif found in state.cards:
            access.require_board(call, state.cards[found]["idBoard"])
        elif found in state.lists:
            access.require_board(call, state.lists[found]["idBoard"])
        elif found not in state.members:
            raise invalid_value("idModel")
        return found

    def _url(self, call: Call) -> str:
        url = call.text("callbackURL")
        if not url or not url.startswith(("http://", "https://")):
            raise invalid_value("callbackURL")
        return url

    def _description(self, call: Call) -> str:
        text = call.text("description") or ""
        if len(text) > MAX_DESCRIPTION:
            raise invalid_value("description")
        return text

    def _duplicate(self, token: str, url: str, model: str, but: str | None = None) -> bool:
        return any(
            h["_token"] == token and h["callbackURL"] == url and h["idModel"] == model and h["id"] != but
            for h in self.state.webhooks.values()
        )

    def owned(self, call: Call, ident: str) -> Record:
        hook = self.state.webhook(ident)
        if hook["_token"] != call.token:
            raise TrelloError(401, "webhook does not belong to token")
        return hook

    async def create(self, call: Call) -> Any:
        with self.lock:
            url = self._url(call)
            model = self._model_id(call, call.text("idModel"))
            description = self._description(call)
            active = call.flag("active", True)
            if self._duplicate(call.token, url, model):
                raise TrelloError(400, DUPLICATE)
        await self.head_check(url)
        with self.lock:
            if self._duplicate(call.token, url, model):
                raise TrelloError(400, DUPLICATE)
            hook: Record = {
                "id": object_id(),
                "description": description,
                "idModel": model,
                "callbackURL": url,
                "active": active,
                "consecutiveFailures": 0,
                "firstConsecutiveFailDate": None,
                "_token": call.token,
            }
            self.state.webhooks[hook["id"]] = hook
            return views.webhook(hook)

    async def update(self, call: Call) -> Any:
        with self.lock:
            hook = self.owned(call, call.args["webhook"])
            url = self._url(call) if call.has("callbackURL") else hook["callbackURL"]
            model = self._model_id(call, call.text("idModel")) if call.has("idModel") else hook["idModel"]
            description = self._description(call) if call.has("description") else hook["description"]
            active = call.flag("active") if call.has("active") else hook["active"]
        if url != hook["callbackURL"]:
            await self.head_check(url)
        with self.lock:
            hook = self.owned(call, call.args["webhook"])
            if self._duplicate(call.token, url, model, but=hook["id"]):
                raise TrelloError(400, DUPLICATE)
            hook.update(callbackURL=url, idModel=model, description=description, active=active)
            if active:
                hook["consecutiveFailures"] = 0
                hook["firstConsecutiveFailDate"] = None
            return views.webhook(hook)

    def get(self, call: Call) -> Any:
        return views.webhook(self.owned(call, call.args["webhook"]))

    def field(self, call: Call) -> Any:
        body = views.webhook(self.owned(call, call.args["webhook"]))
        if call.args["field"] not in body:
            raise TrelloError(404, f"Cannot GET /1{call.path}")
        return {"_value": body[call.args["field"]]}

    def delete(self, call: Call) -> Any:
        hook = self.owned(call, call.args["webhook"])
        del self.state.webhooks[hook["id"]]
        return {"_value": None}

    def of_token(self, call: Call) -> Any:
        self._token(call)
        return [views.webhook(h) for h in self.state.webhooks.values() if h["_token"] == call.token]

    def revoke(self, token: str) -> None:
        """Revoke ``token``: it stops working and its webhooks are deleted."""
        self.state.tokens.pop(token, None)
        for ident in [k for k, h in self.state.webhooks.items() if h["_token"] == token]:
            del self.state.webhooks[ident]

    # -- tokens ------------------------------------------------------------------------------------
    def _token(self, call: Call) -> Record:
        token = call.args["token"]
        if token != call.token:
            raise TrelloError(401, "unauthorized permission requested")
        return self.state.tokens[token]

    def get_token(self, call: Call) -> Any:
        rec = self._token(call)
        return {
            "id": rec["id"],
            "identifier": rec.get("identifier", "crmsync sandbox"),
            "idMember": rec["idMember"],
            "dateCreated": rec["dateCreated"],
            "dateExpires": None,
            "permissions": [
                {"idModel": "*", "modelType": "Board", "read": True, "write": True},
                {"idModel": "*", "modelType": "Organization", "read": True, "write": True},
            ],
        }

    def token_member(self, call: Call) -> Any:
        rec = self._token(call)
        return views.member(self.state, self.state.members[rec["idMember"]], full=True)

    def delete_token(self, call: Call) -> Any:
        self._token(call)
        self.revoke(call.token)
        return {"_value": None}

    async def create_for_token(self, call: Call) -> Any:
        with self.lock:
            self._token(call)
        return await self.create(call)

    def register(self, router: Router) -> None:
        router.add_async("POST", "/webhooks", self.create)
        router.add("GET", "/webhooks/{webhook}", self.get)
        router.add_async("PUT", "/webhooks/{webhook}", self.update)
        router.add("DELETE", "/webhooks/{webhook}", self.delete)
        router.add("GET", "/webhooks/{webhook}/{field}", self.field)
        router.add("GET", "/tokens/{token}", self.get_token)
        router.add("DELETE", "/tokens/{token}", self.delete_token)
        router.add("GET", "/tokens/{token}/member", self.token_member)
        router.add("GET", "/tokens/{token}/webhooks", self.of_token)
        router.add_async("POST", "/tokens/{token}/webhooks", self.create_for_token)
        router.add("GET", "/tokens/{token}/webhooks/{webhook}", self.get)
        router.add_async("PUT", "/tokens/{token}/webhooks/{webhook}", self.update)
        router.add("DELETE", "/tokens/{token}/webhooks/{webhook}", self.delete)
