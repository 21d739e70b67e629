"""Start the three emulators together: what ``crmsync sandbox`` and ``crmsync demo`` run."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crmsync.sandbox.base import Emulator
from crmsync.sandbox.defaults import DEFAULT_DIRECTORY, DEFAULT_PORTS, DEFAULT_SAVE_SECONDS
from crmsync.sandbox.server import BackgroundServer
from crmsync.sandbox.tls import Materials, ensure_materials

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_DIRECTORY", "DEFAULT_PORTS", "DEFAULT_SAVE_SECONDS", "Sandbox", "serve"]

#: the keys ``crmsync sandbox`` prints and writes, in this order
ENV_KEYS = (
    "SALESFORCE_INSTANCE_URL",
    "SALESFORCE_LOGIN_URL",
    "SALESFORCE_CLIENT_ID",
    "SALESFORCE_CLIENT_SECRET",
    "SALESFORCE_USERNAME",
    "SALESFORCE_PASSWORD",
    "SALESFORCE_JWT_KEY_FILE",
    "SALESFORCE_CA_FILE",
    "TRELLO_API_URL",
    "TRELLO_KEY",
    "TRELLO_TOKEN",
    "TRELLO_SECRET",
    "MONDAY_API_URL",
    "MONDAY_TOKEN",
    "MONDAY_APP_TOKEN",
    "MONDAY_SIGNING_SECRET",
)


def build_emulators(materials: Materials, **options: Any) -> dict[str, Emulator]:
    """One emulator of each vendor (imported here so that importing the package stays cheap)."""
    from crmsync.sandbox.monday import MondayEmulator
    from crmsync.sandbox.salesforce import SalesforceEmulator
    from crmsync.sandbox.trello import TrelloEmulator

    return {
        "salesforce": SalesforceEmulator(materials=materials, **options.get("salesforce", {})),
        "trello": TrelloEmulator(**options.get("trello", {})),
        "monday": MondayEmulator(**options.get("monday", {})),
    }


def seed_choices(emulators: dict[str, Emulator]) -> dict[str, tuple[str, ...]]:
    """Emulator name → the seed data sets it knows."""
    return {name: tuple(emulator.seeds) for name, emulator in emulators.items()}


def seed_all(emulators: dict[str, Emulator], seed: str) -> list[str]:
    """Load ``seed`` into every emulator that knows it; the names of those that did.

    A seed only some emulators have (``billing`` is Salesforce's) leaves the others empty; a seed
    none of them has is a ``ValueError`` that lists each emulator's choices.
    """
    knowing = [name for name, emulator in emulators.items() if seed in emulator.seeds]
    if not knowing:
        choices = "; ".join(f"{name}: {', '.join(s)}" for name, s in seed_choices(emulators).items())
        raise ValueError(f"no emulator has a seed named {seed!r} (choices: {choices})")
    for name in knowing:
        emulators[name].seed(seed)
    return knowing


class Sandbox:
    """The three emulators, each on its own port; Salesforce over HTTPS unless ``tls=False``.

    With a ``state_file``, the state is loaded at start, written every ``save_seconds`` while it
    changes (so a killed sandbox loses at most that much) and written once more at :meth:`stop`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        ports: dict[str, int] | None = None,
        seed: str | None = None,
        state_file: Path | None = None,
        directory: Path = DEFAULT_DIRECTORY,
        tls: bool = True,
        options: dict[str, Any] | None = None,
        save_seconds: float = DEFAULT_SAVE_SECONDS,
    ) -> None:
        if save_seconds <= 0:
            raise ValueError("save_seconds must be positive")
        self.host = host
        self.ports = {**DEFAULT_PORTS, **(ports or {})}
        self.seed_name = seed
        self.state_file = state_file
        self.tls = tls
        self.materials = ensure_materials(directory.resolve())
        self.emulators = build_emulators(self.materials, **(options or {}))
        self.servers: dict[str, BackgroundServer] = {}
        self.save_seconds = save_seconds
        self._saved = ""  # the text last written to the state file
        self._save_lock = threading.Lock()
        self._stop_saving = threading.Event()
        self._saver: threading.Thread | None = None
        #: the emulators the seed was loaded into (the others have no such seed and start empty)
        self.seeded: list[str] = []

    @property
    def salesforce(self) -> Emulator:
        return self.emulators["salesforce"]

    @property
    def trello(self) -> Emulator:
        return self.emulators["trello"]

    @property
    def monday(self) -> Emulator:
        return self.emulators["monday"]

    def start(self) -> Sandbox:
        restored = self._load_state()
        if self.seed_name and not restored:
            self.seeded = seed_all(self.emulators, self.seed_name)
        for name, emulator in self.emulators.items():
            use_tls = self.tls and name == "salesforce"
            server = BackgroundServer(
                emulator.app(),
                self.host,
                self.ports[name],
                certfile=self.materials.cert_file if use_tls else None,
                keyfile=self.materials.key_file if use_tls else None,
            )
            emulator.on_bound(server.url)
            self.servers[name] = server.start()
        if self.state_file is not None:
            self._stop_saving.clear()
            self._saver = threading.Thread(target=self._save_periodically, name="sandbox-state", daemon=True)
            self._saver.start()
        return self

    def stop(self) -> None:
        self._stop_saving.set()
        if self._saver is not None:
            self._saver.join(timeout=30)
            self._saver = None
        for server in self.servers.values():
            server.stop()
        self.servers.clear()
        for emulator in self.emulators.values():
            emulator.close()
        self.save_state()

    def _save_periodically(self) -> None:
        seen = -1
        while not self._stop_saving.wait(self.save_seconds):
            writes = sum(e.writes for e in self.emulators.values())
            if writes == seen:
                continue  # nothing was asked that could change the state: no need to serialise it
            try:
                self.save_state()
                seen = writes
            except Exception:  # a full disk must not stop the sandbox; the next save tries again
                log.exception("could not save the sandbox state to %s", self.state_file)

    def env(self) -> dict[str, str]:
        """The credentials, ``KEY -> value`` in :data:`ENV_KEYS` order."""
        merged: dict[str, str] = {}
        for emulator in self.emulators.values():
            merged.update(emulator.credentials())
        missing = [k for k in ENV_KEYS if k not in merged]
        if missing:
            raise RuntimeError(f"emulators did not provide {missing}")
        return {k: merged[k] for k in ENV_KEYS}

    def write_env(self, path: Path) -> None:
        """Write the credentials as KEY=value lines: readable by the owner only from the start, and
        atomically (a reader never sees a half-written file)."""
        lines = [f"{k}={v}" for k, v in self.env().items()]
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(lines) + "\n")
        os.chmod(partial, 0o600)
        os.replace(partial, path)

    def _load_state(self) -> bool:
        if self.state_file is None or not self.state_file.exists():
            return False
        data = json.loads(self.state_file.read_text())
        for name, emulator in self.emulators.items():
            if name in data:
                emulator.restore_state(data[name])
        return True

    def save_state(self) -> bool:
        """Write the state file (atomically) if the state changed since the last write; True if written."""
        if self.state_file is None:
            return False
        with self._save_lock:
            parts = []
            for name, emulator in self.emulators.items():
                with emulator.lock:  # serialised under the lock: the state is live
                    parts.append(f"{json.dumps(name)}: {json.dumps(emulator.dump_state())}")
            text = "{" + ", ".join(parts) + "}"
            if text == self._saved and self.state_file.exists():
                return False
            tmp = self.state_file.with_suffix(self.state_file.suffix + ".tmp")
            tmp.write_text(text)
            tmp.replace(self.state_file)
            self._saved = text
            return True


@contextmanager
def serve(
    emulator: Emulator, *, host: str = "127.0.0.1", port: int = 0, materials: Materials | None = None
) -> Iterator[BackgroundServer]:
    """Serve one emulator in-process (HTTPS when ``materials`` are given): for tests."""
    server = BackgroundServer(
        emulator.app(),
        host,
        port,
        certfile=materials.cert_file if materials else None,
        keyfile=materials.key_file if materials else None,
    )
    emulator.on_bound(server.url)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        emulator.close()
