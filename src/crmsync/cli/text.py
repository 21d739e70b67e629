"""Vendor and user text made safe to print in a terminal.

Record keys, vendor messages and names come from outside: a control character in one (an escape
sequence, a carriage return, a bidirectional override) would rewrite the terminal or hide what
is printed. :func:`printable` shows each such character as its escape (``\\x1b``, ``\\u202e``).
"""

from __future__ import annotations

import unicodedata

#: Unicode categories escaped: controls, format characters (e.g. bidi overrides), line and
#: paragraph separators, surrogates and unassigned code points
ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Zl", "Zp"})


def printable(text: str) -> str:
    """``text`` with every control or invisible formatting character shown as its escape."""
    if text.isprintable():
        return text
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if ch != " " and unicodedata.category(ch) in ESCAPED_CATEGORIES
        else ch
        for ch in text
    )
