"""The sandbox's defaults, importable without the emulators (and their optional dependencies)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_PORTS = {"salesforce": 8701, "trello": 8702, "monday": 8703}
DEFAULT_DIRECTORY = Path(".crmsync-sandbox")
#: seconds between two saves of ``--state`` while the sandbox runs (it is also saved at exit)
DEFAULT_SAVE_SECONDS = 2.0

#: what to install when the emulators' dependencies are missing
EXTRA_HINT = "the sandbox needs crmsync's sandbox extra: pip install 'crmsync[sandbox]'"
