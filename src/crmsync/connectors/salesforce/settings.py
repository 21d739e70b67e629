"""The settings of a Salesforce connection: :class:`SalesforceConnection` declares its YAML keys
(types, defaults, descriptions, validation — the one declaration), and :class:`SalesforceSettings`
is the client's frozen view of it (plain values, secrets redacted in its repr), built by
:meth:`SalesforceSettings.from_object`; a test checks that every field of the view is a key of
the model."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from crmsync.connectors.settings import (
    Model,
    OptionalPath,
    OptionalSecret,
    OptionalText,
    number_to_text,
)
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

#: every key some login flow needs (checked by :meth:`SalesforceConnection._required_by_auth`)
_NEEDED = tuple(dict.fromkeys(name for needs in _REQUIRED.values() for name in needs))
_BY_AUTH: dict[str, tuple[str, ...]] = {str(flow): needs for flow, needs in _REQUIRED.items()}

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
    daily_limit_share: float = 1.0
    daily_call_budget: int | None = None
    concurrent_requests: int = 20
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
        if not 0.0 < self.daily_limit_share <= 1.0:
            problems.append("daily_limit_share must be more than 0 and at most 1")
        if self.daily_call_budget is not None and self.daily_call_budget < 1:
            problems.append("daily_call_budget must be at least 1")
        if self.concurrent_requests < 0:
            problems.append("concurrent_requests must not be negative")
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


class SalesforceConnection(Model):
    type: Literal["salesforce"] = Field(description="Connection type: a Salesforce org.")
    auth: Literal["jwt", "client_credentials", "password", "refresh_token"] = Field(
        "jwt", description="OAuth flow used to log in."
    )
    login_url: str = Field(
        "https://login.salesforce.com",
        description="Where to log in (https://test.salesforce.com for sandboxes, or My Domain).",
    )
    instance_url: OptionalText = Field(
        None, description="The org's instance URL; learnt from the login answer when not set."
    )
    client_id: OptionalText = Field(
        None, validate_default=True, description="Consumer key of the connected app."
    )
    client_secret: OptionalSecret = Field(
        None, validate_default=True, description="Consumer secret of the connected app."
    )
    username: OptionalText = Field(
        None, validate_default=True, description="Integration user (jwt and password flows)."
    )
    password: OptionalSecret = Field(
        None,
        validate_default=True,
        description="Password, with the security token appended if the org needs one (password flow).",
    )
    private_key_file: OptionalPath = Field(
        None,
        validate_default=True,
        description="PEM private key signing the JWT (jwt flow); relative to the config file.",
    )
    refresh_token: OptionalSecret = Field(
        None, validate_default=True, description="OAuth refresh token (refresh_token flow)."
    )
    ca_file: OptionalPath = Field(
        None, description="Extra CA bundle to trust (the sandbox's); relative to the config file."
    )
    api_version: Annotated[str, BeforeValidator(number_to_text)] = Field(
        "66.0", pattern=r"^\d+\.\d$", description='REST API version, e.g. "66.0".'
    )
    timeout_seconds: float = Field(30.0, gt=0, description="Timeout of every HTTP call.")
    client_name: str = Field(
        "crmsync",
        min_length=1,
        description="Client id sent in Sforce-Call-Options; the engine's own writes are recognised by it.",
    )
    daily_limit_guard: float = Field(
        0.9, ge=0, le=1, description="Pause non-urgent work past this share of the daily API limit."
    )
    daily_limit_share: float = Field(
        1.0,
        gt=0,
        le=1,
        description="The share of the org's daily API limit crmsync may use: no call is sent once the "
        "org's use over the last 24 hours (as Salesforce reports it, plus every call any crmsync process "
        "sent since) reached it, counted in the store by all processes together; the rest is left to "
        "other programs.",
    )
    daily_call_budget: int | None = Field(
        None,
        ge=1,
        description="At most this many API calls by crmsync in any 24 hours, all processes together "
        "(counted in the store); unset: only daily_limit_share applies.",
    )
    concurrent_requests: int = Field(
        20,
        ge=0,
        description="At most this many requests in flight at once, all crmsync processes together "
        "(Salesforce refuses requests past 25 running longer than 20 s at once; 5 on Developer Edition); "
        "each holds a slot leased in the store, which a killed process gives back after "
        "timeout_seconds + 30 s (0: no limit).",
    )
    jwt_audience: OptionalText = Field(
        None,
        description=(
            "The JWT's aud claim (jwt flow); unset: derived from login_url (login/test.salesforce.com, "
            "else the My Domain URL itself)."
        ),
    )
    lookback_seconds: float = Field(
        300.0,
        ge=0,
        description="Changes that become visible up to this long after their SystemModstamp (a transaction "
        "committing late) are still caught: a periodic sweep re-reads that far back (0: no sweep).",
    )
    sweep_every_seconds: float = Field(
        60.0, gt=0, description="How often the lookback sweep runs (its query rides in a polling call)."
    )

    @field_validator("private_key_file", "ca_file")
    @classmethod
    def _relative_to_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        """Read from a configuration file (``base_dir`` in the context): relative to it, and there."""
        base = (info.context or {}).get("base_dir")
        if value is None or base is None:
            return value
        path = value if value.is_absolute() else Path(base) / value
        if not path.is_file():
            raise PydanticCustomError("file_not_found", "file '{file}' not found", {"file": str(value)})
        return path

    @field_validator(*_NEEDED)
    @classmethod
    def _required_by_auth(cls, value: Any, info: ValidationInfo) -> Any:
        """A key the login flow needs, left unset, in a configuration file (``base_dir`` in the
        context; a model built in code for its defaults is not refused: the client checks again)."""
        auth = info.data.get("auth")
        if value is not None or "base_dir" not in (info.context or {}) or not isinstance(auth, str):
            return value
        if info.field_name in _BY_AUTH.get(auth, ()):
            raise PydanticCustomError(
                "required_by_auth", "required by auth '{auth}' but not set", {"auth": auth}
            )
        return value

    @field_validator("lookback_seconds")
    @classmethod
    def _longer_than_the_overlap(cls, value: float) -> float:
        if 0 < value <= 2:
            raise ValueError("must be 0 (no sweep) or longer than the poller's 2 s overlap")
        return value
