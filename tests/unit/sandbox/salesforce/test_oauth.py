"""The token endpoint: every grant, its reply shape and its errors."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.sandbox.tls import Materials, ensure_materials

TOKEN = "/services/oauth2/token"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Materials:
    return ensure_materials(tmp_path_factory.mktemp("oauth-keys"))


@pytest.fixture
def em(keys: Materials) -> SalesforceEmulator:
    return SalesforceEmulator(materials=keys)


@pytest.fixture
def http(em: SalesforceEmulator) -> Iterator[TestClient]:
    em.on_bound("https://testserver")
    with TestClient(em.app(), base_url="https://testserver") as c:
        yield c


def _assertion(keys: Materials, em: SalesforceEmulator, **overrides: Any) -> str:
    creds = em.credentials()
    claims = {
        "iss": creds["SALESFORCE_CLIENT_ID"],
        "sub": creds["SALESFORCE_USERNAME"],
        "aud": "https://login.salesforce.com",
        "exp": int(time.time()) + 170,
        **overrides,
    }
    return jwt.encode(claims, Path(keys.jwt_key_file).read_bytes(), algorithm="RS256")


def _oauth_error(reply: Any, error: str, description: str) -> None:
    assert reply.status_code == 400
    assert reply.json() == {"error": error, "error_description": description}


def test_jwt_bearer_reply_shape(http: TestClient, em: SalesforceEmulator, keys: Materials) -> None:
    reply = http.post(TOKEN, data={"grant_type": JWT_GRANT, "assertion": _assertion(keys, em)})
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"access_token", "scope", "instance_url", "id", "token_type"}
    assert body["instance_url"] == "https://testserver" and body["token_type"] == "Bearer"
    assert body["access_token"].startswith("00D")
    ok = http.get("/services/data/v66.0/limits", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("overrides", "error", "description"),
    [
        ({"aud": "https://example.com"}, "invalid_grant", "audience is invalid"),
        ({"exp": int(time.time()) - 10}, "invalid_grant", "invalid assertion"),
        ({"exp": int(time.time()) + 3600}, "invalid_grant", "invalid assertion"),
        ({"iss": "someone-else"}, "invalid_client_id", "client identifier invalid"),
        ({"sub": "nobody@example.com"}, "invalid_grant", "user hasn't approved this consumer"),
    ],
)
def test_jwt_bearer_errors(
    http: TestClient,
    em: SalesforceEmulator,
    keys: Materials,
    overrides: dict[str, Any],
    error: str,
    description: str,
) -> None:
    reply = http.post(TOKEN, data={"grant_type": JWT_GRANT, "assertion": _assertion(keys, em, **overrides)})
    _oauth_error(reply, error, description)


def test_jwt_with_this_servers_audience_and_a_foreign_key(
    http: TestClient, em: SalesforceEmulator, keys: Materials, tmp_path: Path
) -> None:
    own = http.post(TOKEN, data={"grant_type": JWT_GRANT, "assertion": _assertion(keys, em, aud=em.base_url)})
    assert own.status_code == 200
    other = ensure_materials(tmp_path)
    forged = jwt.encode(
        {
            "iss": em.credentials()["SALESFORCE_CLIENT_ID"],
            "sub": "admin@crmsync.sandbox",
            "aud": "https://login.salesforce.com",
            "exp": int(time.time()) + 100,
        },
        other.jwt_key_file.read_bytes(),
        algorithm="RS256",
    )
    _oauth_error(
        http.post(TOKEN, data={"grant_type": JWT_GRANT, "assertion": forged}),
        "invalid_grant",
        "invalid assertion",
    )


def test_client_credentials_body_and_basic(http: TestClient, em: SalesforceEmulator) -> None:
    creds = em.credentials()
    cid, secret = creds["SALESFORCE_CLIENT_ID"], creds["SALESFORCE_CLIENT_SECRET"]
    body = http.post(
        TOKEN, data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret}
    )
    assert body.status_code == 200 and "signature" in body.json() and "issued_at" in body.json()
    basic = base64.b64encode(f"{cid}:{secret}".encode()).decode()
    with_basic = http.post(
        TOKEN, data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert with_basic.status_code == 200
    wrong = http.post(
        TOKEN, data={"grant_type": "client_credentials", "client_id": cid, "client_secret": "x"}
    )
    _oauth_error(wrong, "invalid_client", "invalid client credentials")
    unknown = http.post(
        TOKEN, data={"grant_type": "client_credentials", "client_id": "x", "client_secret": "x"}
    )
    _oauth_error(unknown, "invalid_client_id", "client identifier invalid")


def test_password_and_refresh_token(http: TestClient, em: SalesforceEmulator) -> None:
    creds = em.credentials()
    form = {
        "grant_type": "password",
        "client_id": creds["SALESFORCE_CLIENT_ID"],
        "client_secret": creds["SALESFORCE_CLIENT_SECRET"],
        "username": creds["SALESFORCE_USERNAME"],
        "password": creds["SALESFORCE_PASSWORD"],
    }
    first = http.post(TOKEN, data=form).json()
    assert {"access_token", "refresh_token", "instance_url", "id", "issued_at", "signature"} <= set(first)
    _oauth_error(
        http.post(TOKEN, data={**form, "password": "wrong"}), "invalid_grant", "authentication failure"
    )
    refreshed = http.post(
        TOKEN,
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": creds["SALESFORCE_CLIENT_ID"],
        },
    )
    assert refreshed.status_code == 200 and refreshed.json()["access_token"] != first["access_token"]
    stale = http.post(
        TOKEN,
        data={
            "grant_type": "refresh_token",
            "refresh_token": "nope",
            "client_id": creds["SALESFORCE_CLIENT_ID"],
        },
    )
    _oauth_error(stale, "invalid_grant", "expired access/refresh token")


def test_unsupported_grant_type(http: TestClient) -> None:
    _oauth_error(
        http.post(TOKEN, data={"grant_type": "magic"}), "unsupported_grant_type", "grant type not supported"
    )


def test_credentials_keys(em: SalesforceEmulator, keys: Materials) -> None:
    creds = em.credentials()
    assert creds["SALESFORCE_JWT_KEY_FILE"] == str(keys.jwt_key_file)
    assert creds["SALESFORCE_CA_FILE"] == str(keys.ca_file)
    assert creds["SALESFORCE_INSTANCE_URL"] == creds["SALESFORCE_LOGIN_URL"] == em.base_url
