"""Trello's identifiers and timestamps.

Object ids are 24 lowercase hex digits (a Mongo ObjectId): the first 8 are the creation time in
unix seconds, so a card's creation date can be read from its id. Boards and cards also carry an
8-character ``shortLink`` that the API accepts in place of the id.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import string
import time
from datetime import UTC, datetime

_OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")
_SHORT_LINK = re.compile(r"^[0-9A-Za-z]{8}$")
_SHORT_ALPHABET = string.ascii_letters + string.digits
_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))
_process = os.urandom(5).hex()


def object_id(at: float | None = None) -> str:
    """A new 24-hex id whose first 8 hex digits are ``at`` (default: now) in unix seconds."""
    seconds = int(time.time() if at is None else at)
    return f"{seconds:08x}{_process}{next(_counter) % 0x1000000:06x}"


def is_object_id(value: str) -> bool:
    return bool(_OBJECT_ID.match(value))


def is_short_link(value: str) -> bool:
    return bool(_SHORT_LINK.match(value))


def short_link() -> str:
    return "".join(secrets.choice(_SHORT_ALPHABET) for _ in range(8))


def id_time(ident: str) -> datetime:
    """The creation time embedded in an object id."""
    return datetime.fromtimestamp(int(ident[:8], 16), tz=UTC)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z``: ``2020-11-27T19:29:08.072Z``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now_iso() -> str:
    return iso(datetime.now(UTC))


def parse_date(value: str) -> datetime:
    """Parse an ISO date (``Z`` or an offset; a date alone is midnight UTC); ValueError if invalid."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def normalize_date(value: str) -> str:
    """A date as Trello stores it (``...000Z``); ValueError if ``value`` is not a date."""
    return iso(parse_date(value))


def slug(name: str) -> str:
    """The readable part of a board or card URL."""
    words = re.sub(r"[^0-9a-z]+", "-", name.lower()).strip("-")
    return words or "untitled"
