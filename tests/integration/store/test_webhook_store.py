"""What the webhook receiver keeps in the store, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from crmsync.store import Store
from crmsync.store import webhooks as receivers


def test_a_connection_gets_one_secret_and_counts_its_refusals(store: Store) -> None:
    made: list[str] = []

    def make() -> None:
        made.append(receivers.receiver(store, "monday").url_secret)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 1 and len(made[0]) >= 43
    assert receivers.record_refusal(store, "monday", "bad signature") == 1
    assert receivers.record_refusal(store, "monday", "no Authorization header") == 2
    receivers.set_callback_url(store, "monday", "https://crmsync.example.org/webhooks/monday/monday")
    [held] = receivers.receivers(store)
    assert (held.refused, held.refused_reason) == (2, "no Authorization header")
    assert held.callback_url == "https://crmsync.example.org/webhooks/monday/monday"
    assert held.url_secret == made[0]


def test_a_token_is_bound_to_its_first_body_until_it_expires(store: Store) -> None:
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert receivers.use_token(store, "t" * 64, "a" * 64, later)
    assert receivers.use_token(store, "t" * 64, "a" * 64, later)  # the same delivery, resent
    assert not receivers.use_token(store, "t" * 64, "b" * 64, later)  # another body
    assert receivers.use_token(store, "u" * 64, "b" * 64, later)


def test_field_times_only_move_forward(store: Store) -> None:
    t0 = datetime(2026, 12, 1, 12, 0, 0, 10_000, tzinfo=UTC)
    newer = t0 + timedelta(milliseconds=10)
    assert receivers.newer_fields(store, "monday", "42", {"phone": newer}) == {"phone"}
    assert receivers.newer_fields(store, "monday", "42", {"phone": t0, "email": t0}) == {"email"}
    assert receivers.newer_fields(store, "monday", "42", {"phone": newer}) == {"phone"}  # resent
    receivers.forget_item(store, "monday", "42")
    assert receivers.newer_fields(store, "monday", "42", {"phone": t0}) == {"phone"}
