"""``POST /services/oauth2/token`` and the sessions it hands out.

Grants: JWT bearer (RS256 assertion checked with the sandbox's public key: ``iss`` = client id,
``sub`` = username, ``aud`` = login.salesforce.com, test.salesforce.com or this server, ``exp``
in the future and at most 3 minutes ahead), client credentials (form body or HTTP Basic),
username-password (answers a refresh token too) and refresh token. Success and error bodies
are Salesforce's; errors are HTTP 400 ``{"error", "error_description"}``.

A session lives ``session_seconds`` from the moment it was issued; afterwards (or after
:meth:`Sessions.expire_all`) the REST API answers 401 ``INVALID_SESSION_ID``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

JWT_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_JWT_LIFETIME = 180


@dataclass(frozen=True)
class AppConfig:
    """The connected app and the one user of the sandbox org."""

    client_id: str
    client_secret: str
    username: str
    password: str
    org_id: str
    user_id: str


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class Sessions:
    """Access tokens (token -> expiry as a UNIX time) and refresh tokens."""

    def __init__(
        self,
        app: AppConfig,
        clock: Callable[[], dt.datetime],
        session_seconds: float,
        public_key: bytes | None = None,
    ) -> None:
        self.app = app
        #: the PEM public key JWT assertions are checked with (None: the JWT flow is refused)
        self.public_key = public_key
        self.clock = clock
        self.session_seconds = session_seconds
        self.access: dict[str, float] = {}
        self.refresh: set[str] = set()

    def clear(self) -> None:
        self.access.clear()
        self.refresh.clear()

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        expires = self.access.get(token)
        return expires is not None and expires > self.clock().timestamp()

    def expire_all(self) -> None:
        """Every access token answers INVALID_SESSION_ID from now on (refresh tokens stay valid)."""
        self.access.clear()

    def new_access_token(self) -> str:
        token = f"{self.app.org_id[:15]}!AQ{secrets.token_urlsafe(72)}"
        self.access[token] = self.clock().timestamp() + self.session_seconds
        # forget long-expired tokens so that the table stays small
        if len(self.access) > 10_000:
            now = self.clock().timestamp()
            self.access = {t: e for t, e in self.access.items() if e > now}
        return token

    # -- the token endpoint -----------------------------------------------------------------------
    def grant(self, form: Mapping[str, str], authorization: str | None, base_url: str) -> dict[str, Any]:
        """The 200 body for a token request; raises :class:`OAuthError`."""
        grant_type = form.get("grant_type", "")
        if grant_type == JWT_GRANT:
            self._check_jwt(form.get("assertion", ""), base_url)
            return self._reply(base_url, jwt_flow=True)
        if grant_type == "client_credentials":
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            if authorization and authorization.lower().startswith("basic "):
                client_id, client_secret = _basic(authorization)
            self._check_client(client_id, client_secret)
            return self._reply(base_url)
        if grant_type == "password":
            self._check_client(form.get("client_id"), form.get("client_secret"))
            if form.get("username") != self.app.username or form.get("password") != self.app.password:
                raise OAuthError("invalid_grant", "authentication failure")
            refresh = secrets.token_urlsafe(48)
            self.refresh.add(refresh)
            return self._reply(base_url, refresh_token=refresh)
        if grant_type == "refresh_token":
            if form.get("client_id") != self.app.client_id:
                raise OAuthError("invalid_client_id", "client identifier invalid")
            secret = form.get("client_secret")
            if secret is not None and secret != self.app.client_secret:
                raise OAuthError("invalid_client", "invalid client credentials")
            if form.get("refresh_token") not in self.refresh:
                raise OAuthError("invalid_grant", "expired access/refresh token")
            return self._reply(base_url)
        if not grant_type:
            raise OAuthError("invalid_request", "grant type not supported")
        raise OAuthError("unsupported_grant_type", "grant type not supported")

    def _check_client(self, client_id: str | None, client_secret: str | None) -> None:
        if client_id != self.app.client_id:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if client_secret != self.app.client_secret:
            raise OAuthError("invalid_client", "invalid client credentials")

    def _check_jwt(self, assertion: str, base_url: str) -> None:
        key = self.public_key
        if key is None:
            raise OAuthError("invalid_grant", "invalid assertion")
        try:
            claims = jwt.decode(
                assertion,
                key,
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_exp": False, "require": ["iss", "sub", "aud", "exp"]},
            )
        except jwt.InvalidTokenError:
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if claims["iss"] != self.app.client_id:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        allowed = {*JWT_AUDIENCES, base_url.rstrip("/")}
        if not any(isinstance(a, str) and a.rstrip("/") in allowed for a in audiences):
            raise OAuthError("invalid_grant", "audience is invalid")
        try:
            exp = float(claims["exp"])
        except (TypeError, ValueError):
            raise OAuthError("invalid_grant", "invalid assertion") from None
        now = self.clock().timestamp()
        if exp <= now or exp > now + MAX_JWT_LIFETIME + 5:
            raise OAuthError("invalid_grant", "invalid assertion")
        if claims["sub"] != self.app.username:
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")

    def _reply(
        self, base_url: str, *, jwt_flow: bool = False, refresh_token: str | None = None
    ) -> dict[str, Any]:
        identity = f"{base_url}/id/{self.app.org_id}/{self.app.user_id}"
        body: dict[str, Any] = {
            "access_token": self.new_access_token(),
            "scope": "api" if jwt_flow else "refresh_token api" if refresh_token else "api",
            "instance_url": base_url,
            "id": identity,
            "token_type": "Bearer",
        }
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        if not jwt_flow:
            issued_at = str(int(self.clock().timestamp() * 1000))
            digest = hmac.new(
                self.app.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
            )
            body["issued_at"] = issued_at
            body["signature"] = base64.b64encode(digest.digest()).decode()
        return body


def _basic(header: str) -> tuple[str | None, str | None]:
    try:
        decoded = base64.b64decode(header.split(" ", 1)[1].strip()).decode()
    except (binascii.Error, UnicodeDecodeError, IndexError):
        return None, None
    client_id, _, secret = decoded.partition(":")
    return client_id, secret
