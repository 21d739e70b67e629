"""The dashboard's users: argon2 hashes, roles, a lockout after wrong passwords, sessions ended."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from crmsync.store import Store, users
from crmsync.store.schema import utcnow


@pytest.fixture
def store(tmp_path: Path) -> Store:
    found = Store(f"sqlite:///{tmp_path}/u.db")
    found.upgrade()
    return found


def test_a_password_is_hashed_with_argon2_and_checked(store: Store) -> None:
    assert users.add_user(store, "ada", "correct horse battery", "admin")
    with store.read() as conn:
        stored = conn.exec_driver_sql("SELECT password_hash FROM dashboard_users").scalar_one()
    assert stored.startswith("$argon2id$") and "correct" not in stored
    assert users.log_in(store, "ada", "correct horse battery").user == users.User("ada", "admin", 1)
    assert users.log_in(store, "ada", "wrong").user is None
    assert users.log_in(store, "nobody", "correct horse battery").user is None


def test_wrong_passwords_lock_the_user_out_for_a_while(store: Store) -> None:
    users.add_user(store, "ada", "correct horse battery", "viewer")
    now = utcnow()
    for _ in range(users.MAX_FAILED):
        assert users.log_in(store, "ada", "guess", now).user is None
    locked = users.log_in(store, "ada", "correct horse battery", now)
    assert locked.user is None and locked.locked_until == now + users.LOCKOUT
    later = now + users.LOCKOUT + timedelta(seconds=1)
    assert users.log_in(store, "ada", "correct horse battery", later).user is not None


def test_a_new_password_or_a_logout_ends_the_sessions(store: Store) -> None:
    users.add_user(store, "ada", "correct horse battery", "viewer")
    assert not users.add_user(store, "ada", "another long password", "admin")
    assert users.get_user(store, "ada") == users.User("ada", "admin", 2)
    users.end_sessions(store, "ada")
    assert users.get_user(store, "ada") == users.User("ada", "admin", 3)
    assert users.web_key(store, "k") == users.web_key(store, "k")
