"""A Monday.com emulator: GraphQL API v2, board webhooks, complexity budgets and idempotency keys.

See :class:`MondayEmulator` and ``docs/sandbox-monday.md`` for what is emulated.
"""

from crmsync.sandbox.monday.emulator import MondayEmulator

__all__ = ["MondayEmulator"]
