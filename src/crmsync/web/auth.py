"""Bearer-token authentication for the API (tokens from ``crmsync token create``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from starlette.requests import Request

from crmsync.store import tokens
from crmsync.store.db import Store
from crmsync.web.errors import ApiError


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "missing bearer token: send 'Authorization: Bearer <token>'")
    return token.strip()


def authenticate(store: Store, token: str) -> str:
    """The token's name; raises 401 for an unknown or revoked token. Blocking: call from a thread."""
    name = tokens.verify_token(store, token)
    if name is None:
        raise ApiError(401, "unauthorized", "invalid or revoked token")
    return name


class TokenCache:
    """Tokens verified in the last ``seconds``, so that a request whose token is known is
    authenticated on the event loop, without a thread or a store read.

    Only valid tokens are kept (at most ``size``), keyed by their sha256 (the token itself is not
    kept). A token revoked in this process is refused at once (the cache empties); revoked by
    another process (``crmsync token revoke``), within ``seconds``. ``last_used_at`` is still
    written by the verification each ``seconds``. ``seconds`` of 0 turns the cache off.
    """

    def __init__(
        self, store: Store, seconds: float, *, size: int = 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.seconds = seconds
        self.size = size
        self.clock = clock
        self._known: dict[str, tuple[str, float]] = {}  # digest -> (name, trusted until)
        self._revocations = tokens.revocations()
        self._lock = threading.Lock()

    def cached(self, token: str) -> str | None:
        """The token's name if it was verified less than ``seconds`` ago (never blocks)."""
        if self.seconds <= 0 or len(token) != tokens.TOKEN_LENGTH:
            return None
        digest = tokens.token_digest(token)
        with self._lock:
            if self._revocations != tokens.revocations():
                self._known.clear()
                self._revocations = tokens.revocations()
                return None
            hit = self._known.get(digest)
            if hit is None:
                return None
            if hit[1] <= self.clock():
                del self._known[digest]
                return None
            return hit[0]

    def authenticate(self, token: str) -> str:
        """The token's name: from the cache, else verified in the store (blocking: call from a thread).
        Raises 401 for an unknown or revoked token."""
        name = self.cached(token)
        if name is not None:
            return name
        with self._lock:
            revocations = self._revocations
        name = authenticate(self.store, token)
        if self.seconds > 0:
            with self._lock:
                # a revoke while the store was asked: the answer may be older than it, so not kept
                if revocations == self._revocations == tokens.revocations():
                    if len(self._known) >= self.size:
                        self._known.clear()
                    self._known[tokens.token_digest(token)] = (name, self.clock() + self.seconds)
        return name
