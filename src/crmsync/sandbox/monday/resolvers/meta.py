"""The account, users and teams, API versions and the ``complexity`` field."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

from crmsync.sandbox.monday.context import Info, ctx, to_id
from crmsync.sandbox.monday.errors import MondayError
from crmsync.sandbox.monday.store import ACCOUNT_ID, User

#: the live versions on 26 Oct 2026, newest first; older well-formed versions answer as deprecated
VERSIONS: dict[str, str] = {
    "2027-01": "release_candidate",
    "2026-10": "current",
    "2026-07": "maintenance",
    "2026-04": "previous_maintenance",
    "2026-01": "old_previous_maintenance",
    "2025-10": "old__maintenance",
}
CURRENT_VERSION = "2026-10"
_VERSION = re.compile(r"^\d{4}-(01|04|07|10)$")


def resolve_version_header(value: str | None) -> str:
    """The version a request is served with, or ``InvalidVersionException``."""
    if value is None or not value.strip():
        return CURRENT_VERSION
    value = value.strip()
    if not _VERSION.match(value) or value > max(VERSIONS):
        raise MondayError(
            "InvalidVersionException",
            f"The API version '{value}' is invalid. Versions look like YYYY-MM, with MM one of "
            f"01, 04, 07 or 10; valid versions: {', '.join(sorted(VERSIONS))}",
            error_data={"version": value},
            status_code=400,
        )
    return value


def version_view(value: str) -> dict[str, str]:
    kind = VERSIONS.get(value, "deprecated")
    return {"kind": kind, "value": value, "display_name": value}


def resolve_users(
    _: Any,
    info: Info,
    ids: list[str] | None = None,
    emails: list[str] | None = None,
    limit: int | None = None,
    page: int | None = None,
    name: str | None = None,
    **__: Any,
) -> list[User]:
    users = sorted((u for u in ctx(info).ops.store.users.values() if u.kind == "person"), key=lambda u: u.id)
    if ids is not None:
        wanted = {to_id(i) for i in ids}
        users = [u for u in users if u.id in wanted]
    if emails is not None:
        users = [u for u in users if u.email in emails]
    if name:
        users = [u for u in users if name.lower() in u.name.lower()]
    size = limit or len(users) or 1
    start = ((page or 1) - 1) * size
    return users[start : start + size]


def resolve_teams(_: Any, info: Info, ids: list[str] | None = None) -> list[User]:
    teams = [u for u in ctx(info).ops.store.users.values() if u.kind == "team"]
    if ids is not None:
        wanted = {to_id(i) for i in ids}
        teams = [t for t in teams if t.id in wanted]
    return sorted(teams, key=lambda t: t.id)


RESOLVERS: dict[str, dict[str, Any]] = {
    "Query": {
        "me": lambda _, info: ctx(info).ops.user(ctx(info).user_id),
        "users": resolve_users,
        "teams": resolve_teams,
        "account": lambda _, info: {
            "id": ACCOUNT_ID,
            "name": "crmsync sandbox",
            "slug": "crmsync-sandbox",
            "plan": {"max_users": 50, "period": "monthly", "tier": "pro", "version": 1},
        },
        "complexity": lambda _, info: asdict(ctx(info).charge),
        "version": lambda _, info: version_view(ctx(info).version),
        "versions": lambda _, info: [version_view(v) for v in VERSIONS],
    },
    "User": {
        "enabled": lambda user, info: True,
        "is_guest": lambda user, info: False,
        "teams": lambda user, info: [],
    },
    "Team": {"users": lambda team, info: []},
}
