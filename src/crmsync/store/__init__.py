"""The store: one SQL database holding the change queue, links, shadow state, watermarks, the
sync log, dead letters, job runs, API tokens, leases and shared API budgets.

Importing this package connects to nothing; :class:`Store` connects on first use.
"""

from crmsync.store.db import Store

__all__ = ["Store"]
