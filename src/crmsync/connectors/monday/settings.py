"""The settings of a monday.com connection: :class:`MondayConnection` declares its YAML keys (the
one declaration) and :class:`MondaySettings` is the client's frozen view of it (plain values,
secrets kept out of its repr), built by :meth:`MondaySettings.from_object`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from pydantic import Field, SecretStr

from crmsync.connectors.settings import Model, OptionalSecret
from crmsync.errors import ConfigError

#: the API version pinned by default: "current" since 26 Oct 2026
DEFAULT_API_VERSION = "2026-10"
#: a personal token's budget on paid plans
DEFAULT_COMPLEXITY_PER_MINUTE = 10_000_000

_VERSION = re.compile(r"^\d{4}-(01|04|07|10)$")


@dataclass(frozen=True)
class MondaySettings:
    """Everything the client needs to call one monday.com account."""

    token: str = field(repr=False)
    api_url: str = "https://api.monday.com/v2"
    signing_secret: str | None = field(default=None, repr=False)
    #: an app's token: creates the webhooks, so monday signs their deliveries
    app_token: str | None = field(default=None, repr=False)
    api_version: str = DEFAULT_API_VERSION
    timeout_seconds: float = 30.0
    complexity_per_minute: int = DEFAULT_COMPLEXITY_PER_MINUTE

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not self.token:
            problems.append("token is required")
        if not self.api_url.startswith(("https://", "http://")):
            problems.append(f"api_url must be an http(s) URL, not {self.api_url!r}")
        if not _VERSION.match(self.api_version):
            problems.append(
                f"api_version must look like 2026-10 (months 01/04/07/10), not {self.api_version!r}"
            )
        if self.timeout_seconds <= 0:
            problems.append("timeout_seconds must be positive")
        if self.complexity_per_minute <= 0:
            problems.append("complexity_per_minute must be positive")
        if problems:
            raise ConfigError("invalid monday.com settings: " + "; ".join(problems), problems=problems)
        object.__setattr__(self, "api_url", self.api_url.rstrip("/"))

    @classmethod
    def from_object(cls, conn: Any) -> MondaySettings:
        """Read the same-named attributes of a config model (``SecretStr`` values are unwrapped)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if not hasattr(conn, f.name):
                continue
            value = getattr(conn, f.name)
            if value is not None and hasattr(value, "get_secret_value"):
                value = value.get_secret_value()
            if value is None and f.name not in ("signing_secret", "app_token"):
                continue  # keep the default
            values[f.name] = value
        values.setdefault("token", "")
        return cls(**values)


class MondayConnection(Model):
    type: Literal["monday"] = Field(description="Connection type: a monday.com account (GraphQL API v2).")
    api_url: str = Field(
        "https://api.monday.com/v2",
        pattern=r"^https?://",
        description="The GraphQL endpoint (the sandbox's MONDAY_API_URL when testing).",
    )
    token: SecretStr = Field(description="API token: a personal token, or an app's (OAuth) token.")
    app_token: OptionalSecret = Field(
        None,
        description=(
            "An app's (OAuth) token that creates the webhooks, so monday signs their deliveries "
            "(with signing_secret); unset: `token` creates them and a secret in their URL protects them."
        ),
    )
    signing_secret: OptionalSecret = Field(
        None,
        description=(
            "The app's Signing Secret: verifies the signed deliveries of webhooks made with app_token."
        ),
    )
    api_version: str = Field(
        "2026-10",
        pattern=r"^\d{4}-(01|04|07|10)$",
        description="API-Version header sent on every request (YYYY-MM, a quarter's month), pinned.",
    )
    timeout_seconds: float = Field(30.0, gt=0, description="Timeout of every HTTP call.")
    complexity_per_minute: int = Field(
        10_000_000,
        gt=0,
        description=(
            "Complexity points crmsync may spend per minute on this token, shared by all its "
            "processes (personal tokens: 10M on paid plans, 1M on trial/free)."
        ),
    )
