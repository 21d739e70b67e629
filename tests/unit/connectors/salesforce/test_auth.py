"""The four token flows, their failures, and what never leaks (secrets)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from pydantic import BaseModel, SecretStr

from crmsync.connectors.salesforce.auth import JWT_GRANT, jwt_audience
from crmsync.connectors.salesforce.client import SalesforceClient
from crmsync.connectors.salesforce.connector import SalesforceConnector
from crmsync.connectors.salesforce.settings import SalesforceSettings
from crmsync.errors import ConfigError, Fatal, RetryLater

INSTANCE = "https://acme.my.salesforce.com"


def make_client(fake: Any, **kw: Any) -> SalesforceClient:
    return SalesforceClient(SalesforceSettings(**kw), transport=httpx.MockTransport(fake))


def test_jwt_bearer_assertion(fake: Any, rsa_key: tuple[Path, bytes]) -> None:
    key_file, public = rsa_key
    client = make_client(
        fake, client_id="3MVG-key", auth="jwt", username="integration@acme.com", private_key_file=key_file
    )
    before = int(time.time())

    token = client.login()

    request = fake.requests[0]
    assert str(request.url) == "https://login.salesforce.com/services/oauth2/token"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = fake.token_forms[0]
    assert form["grant_type"] == JWT_GRANT
    claims = jwt.decode(
        form["assertion"], public, algorithms=["RS256"], audience="https://login.salesforce.com"
    )
    assert claims["iss"] == "3MVG-key"
    assert claims["sub"] == "integration@acme.com"
    assert before + 170 <= claims["exp"] <= int(time.time()) + 180
    assert jwt.get_unverified_header(form["assertion"])["alg"] == "RS256"
    assert token.instance_url == INSTANCE  # the returned instance, not the login host


@pytest.mark.parametrize(
    ("login_url", "audience"),
    [
        ("https://login.salesforce.com", "https://login.salesforce.com"),
        ("https://test.salesforce.com", "https://test.salesforce.com"),
        ("https://acme.my.salesforce.com", "https://login.salesforce.com"),
        ("https://acme--uat.sandbox.my.salesforce.com", "https://test.salesforce.com"),
        ("https://127.0.0.1:8701", "https://127.0.0.1:8701"),
    ],
)
def test_jwt_audience(login_url: str, audience: str, rsa_key: tuple[Path, bytes]) -> None:
    settings = SalesforceSettings(
        client_id="k", username="u", private_key_file=rsa_key[0], login_url=login_url + "/"
    )
    assert jwt_audience(settings) == audience


def test_jwt_audience_can_be_configured(rsa_key: tuple[Path, bytes]) -> None:
    settings = SalesforceSettings(
        client_id="k", username="u", private_key_file=rsa_key[0], jwt_audience="https://aud.example"
    )
    assert jwt_audience(settings) == "https://aud.example"


def test_client_credentials_flow(fake: Any) -> None:
    client = make_client(
        fake, client_id="cid", auth="client_credentials", client_secret="csecret", login_url=INSTANCE
    )
    client.login()
    assert fake.token_forms == [
        {"grant_type": "client_credentials", "client_id": "cid", "client_secret": "csecret"}
    ]
    assert str(fake.requests[0].url) == f"{INSTANCE}/services/oauth2/token"


def test_password_flow(fake: Any) -> None:
    client = make_client(
        fake, client_id="cid", auth="password", client_secret="cs", username="u@x.com", password="pw+token"
    )
    client.login()
    assert fake.token_forms == [
        {
            "grant_type": "password",
            "client_id": "cid",
            "client_secret": "cs",
            "username": "u@x.com",
            "password": "pw+token",
        }
    ]


def test_refresh_token_flow_keeps_a_rotated_token(fake: Any) -> None:
    def rotate(n: int) -> httpx.Response:
        return httpx.Response(
            200, json={"access_token": f"tok-{n}", "instance_url": INSTANCE, "refresh_token": f"refresh-{n}"}
        )

    fake.token_reply = rotate
    client = make_client(fake, client_id="cid", auth="refresh_token", refresh_token="refresh-0")

    client.login()
    client.login()

    assert [f["refresh_token"] for f in fake.token_forms] == ["refresh-0", "refresh-1"]
    assert all(f["grant_type"] == "refresh_token" and "client_secret" not in f for f in fake.token_forms)
    assert client.refresh_token == "refresh-2"


def test_refresh_without_rotation_keeps_the_configured_token(fake: Any) -> None:
    client = make_client(fake, client_id="cid", auth="refresh_token", refresh_token="r0", client_secret="cs")
    client.login()
    client.login()
    assert [f["refresh_token"] for f in fake.token_forms] == ["r0", "r0"]
    assert fake.token_forms[0]["client_secret"] == "cs"


@pytest.mark.parametrize(
    ("error", "description"),
    [
        ("invalid_grant", "authentication failure"),
        ("invalid_grant", "user hasn't approved this consumer"),
        ("invalid_client_id", "client identifier invalid"),
        ("invalid_client", "invalid client credentials"),
        ("unsupported_grant_type", "grant type not supported"),
        ("inactive_user", "user is inactive"),
    ],
)
def test_refused_login_is_fatal_with_the_vendor_reason_and_no_secret(
    fake: Any, error: str, description: str
) -> None:
    fake.token_reply = lambda _n: httpx.Response(400, json={"error": error, "error_description": description})
    client = make_client(
        fake,
        client_id="cid",
        auth="password",
        client_secret="TOPSECRET",
        username="u",
        password="PASSWORD123",
    )
    with pytest.raises(Fatal) as caught:
        client.login()
    err = caught.value
    assert err.vendor_code == error
    assert description in err.message
    text = f"{err} {err.message} {err.to_dict()} {err.details!r}"
    assert "TOPSECRET" not in text and "PASSWORD123" not in text


def test_login_rate_limit_and_outage_retry_later(fake: Any) -> None:
    replies = iter(
        [
            httpx.Response(
                400, json={"error": "rate_limit_exceeded", "error_description": "too many logins"}
            ),
            httpx.Response(503, text="<html>maintenance</html>"),
        ]
    )
    fake.token_reply = lambda _n: next(replies)
    client = make_client(fake, client_id="cid", auth="client_credentials", client_secret="cs")
    with pytest.raises(RetryLater, match="too many logins"):
        client.login()
    with pytest.raises(RetryLater, match="503"):
        client.login()


def test_unreachable_login_host_retries_later(settings: SalesforceSettings) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no route to host")

    client = SalesforceClient(settings, transport=httpx.MockTransport(handler))
    with pytest.raises(RetryLater) as caught:
        client.login()
    assert caught.value.url == f"{settings.login_url}/services/oauth2/token"


def test_first_request_logs_in_and_sends_the_bearer_and_client_headers(client: Any, fake: Any) -> None:
    fake.route("GET", r"/limits$", fake.reply(200, {}))
    client.limits()
    request = fake.data_requests()[0]
    assert str(request.url) == f"{INSTANCE}/services/data/v66.0/limits"
    assert request.headers["Authorization"] == "Bearer tok-1"
    assert request.headers["Sforce-Call-Options"] == "client=crmsync"


def test_check_is_fatal_on_bad_credentials(fake: Any, settings: SalesforceSettings) -> None:
    fake.token_reply = lambda _n: httpx.Response(
        400, json={"error": "invalid_client", "error_description": "invalid client credentials"}
    )
    client = SalesforceClient(settings, transport=httpx.MockTransport(fake))
    with pytest.raises(Fatal, match="invalid client credentials"):
        SalesforceConnector("sf", settings=settings, client=client).check()
    assert fake.data_requests() == []


def test_check_makes_one_cheap_call(connector: Any, fake: Any) -> None:
    fake.route("GET", r"/limits$", fake.reply(200, {"DailyApiRequests": {"Max": 15000, "Remaining": 14000}}))
    connector.check()
    assert [r.url.path for r in fake.data_requests()] == ["/services/data/v66.0/limits"]


def test_missing_or_unreadable_key_file_is_a_config_error(fake: Any, tmp_path: Path) -> None:
    client = make_client(fake, client_id="k", username="u", private_key_file=tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match=r"missing\.pem"):
        client.login()
    (tmp_path / "junk.pem").write_text("not a key")
    client = make_client(fake, client_id="k", username="u", private_key_file=tmp_path / "junk.pem")
    with pytest.raises(ConfigError, match="no usable RSA key"):
        client.login()


# -- settings ----------------------------------------------------------------------------------


def test_settings_repr_redacts_secrets() -> None:
    settings = SalesforceSettings(
        client_id="cid",
        auth="password",
        client_secret="CS-1",
        username="u",
        password="PW-1",
        refresh_token="RT",
    )
    text = repr(settings)
    assert "CS-1" not in text and "PW-1" not in text and "RT'" not in text
    assert "client_id='cid'" in text and "password='**********'" in text


@pytest.mark.parametrize(
    ("kw", "problem"),
    [
        ({"auth": "jwt"}, "needs username, private_key_file"),
        ({"auth": "client_credentials"}, "needs client_secret"),
        ({"auth": "password", "client_secret": "s"}, "needs username, password"),
        ({"auth": "refresh_token"}, "needs refresh_token"),
        ({"auth": "saml", "client_secret": "s"}, "auth must be one of"),
        (
            {"auth": "client_credentials", "client_secret": "s", "login_url": "login.salesforce.com"},
            "http(s) URL",
        ),
        ({"auth": "client_credentials", "client_secret": "s", "daily_limit_guard": 1.5}, "between 0 and 1"),
    ],
)
def test_settings_are_validated(kw: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SalesforceSettings(client_id="cid", **kw)
    assert any(problem in p for p in caught.value.problems)


class ConnectionModel(BaseModel):
    """Shaped like the config file's ``SalesforceConnection``."""

    type: str = "salesforce"
    auth: str = "client_credentials"
    login_url: str = "https://acme.my.salesforce.com/"
    instance_url: str | None = None
    client_id: str = "cid"
    client_secret: SecretStr | None = SecretStr("from-config")
    username: str | None = None
    password: SecretStr | None = None
    private_key_file: Path | None = None
    refresh_token: SecretStr | None = None
    ca_file: Path | None = None
    api_version: str = "v64.0"
    timeout_seconds: float = 7.5
    client_name: str = "crmsync-test"
    daily_limit_guard: float = 0.8


