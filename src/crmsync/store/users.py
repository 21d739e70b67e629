"""The dashboard's users: a name, an argon2 hash of the password, a role, and the login state.

::

    viewer   sees every page and its JSON
    admin    also replays and discards dead letters, runs jobs and edits the settings

``session_epoch`` is part of every session cookie: raising it (a new password, ``crmsync users
remove``) ends the user's sessions on every replica. After :data:`MAX_FAILED` wrong passwords
in a row a user is locked out for :data:`LOCKOUT` (kept in the store: every replica honours it).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from crmsync.store.db import StoreOrConnection, connection
from crmsync.store.schema import dashboard_users, utcnow, web_keys

Role = Literal["viewer", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "admin")
MAX_FAILED = 5
LOCKOUT = timedelta(minutes=5)

_hasher = PasswordHasher()
#: verified against when the user does not exist, so that a wrong name costs as long as a wrong password
_DUMMY_HASH = _hasher.hash("not a password")


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    session_epoch: int


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    #: set when the name is locked out: until when
    locked_until: datetime | None = None


def add_user(db: StoreOrConnection, name: str, password: str, role: Role) -> bool:
    """Create ``name``, or set its password and role (ending its sessions); True if it is new."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; valid: {', '.join(ROLES)}")
    hashed = _hasher.hash(password)
    c = dashboard_users.c
    with connection(db) as conn:
        row = conn.execute(sa.select(c.session_epoch).where(c.name == name)).first()
        if row is None:
            conn.execute(
                sa.insert(dashboard_users).values(
                    name=name,
                    password_hash=hashed,
                    role=role,
                    created_at=utcnow(),
                    session_epoch=1,
                    failed_logins=0,
                )
            )
            return True
        conn.execute(
            sa.update(dashboard_users)
            .where(c.name == name)
            .values(password_hash=hashed, role=role, session_epoch=row.session_epoch + 1, failed_logins=0)
        )
    return False


def remove_user(db: StoreOrConnection, name: str) -> bool:
    with connection(db) as conn:
        return bool(conn.execute(sa.delete(dashboard_users).where(dashboard_users.c.name == name)).rowcount)


def list_users(db: StoreOrConnection) -> list[User]:
    c = dashboard_users.c
    with connection(db, write=False) as conn:
        rows = conn.execute(sa.select(c.name, c.role, c.session_epoch).order_by(c.name)).all()
    return [User(r.name, r.role, r.session_epoch) for r in rows]


def get_user(db: StoreOrConnection, name: str) -> User | None:
    c = dashboard_users.c
    with connection(db, write=False) as conn:
        row = conn.execute(sa.select(c.name, c.role, c.session_epoch).where(c.name == name)).first()
    return None if row is None else User(row.name, row.role, row.session_epoch)


def log_in(db: StoreOrConnection, name: str, password: str, now: datetime | None = None) -> LoginResult:
    """Check ``password``; counts failures and locks the name out after :data:`MAX_FAILED`."""
    now = now or utcnow()
    c = dashboard_users.c
    with connection(db, write=False) as conn:
        row = conn.execute(sa.select(dashboard_users).where(c.name == name)).first()
    if row is None:
        _verify(_DUMMY_HASH, password)
        return LoginResult(None)
    if row.locked_until is not None and row.locked_until > now:
        return LoginResult(None, locked_until=row.locked_until)
    if not _verify(row.password_hash, password):
        failed = row.failed_logins + 1
        locked = now + LOCKOUT if failed >= MAX_FAILED else None
        with connection(db) as conn:
            conn.execute(
                sa.update(dashboard_users)
                .where(c.name == name)
                .values(failed_logins=0 if locked else failed, locked_until=locked)
            )
        return LoginResult(None, locked_until=locked)
    with connection(db) as conn:
        conn.execute(
            sa.update(dashboard_users)
            .where(c.name == name)
            .values(failed_logins=0, locked_until=None, last_login_at=now)
        )
    return LoginResult(User(row.name, row.role, row.session_epoch))


def end_sessions(db: StoreOrConnection, name: str) -> None:
    """End every session of ``name`` (logging out ends them on every replica)."""
    c = dashboard_users.c
    with connection(db) as conn:
        conn.execute(
            sa.update(dashboard_users).where(c.name == name).values(session_epoch=c.session_epoch + 1)
        )


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def web_key(db: StoreOrConnection, name: str) -> str:
    """A random key shared by every process of this store (made on first use), e.g. the one
    session cookies are signed with."""
    c = web_keys.c
    with connection(db) as conn:
        row = conn.execute(sa.select(c.value).where(c.name == name)).first()
        if row is not None:
            return str(row.value)
        value = secrets.token_urlsafe(48)
        try:
            with conn.begin_nested():
                conn.execute(sa.insert(web_keys).values(name=name, value=value, created_at=utcnow()))
        except sa.exc.IntegrityError:  # another process made it meanwhile
            return str(conn.execute(sa.select(c.value).where(c.name == name)).scalar_one())
    return value
