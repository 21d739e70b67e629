"""The settings of an ``app`` connection: an application submitting records (nothing to set)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from crmsync.connectors.settings import Model


class AppConnection(Model):
    type: Literal["app"] = Field(
        description="Connection type: an application submitting records through the ingest API."
    )
