"""Local emulators of Salesforce, Trello and Monday.com that real clients cannot tell apart.

``crmsync sandbox`` starts all three (see :class:`crmsync.sandbox.runner.Sandbox`); tests can
serve one in-process with :func:`crmsync.sandbox.runner.serve`. Each emulator keeps its state in
memory, takes fault rules at run time and counts the calls it served (:mod:`crmsync.sandbox.base`).
"""
