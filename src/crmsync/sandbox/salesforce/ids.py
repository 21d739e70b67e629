"""Salesforce record ids: 15 case-sensitive characters plus a 3-character checksum suffix.

The first three characters are the object's key prefix (``001`` Account, ``003`` Contact …).
The suffix encodes, for each 5-character chunk of the 15-character id, which characters are
upper-case letters: bit *i* set when character *i* is ``A`` to ``Z``, the value (0 to 31) indexing
``ABCDEFGHIJKLMNOPQRSTUVWXYZ012345``. The API always answers with 18 characters and accepts both.
"""

from __future__ import annotations

import re
import string

_SUFFIX_ALPHABET = string.ascii_uppercase + "012345"
_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_ID_RE = re.compile(r"^[a-zA-Z0-9]{15}(?:[A-Z0-5]{3})?$")

#: key prefixes of the objects the emulator knows (custom objects get ``a00``, ``a01`` …)
KEY_PREFIXES: dict[str, str] = {
    "Account": "001",
    "Contact": "003",
    "User": "005",
    "Opportunity": "006",
    "Lead": "00Q",
    "Task": "00T",
    "Event": "00U",
    "Case": "500",
    "Contract": "800",
    "Order": "801",
    "Campaign": "701",
    "Organization": "00D",
    "Report": "00O",
    "BulkJob": "750",
    "QueryLocator": "01g",
}

#: the "pod" characters between the key prefix and the counter in generated ids
_INSTANCE = "8d0"


def checksum(id15: str) -> str:
    """The 3-character suffix that turns a 15-character id into its 18-character form."""
    out = []
    for start in (0, 5, 10):
        bits = 0
        for i, ch in enumerate(id15[start : start + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << i
        out.append(_SUFFIX_ALPHABET[bits])
    return "".join(out)


def to18(id15: str) -> str:
    return id15 + checksum(id15)


def normalize(value: object) -> str | None:
    """The 18-character form of a 15- or 18-character id, or None if ``value`` is not an id.

    An 18-character id whose suffix does not match its first 15 characters is not an id.
    """
    if not isinstance(value, str) or not _ID_RE.match(value):
        return None
    if len(value) == 15:
        return to18(value)
    return value if checksum(value[:15]) == value[15:] else None


def base62(n: int, width: int) -> str:
    digits = []
    while n:
        n, rem = divmod(n, 62)
        digits.append(_BASE62[rem])
    text = "".join(reversed(digits)) or "0"
    if len(text) > width:
        raise ValueError(f"{n} does not fit in {width} base-62 digits")
    return text.rjust(width, "0")


def make_id(prefix: str, number: int) -> str:
    """The 18-character id number ``number`` under key prefix ``prefix``."""
    return to18(f"{prefix}{_INSTANCE}{base62(number, 9)}")


class IdFactory:
    """Hands out fresh ids per key prefix; deterministic after :meth:`reset` (seeds get stable ids)."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}

    def reset(self) -> None:
        self.counters.clear()

    def next(self, prefix: str) -> str:
        n = self.counters.get(prefix, 0) + 1
        self.counters[prefix] = n
        return make_id(prefix, n)
