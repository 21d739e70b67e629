"""A scripted Salesforce behind ``httpx.MockTransport``: fast, in-process, no sockets."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from crmsync.connectors.salesforce.client import SalesforceClient
from crmsync.connectors.salesforce.connector import SalesforceConnector
from crmsync.connectors.salesforce.settings import SalesforceSettings

INSTANCE = "https://acme.my.salesforce.com"
LOGIN = "https://login.salesforce.com"
Handler = Callable[[httpx.Request], httpx.Response]


def reply(status: int, body: Any = None, *, usage: str | None = "api-usage=10/15000") -> httpx.Response:
    headers = {"Sforce-Limit-Info": usage} if usage else {}
    if body is None:
        return httpx.Response(status, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


def error(status: int, code: str, message: str = "refused") -> httpx.Response:
    return reply(status, [{"message": message, "errorCode": code}])


@dataclass
class FakeSalesforce:
    """Routes ``(method, path regex) -> handler``; logs every request; serves the token endpoint."""

    routes: list[tuple[str, re.Pattern[str], Handler]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    token_forms: list[dict[str, str]] = field(default_factory=list)
    token_reply: Callable[[int], httpx.Response] | None = None
    expired: set[str] = field(default_factory=set)
    logins: int = 0

    reply = staticmethod(reply)
    error = staticmethod(error)

    @staticmethod
    def body_of(request: httpx.Request) -> Any:
        return json.loads(request.content)

    def route(self, method: str, path: str, handler: Handler | httpx.Response) -> None:
        fn: Handler = handler if callable(handler) else (lambda _r, h=handler: h)
        self.routes.insert(0, (method, re.compile(path), fn))

    def expire_sessions(self) -> None:
        self.expired.update(f"tok-{n}" for n in range(1, self.logins + 1))

    def data_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if "/oauth2/" not in r.url.path]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/services/oauth2/token":
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            self.token_forms.append(form)
            self.logins += 1
            if self.token_reply is not None:
                return self.token_reply(self.logins)
            return httpx.Response(
                200,
                json={
                    "access_token": f"tok-{self.logins}",
                    "instance_url": INSTANCE,
                    "id": f"{LOGIN}/id/00D000000000001AAA/005000000000001AAA",
                    "token_type": "Bearer",
                    "issued_at": "1699999999999",
                },
            )
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if bearer in self.expired:
            return reply(
                401,
                [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
                usage=None,
            )
        for method, pattern, handler in self.routes:
            if method == request.method and pattern.search(request.url.path):
                return handler(request)
        return error(404, "NOT_FOUND", f"no route for {request.method} {request.url.path}")


@pytest.fixture(scope="session")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A private key file for the JWT flow, and the matching public key (PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("jwt") / "key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, public


@pytest.fixture
def fake() -> FakeSalesforce:
    return FakeSalesforce()


@pytest.fixture
def settings() -> SalesforceSettings:
    return SalesforceSettings(
        client_id="3MVG-client",
        auth="client_credentials",
        client_secret="s3cret-value",
        login_url=INSTANCE,
    )


@pytest.fixture
def client(fake: FakeSalesforce, settings: SalesforceSettings) -> Iterator[SalesforceClient]:
    c = SalesforceClient(settings, transport=httpx.MockTransport(fake))
    yield c
    c.close()


@pytest.fixture
def connector(client: SalesforceClient, settings: SalesforceSettings) -> SalesforceConnector:
    return SalesforceConnector("sf", settings=settings, client=client)
