"""The Salesforce emulator: OAuth, sObject REST, SOQL, Collections, Composite, Bulk 2.0, report export.

See :mod:`crmsync.sandbox.salesforce.emulator` for what it serves and its fault kinds, and
``docs/sandbox-salesforce.md`` for what is emulated and what is not.
"""

from __future__ import annotations

from crmsync.sandbox.salesforce.emulator import SalesforceEmulator

__all__ = ["SalesforceEmulator"]
