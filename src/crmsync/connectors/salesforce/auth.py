"""The OAuth token flows: what to POST to ``{login_url}/services/oauth2/token`` and what comes back.

This module builds the form of each flow and reads the reply; :mod:`.client` sends it (HTTP lives
in one module). Flows:

- ``jwt`` (default): a JWT bearer assertion signed RS256 with the connected app's private key;
  ``iss`` = client id, ``sub`` = username, ``aud`` = the login host, ``exp`` = now + 3 minutes;
- ``client_credentials``: client id and secret (runs as the app's run-as user; My Domain only);
- ``password``: client id and secret, username and password (+ security token);
- ``refresh_token``: a refresh token; Salesforce may rotate it, so the reply's new one is kept.

A refused login raises :class:`crmsync.errors.Fatal` carrying the vendor's ``error`` and
``error_description`` — never the secret that was sent.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import jwt

from crmsync.connectors.salesforce.errors import token_error
from crmsync.connectors.salesforce.settings import SalesforceSettings
from crmsync.errors import ConfigError, Fatal

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_LIFETIME_SECONDS = 180
PRODUCTION_AUDIENCE = "https://login.salesforce.com"
SANDBOX_AUDIENCE = "https://test.salesforce.com"


@dataclass(frozen=True)
class Token:
    """A session: the access token (never shown in a repr) and the instance to call with it."""

    access_token: str = field(repr=False)
    instance_url: str
    refresh_token: str | None = field(default=None, repr=False)
    issued_at: str | None = None
    identity_url: str | None = None


def token_url(settings: SalesforceSettings) -> str:
    return f"{settings.login_url}/services/oauth2/token"


def jwt_audience(settings: SalesforceSettings) -> str:
    """``aud`` of the assertion: Salesforce wants its login host even when posting to a My Domain.

    A sandbox My Domain (``*.sandbox.my.salesforce.com``) and ``test.salesforce.com`` use the test
    host; other Salesforce hosts the production one; any other host (a proxy, the local sandbox)
    is its own audience. ``jwt_audience`` in the settings overrides all of this.
    """
    if settings.jwt_audience:
        return settings.jwt_audience
    host = (urlsplit(settings.login_url).hostname or "").lower()
    if host == "test.salesforce.com" or host.endswith(".sandbox.my.salesforce.com"):
        return SANDBOX_AUDIENCE
    if host == "login.salesforce.com" or host.endswith(".salesforce.com"):
        return PRODUCTION_AUDIENCE
    return settings.login_url


def jwt_assertion(settings: SalesforceSettings, *, now: float | None = None) -> str:
    """The signed JWT bearer assertion (RS256) for the settings' user."""
    if settings.private_key_file is None or settings.username is None:
        raise ConfigError("the jwt flow needs private_key_file and username")
    try:
        key = settings.private_key_file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the JWT private key file {settings.private_key_file}: {exc}") from exc
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": settings.client_id,
        "sub": settings.username,
        "aud": jwt_audience(settings),
        "exp": issued + JWT_LIFETIME_SECONDS,
    }
    try:
        return jwt.encode(claims, key, algorithm="RS256")
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        raise ConfigError(
            f"the JWT private key file {settings.private_key_file} holds no usable RSA key: {exc}"
        ) from exc


def token_form(
    settings: SalesforceSettings, *, refresh_token: str | None = None, now: float | None = None
) -> dict[str, str]:
    """The form-encoded body of the token request for the configured flow.

    ``refresh_token`` overrides the configured one (after Salesforce rotated it).
    """
    if settings.auth == "jwt":
        return {"grant_type": JWT_GRANT, "assertion": jwt_assertion(settings, now=now)}
    if settings.auth == "client_credentials":
        return {
            "grant_type": "client_credentials",
            "client_id": settings.client_id,
            "client_secret": settings.client_secret or "",
        }
    if settings.auth == "password":
        return {
            "grant_type": "password",
            "client_id": settings.client_id,
            "client_secret": settings.client_secret or "",
            "username": settings.username or "",
            "password": settings.password or "",
        }
    form = {
        "grant_type": "refresh_token",
        "client_id": settings.client_id,
        "refresh_token": refresh_token or settings.refresh_token or "",
    }
    if settings.client_secret:
        form["client_secret"] = settings.client_secret
    return form


