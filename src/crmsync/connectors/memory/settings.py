"""The settings of one in-memory connection (``type: memory`` in ``crmsync.yaml``)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from crmsync.connectors.settings import Model, OptionalSecret


class Refusal(Model):
    """A rule refusing records: a write whose ``field`` holds ``equals`` (or matches ``matches``)
    is answered with a refused record (FixTheData) carrying ``message``."""

    field: str = Field(description="Field the rule looks at.")
    equals: Any = Field(None, description="Refuse records whose field holds this value.")
    matches: str | None = Field(None, description="Refuse records whose field's text matches this regex.")
    message: str = Field("refused by the memory system's rule", description="The vendor's message.")

    @field_validator("matches")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value

    @model_validator(mode="after")
    def _one_test(self) -> Refusal:
        if self.matches is None and self.equals is None:
            raise ValueError("a refusal needs equals or matches")
        return self

    def refuses(self, fields: dict[str, Any]) -> bool:
        if self.field not in fields:
            return False
        value = fields[self.field]
        if self.matches is not None:
            return value is not None and re.search(self.matches, str(value)) is not None
        return bool(value == self.equals)


class MemoryConnection(Model):
    """An in-memory system living in the crmsync process: for tests, demos and trying flows out."""

    type: Literal["memory"] = Field(description="Connection type: an in-memory system (tests, demos).")
    system: str = Field(
        "default",
        min_length=1,
        description="Name of the in-memory system; connections naming the same one share its records.",
    )
    token: SecretStr = Field(
        SecretStr("memory"),
        description="Credentials; the system refuses them (Fatal) unless they are its own.",
    )
    webhook_secret: OptionalSecret = Field(
        None, description="Signs the system's webhook deliveries; unset: changes are read by polling only."
    )
    page_size: int = Field(500, ge=1, description="Most changed records one read of changes returns.")
    calls_per_minute: int | None = Field(
        None, ge=1, description="A rate limit: calls past it in one minute are refused for the rest of it."
    )
    daily_calls: int | None = Field(
        None, ge=1, description="A daily API budget reported like a vendor's (null: none)."
    )
    daily_limit_guard: float = Field(
        0.9, ge=0, le=1, description="Share of daily_calls past which non-urgent work waits."
    )
    replay_seconds: float = Field(
        1800.0, ge=0, description="A create sent again within this long returns the first one's id."
    )
    fail_prob: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Probability that any call fails transiently (like dlt's dummy destination).",
    )
    seed: int | None = Field(None, description="Seed of the fail_prob draws (null: random).")
    refuse: list[Refusal] = Field(
        default_factory=list, description="Rules refusing records by a field's value (FixTheData)."
    )