def test_from_config_reads_the_connection_model() -> None:
    connector = SalesforceConnector.from_config("crm", ConnectionModel())
    s = connector.settings
    assert connector.name == "crm" and connector.kind == "salesforce"
    assert (s.auth, s.login_url, s.client_secret, s.api_version) == (
        "client_credentials",
        "https://acme.my.salesforce.com",
        "from-config",
        "64.0",
    )
    assert (s.timeout_seconds, s.client_name, s.daily_limit_guard) == (7.5, "crmsync-test", 0.8)
    assert "from-config" not in repr(connector) + repr(s)
    connector.close()


def test_registered_under_salesforce() -> None:
    from crmsync.connectors.registry import connector_class

    assert connector_class("salesforce") is SalesforceConnector


def test_from_config_with_the_real_connection_model(rsa_key: tuple[Path, bytes]) -> None:
    from crmsync.config.models import SalesforceConnection

    conn = SalesforceConnection(
        type="salesforce",
        client_id="cid",
        username="integration@acme.com",
        private_key_file=rsa_key[0],
        refresh_token=SecretStr("RT-secret"),
    )
    connector = SalesforceConnector.from_config("crm", conn)
    s = connector.settings
    assert (s.auth, s.client_id, s.username, s.private_key_file) == (
        "jwt",
        "cid",
        "integration@acme.com",
        rsa_key[0],
    )
    assert s.refresh_token == "RT-secret" and "RT-secret" not in repr(s)
    connector.close()
