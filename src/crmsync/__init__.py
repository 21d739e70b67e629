"""crmsync: keeps Salesforce and the tools teams work in, in sync, without losing a change.

Importing the package does nothing: no configuration is read, no connection opened, no thread
started. Entry points are the ``crmsync`` command (:mod:`crmsync.cli`), the Python client for
applications (:mod:`crmsync.client`) and the sandbox (:mod:`crmsync.sandbox`).
"""

__version__ = "0.1.0"
