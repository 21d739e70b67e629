"""The settings of one Salesforce connection, as a frozen value (secrets redacted in its repr)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from crmsync.errors import ConfigError

AuthFlow = Literal["jwt", "client_credentials", "password", "refresh_token"]
AUTH_FLOWS: tuple[AuthFlow, ...] = ("jwt", "client_credentials", "password", "refresh_token")

#: which settings each login flow needs
_REQUIRED: dict[AuthFlow, tuple[str, ...]] = {
    "jwt": ("client_id", "username", "private_key_file"),
    "client_credentials": ("client_id", "client_secret"),
    "password": ("client_id", "client_secret", "username", "password"),
    "refresh_token": ("client_id", "refresh_token"),
}

SECRET_FIELDS = frozenset({"client_secret", "password", "refresh_token"})


@dataclass(frozen=True, repr=False)
class SalesforceSettings:
    """Everything the client needs to log in and call one org."""

    client_id: str
    auth: AuthFlow = "jwt"
    login_url: str = "https://login.salesforce.com"
    instance_url: str | None = None
    client_secret: str | None = None
    username: str | None = None
    password: str | None = None
    private_key_file: Path | None = None
    refresh_token: str | None = None
    ca_file: Path | None = None
    api_version: str = "66.0"
    timeout_seconds: float = 30.0
    client_name: str = "crmsync"
    daily_limit_guard: float = 0.9
    #: the JWT ``aud`` claim; by default derived from ``login_url`` (see :func:`.auth.jwt_audience`)
    jwt_audience: str | None = None

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.auth not in AUTH_FLOWS:
            problems.append(f"auth must be one of {', '.join(AUTH_FLOWS)}, not {self.auth!r}")
        else:
            missing = [name for name in _REQUIRED[self.auth] if not getattr(self, name)]
            if missing:
                problems.append(f"auth {self.auth!r} needs {', '.join(missing)}")
        if not self.login_url.startswith(("https://", "http://")):
            problems.append(f"login_url must be an http(s) URL, not {self.login_url!r}")
        if self.instance_url is not None and not self.instance_url.startswith(("https://", "http://")):
            problems.append(f"instance_url must be an http(s) URL, not {self.instance_url!r}")
        if self.timeout_seconds <= 0:
            problems.append("timeout_seconds must be positive")
        if not 0.0 <= self.daily_limit_guard <= 1.0:
            problems.append("daily_limit_guard must be between 0 and 1")
        if problems:
            raise ConfigError("invalid Salesforce settings: " + "; ".join(problems), problems=problems)
        object.__setattr__(self, "login_url", self.login_url.rstrip("/"))
        if self.instance_url is not None:
            object.__setattr__(self, "instance_url", self.instance_url.rstrip("/"))
        object.__setattr__(self, "api_version", self.api_version.removeprefix("v"))

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value is not None:
                shown.append(f"{f.name}='**********'")
            else:
                shown.append(f"{f.name}={value!r}")
        return f"SalesforceSettings({', '.join(shown)})"

    @classmethod
    def from_object(cls, conn: Any) -> SalesforceSettings:
        """Read the same-named attributes of a config model (``SecretStr`` values are unwrapped)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if not hasattr(conn, f.name):
                continue
            value = getattr(conn, f.name)
            if value is not None and hasattr(value, "get_secret_value"):
                value = value.get_secret_value()
            if f.name in ("private_key_file", "ca_file") and value is not None:
                value = Path(value)
            if f.name in ("login_url", "instance_url") and value is not None:
                value = str(value)
            if value is None and f.name in ("login_url", "api_version", "client_name", "auth"):
                continue  # keep the default
            values[f.name] = value
        if not values.get("client_id"):
            values["client_id"] = ""
        return cls(**values)
