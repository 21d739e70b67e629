"""A local Trello REST API v1 that py-trello and crmsync's own connector cannot tell apart.

See :mod:`crmsync.sandbox.trello.emulator` for the fault kinds and ``docs/sandbox-trello.md``
for what is emulated and what is not.
"""

from crmsync.sandbox.trello.emulator import DEFAULT_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, TrelloEmulator
from crmsync.sandbox.trello.webhooks import sign

__all__ = ["DEFAULT_KEY", "DEFAULT_SECRET", "DEFAULT_TOKEN", "TrelloEmulator", "sign"]
