"""The dashboard's sessions, CSRF protection and login rate limit.

A session is a signed cookie (itsdangerous, with a key kept in the store so that every replica
reads every cookie): the user's name, the user's ``session_epoch`` and a random nonce; HttpOnly,
SameSite=Strict, Secure over HTTPS, valid :data:`SESSION_HOURS`. Each request reads the user
again, so a removed user, a new password or a logout (the epoch moves on) ends the session on
every replica. The CSRF token is an HMAC of the nonce: every form carries it in a hidden field
and every state-changing JSON call in the ``X-CSRF-Token`` header; a request without the right
one is refused 403. Logins are limited per user (a lockout in the store, :mod:`crmsync.store.users`)
and per client address (:class:`LoginLimiter`, in this process).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from crmsync.store import users
from crmsync.store.db import Store

COOKIE = "crmsync_session"
SESSION_HOURS = 12
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Session:
    user: str
    role: users.Role
    csrf: str

    @property
    def admin(self) -> bool:
        return self.role == "admin"


class Sessions:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._key: str | None = None
        self._lock = threading.Lock()

    def key(self) -> str:
        with self._lock:
            if self._key is None:
                self._key = users.web_key(self.store, "dashboard-session")
            return self._key

    def _serializer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.key(), salt="crmsync-dashboard")

    def _csrf(self, nonce: str) -> str:
        return hmac.new(self.key().encode(), f"csrf:{nonce}".encode(), hashlib.sha256).hexdigest()

    def issue(self, response: Response, user: users.User, *, secure: bool) -> None:
        value = self._serializer().dumps(
            {"u": user.name, "e": user.session_epoch, "n": secrets.token_urlsafe(16)}
        )
        response.set_cookie(
            COOKIE,
            value,
            max_age=SESSION_HOURS * 3600,
            httponly=True,
            samesite="strict",
            secure=secure,
            path="/",
        )

    @staticmethod
    def clear(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")

    def read(self, request: Request) -> Session | None:
        """The request's session, or None (no cookie, a bad or old signature, an ended session).
        Blocking (reads the user): call from a worker thread."""
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data = self._serializer().loads(raw, max_age=SESSION_HOURS * 3600)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        user = users.get_user(self.store, str(data.get("u")))
        if user is None or user.session_epoch != data.get("e"):
            return None
        return Session(user.name, user.role, self._csrf(str(data.get("n"))))

    @staticmethod
    def csrf_ok(session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(session.csrf, str(given))


class LoginLimiter:
    """At most ``attempts`` login attempts per client address in ``window`` seconds (this process)."""

    def __init__(self, attempts: int = 10, window: float = 60.0) -> None:
        self.attempts, self.window = attempts, window
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > 10_000:  # forget idle addresses
                self._seen = {k: v for k, v in self._seen.items() if v and v[-1] > now - self.window}
            seen = self._seen.setdefault(client, deque())
            while seen and seen[0] <= now - self.window:
                seen.popleft()
            if len(seen) >= self.attempts:
                return False
            seen.append(now)
            return True
