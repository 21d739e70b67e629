"""Bearer-token authentication for the API (tokens from ``crmsync token create``)."""

from __future__ import annotations

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
