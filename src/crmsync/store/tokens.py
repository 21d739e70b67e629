"""API tokens: ``cs_`` followed by 40 URL-safe characters, shown once at creation.

Only the token's sha256 is stored, with its first 8 characters for display and lookup; the
hashes are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from crmsync.store.db import StoreOrConnection, connection
from crmsync.store.schema import api_tokens, utcnow

PREFIX = "cs_"
TOKEN_LENGTH = len(PREFIX) + 40
TOUCH_EVERY = timedelta(seconds=60)  # last_used_at is refreshed at most this often

_revoked_here = 0  # tokens revoked by this process (see revocations())
_revoked_lock = threading.Lock()


@dataclass(frozen=True)
class TokenInfo:
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_digest(token: str) -> str:
    """The token's sha256, as stored (what a cache of verified tokens keys on, never the token)."""
    return _hash(token)


def revocations() -> int:
    """How many tokens this process revoked so far: a cache of verified tokens that saw this
    number change forgets what it knew."""
    return _revoked_here


def create_token(db: StoreOrConnection, name: str) -> str:
    """A new token named ``name``; returns the plaintext, which is never stored."""
    if not name or len(name) > 100:
        raise ValueError("a token name is 1 to 100 characters")
    token = PREFIX + secrets.token_urlsafe(30)
    assert len(token) == TOKEN_LENGTH
    row = {"name": name, "token_hash": _hash(token), "prefix": token[:8], "created_at": utcnow()}
    try:
        with connection(db) as conn, conn.begin_nested():
            conn.execute(sa.insert(api_tokens).values(**row))
    except IntegrityError as exc:
        raise ValueError(f"a token named {name!r} already exists") from exc
    return token


def verify_token(db: StoreOrConnection, token: str) -> str | None:
    """The name of the valid (unrevoked) token, or None; records when it was last used.

    The check is a read (on SQLite it does not take the write lock, so concurrent requests are not
    serialised by it); ``last_used_at`` is written at most every :data:`TOUCH_EVERY`."""
    if len(token) != TOKEN_LENGTH or not token.startswith(PREFIX):
        return None
    digest = _hash(token)
    now = utcnow()
    t = api_tokens.c
    with connection(db, write=False) as conn:
        rows = conn.execute(
            sa.select(t.id, t.name, t.token_hash, t.last_used_at).where(
                t.prefix == token[:8], t.revoked_at.is_(None)
            )
        ).all()
    match = None
    for row in rows:
        if hmac.compare_digest(row.token_hash, digest):
            match = row
    if match is None:
        return None
    if match.last_used_at is None or now - match.last_used_at >= TOUCH_EVERY:
        with connection(db) as conn:
            conn.execute(sa.update(api_tokens).where(t.id == match.id).values(last_used_at=now))
    return str(match.name)


def list_tokens(db: StoreOrConnection) -> list[TokenInfo]:
    t = api_tokens.c
    with connection(db, write=False) as conn:
        rows = conn.execute(
            sa.select(t.name, t.prefix, t.created_at, t.revoked_at, t.last_used_at).order_by(t.name)
        )
        return [TokenInfo(**r._mapping) for r in rows]


def revoke_token(db: StoreOrConnection, name: str) -> bool:
    """Revoke the token named ``name``; False if there is no such unrevoked token."""
    global _revoked_here
    t = api_tokens.c
    with connection(db) as conn:
        result = conn.execute(
            sa.update(api_tokens).where(t.name == name, t.revoked_at.is_(None)).values(revoked_at=utcnow())
        )
        revoked = bool(result.rowcount)
    if revoked:
        with _revoked_lock:
            _revoked_here += 1
    return revoked
