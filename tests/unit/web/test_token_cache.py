"""Verified API tokens are known for a few seconds: no store read per request, yet a revoked token
is refused at once when revoked by this process, and within the cache's seconds otherwise."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from crmsync.store import Store, schema, tokens
from crmsync.web.auth import TokenCache
from crmsync.web.errors import ApiError

from .conftest import MakeRuntime, OpenClient
from .test_ingest import CONFIG


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens the store was asked about."""
    seen: list[str] = []
    verify = tokens.verify_token

    def counting(db: object, token: str) -> str | None:
        seen.append(token)
        return verify(db, token)  # type: ignore[arg-type]

    monkeypatch.setattr(tokens, "verify_token", counting)
    return seen


def revoke_elsewhere(store: Store, name: str) -> None:
    """What ``crmsync token revoke`` does from another process: this one is not told."""
    with store.begin() as conn:
        conn.execute(
            sa.update(schema.api_tokens)
            .where(schema.api_tokens.c.name == name)
            .values(revoked_at=schema.utcnow())
        )


def test_a_verified_token_is_known_without_asking_the_store_until_its_seconds_pass(
    store: Store, asked: list[str]
) -> None:
    token = tokens.create_token(store, "shop")
    clock = Clock()
    cache = TokenCache(store, 5.0, clock=clock)
    assert cache.cached(token) is None
    assert cache.authenticate(token) == "shop" and len(asked) == 1
    assert cache.cached(token) == "shop" and cache.authenticate(token) == "shop" and len(asked) == 1
    assert token not in repr(cache._known)  # its sha256 only
    clock.now += 5.0
    assert cache.cached(token) is None
    assert cache.authenticate(token) == "shop" and len(asked) == 2


def test_a_token_revoked_by_this_process_is_refused_at_once(store: Store) -> None:
    token = tokens.create_token(store, "shop")
    cache = TokenCache(store, 60.0)
    assert cache.authenticate(token) == "shop"
    assert tokens.revoke_token(store, "shop")
    assert cache.cached(token) is None
    with pytest.raises(ApiError) as refused:
        cache.authenticate(token)
    assert refused.value.status == 401


def test_a_token_revoked_by_another_process_is_refused_once_the_seconds_pass(store: Store) -> None:
    token = tokens.create_token(store, "shop")
    clock = Clock()
    cache = TokenCache(store, 5.0, clock=clock)
    assert cache.authenticate(token) == "shop"
    revoke_elsewhere(store, "shop")
    clock.now += 4.9
    assert cache.authenticate(token) == "shop"  # within the cache's seconds, as documented
    clock.now += 0.1
    with pytest.raises(ApiError):
        cache.authenticate(token)


def test_unknown_tokens_are_not_kept_and_zero_seconds_asks_every_time(store: Store, asked: list[str]) -> None:
    token = tokens.create_token(store, "shop")
    cache = TokenCache(store, 5.0)
    wrong = tokens.PREFIX + "x" * (tokens.TOKEN_LENGTH - len(tokens.PREFIX))
    for _ in range(2):
        with pytest.raises(ApiError):
            cache.authenticate(wrong)
    assert asked == [wrong, wrong] and cache.cached(wrong) is None
    off = TokenCache(store, 0)
    for _ in range(3):
        assert off.authenticate(token) == "shop"
    assert asked[2:] == [token] * 3 and off.cached(token) is None


def test_the_api_asks_the_store_about_a_token_once_and_refuses_it_once_revoked(
    asked: list[str], make_runtime: MakeRuntime, open_client: OpenClient
) -> None:
    runtime = make_runtime(CONFIG)
    token = tokens.create_token(runtime.store, "shop")
    client = open_client(runtime, bearer=token)
    for i in range(5):
        r = client.post("/api/v1/flows/orders/records", content=json.dumps({"key": f"o{i}"}))
        assert r.status_code == 202, r.text
    assert asked == [token]
    assert tokens.revoke_token(runtime.store, "shop")
    r = client.post("/api/v1/flows/orders/records", content=json.dumps({"key": "late"}))
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
