"""What every connector's settings model builds on: frozen models refusing unknown keys, and
the value types ``crmsync.yaml`` uses (blank text as unset, secrets, paths).

Each connector declares ONE settings model in its folder (``connectors/<kind>/settings.py``),
with ``type: Literal["<kind>"]``; :mod:`crmsync.connectors.registry` builds the configuration's
connection union from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr


def _blank_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def number_to_text(value: Any) -> Any:
    """`api_version: 66.0` written without quotes is a float in YAML; it means the text "66.0"."""
    return f"{value:.1f}" if isinstance(value, float) else value


OptionalText = Annotated[str | None, BeforeValidator(_blank_to_none)]
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_blank_to_none)]
OptionalPath = Annotated[Path | None, BeforeValidator(_blank_to_none)]


class Model(BaseModel):
    """Base of every section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConnectionSettings(Model):
    """What the engine knows of any connection's settings: its ``type`` (the registry's kind).
    Settings models need not derive from it; they must have ``type: Literal["<kind>"]``."""

    type: str


def secret(value: SecretStr | None) -> str | None:
    """The text of a secret setting (None when unset)."""
    return None if value is None else value.get_secret_value()
