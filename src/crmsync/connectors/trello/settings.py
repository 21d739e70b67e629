"""The settings of one Trello connection: a pydantic model, each field typed and described.

The same model is the connection's entry in ``crmsync.yaml`` (``type: trello``) and what the
connector reads; secrets are :class:`~pydantic.SecretStr` (redacted in every printout).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

#: Trello's documented limits: requests per window per token, per key (all its tokens), and the
#: separate budget of ``/1/members/*`` per token
TOKEN_LIMIT = 100
KEY_LIMIT = 300
WINDOW_SECONDS = 10.0
MEMBER_LIMIT = 100
MEMBER_WINDOW_SECONDS = 900.0


class TrelloConnection(BaseModel):
    """One Trello key and token, working on one board."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["trello"] = Field(description="Connection type: a Trello board (REST API v1).")
    api_url: str = Field(
        "https://api.trello.com/1",
        pattern=r"^https?://",
        description="The REST API's base URL, with /1 (the sandbox's TRELLO_API_URL when testing).",
    )
    key: str = Field(min_length=1, description="The Power-Up's API key (Power-Up admin page, API Key tab).")
    token: SecretStr = Field(description="A token the key's owner authorized (read,write scopes).")
    app_secret: SecretStr | None = Field(
        None,
        description="The Power-Up's OAuth secret (TRELLO_SECRET): verifies the X-Trello-Webhook signature.",
    )
    board: str = Field(
        min_length=1, description="The board this connection syncs: its id, its shortLink or its name."
    )
    default_list: str | None = Field(
        None, description="The list (name or id) new cards go to when a write names none."
    )
    timeout_seconds: float = Field(30.0, gt=0, description="Timeout of every HTTP call.")
    token_limit: int = Field(
        TOKEN_LIMIT, gt=0, description="Requests per window per token, shared by every crmsync process."
    )
    key_limit: int = Field(
        KEY_LIMIT, gt=0, description="Requests per window per API key, summed over all its tokens."
    )
    window_seconds: float = Field(WINDOW_SECONDS, gt=0, description="Length of Trello's rate-limit window.")
    member_limit: int = Field(MEMBER_LIMIT, gt=0, description="Requests to /1/members/* per member window.")
    member_window_seconds: float = Field(
        MEMBER_WINDOW_SECONDS, gt=0, description="Length of the /1/members/* rate-limit window."
    )
    rate_margin_seconds: float = Field(
        0.3,
        ge=0,
        le=5,
        description="Seconds added to each window for network delay and clock skew between processes.",
    )
    resend_attempts: int = Field(
        4, ge=1, le=20, description="Sends of one request refused with 429 before the error is raised."
    )