#: the environment variables the starter file and the recipes read each setting from
SETTING_VARIABLES = {
    "client_id": "SALESFORCE_CLIENT_ID",
    "client_secret": "SALESFORCE_CLIENT_SECRET",
    "username": "SALESFORCE_USERNAME",
    "password": "SALESFORCE_PASSWORD",
    "private_key_file": "SALESFORCE_JWT_KEY_FILE",
    "refresh_token": "SALESFORCE_REFRESH_TOKEN",
    "login_url": "SALESFORCE_LOGIN_URL",
}

#: the settings a refusal points at, by the vendor's OAuth error and the login flow
_SUSPECTS: dict[str, dict[str, tuple[str, ...]]] = {
    "invalid_client_id": dict.fromkeys(
        ("jwt", "client_credentials", "password", "refresh_token"), ("client_id",)
    ),
    "invalid_client": {
        "jwt": ("client_id",),
        "client_credentials": ("client_id", "client_secret"),
        "password": ("client_id", "client_secret"),
        "refresh_token": ("client_id", "client_secret"),
    },
    "invalid_grant": {
        "jwt": ("username", "private_key_file", "client_id", "login_url"),
        "client_credentials": ("client_id", "client_secret"),
        "password": ("username", "password", "login_url"),
        "refresh_token": ("refresh_token",),
    },
}


def login_hint(settings: SalesforceSettings, code: str | None) -> str:
    """What to check after a refused login: the settings (and the variables the starter file
    reads them from) most likely wrong for this error and login flow."""
    if code == "unsupported_grant_type":
        return (
            f"Check the connection's auth ({settings.auth}): the connected app must allow this flow; "
            "then: crmsync check --connect"
        )
    names = _SUSPECTS.get(code or "", {}).get(settings.auth) or (
        "client_id",
        "client_secret",
        "username",
        "password",
    )
    shown = ", ".join(f"{name} (${SETTING_VARIABLES[name]})" for name in names)
    extra = {
        "jwt": " The user must be pre-authorised for the connected app, which holds the key's certificate.",
        "password": " Outside a trusted IP range the password ends with the user's security token.",
        "client_credentials": " The connected app needs a run-as user for this flow.",
    }.get(settings.auth, "")
    return f"Check the connection's {shown} (auth: {settings.auth}).{extra} Then: crmsync check --connect"


def parse_token_reply(
    settings: SalesforceSettings,
    status: int,
    text: str,
    body: object,
    *,
    url: str,
    headers: Mapping[str, str] | None = None,
) -> Token:
    """The session from the token endpoint's reply, or the error to raise for a refusal."""
    if status != 200 or not isinstance(body, dict) or not body.get("access_token"):
        if status == 200:
            raise Fatal("login reply has no access_token", url=url, status=status)
        error = token_error(status, text, url=url, headers=headers)
        if isinstance(error, Fatal):  # refused: say what to fix
            error.message = f"{error.message}. {login_hint(settings, error.vendor_code)}"
            error.args = (error.message,)
        raise error
    instance_url = str(body.get("instance_url") or settings.instance_url or "").rstrip("/")
    if not instance_url:
        raise Fatal("login reply has no instance_url and none is configured", url=url)
    new_refresh = body.get("refresh_token")
    return Token(
        access_token=str(body["access_token"]),
        instance_url=instance_url,
        refresh_token=str(new_refresh) if new_refresh else None,
        issued_at=str(body["issued_at"]) if body.get("issued_at") else None,
        identity_url=str(body["id"]) if body.get("id") else None,
    )
