"""Real crmsync processes (``crmsync serve`` and ``crmsync worker`` as subprocesses), kept running as a
process supervisor (systemd's ``Restart=always``) keeps them, and a monkey that kills them.

Every exit the monkey did not cause is recorded with the end of the process's log: the test reports
them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

#: how long the supervisor waits before starting a process that exited by itself (systemd's RestartSec)
RESTART_SECONDS = 2.0


def _store_unreachable_at_start(exit_report: str) -> bool:
    last = exit_report.rstrip().splitlines()[-1]
    return exit_report.split("\n", 1)[0].endswith(" exited with status 1:") and (
        last.startswith("crmsync: the store ") and "cannot be reached" in last
    )


@dataclass
class Member:
    name: str
    args: list[str]
    log: Path
    port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    killed: bool = False  # by the monkey: restart without recording an exit
    restart_at: float = 0.0
    starts: int = 0
    exits: list[str] = field(default_factory=list)  # exits nobody caused: status and log tail

    def answers(self) -> bool:
        if self.port is None:
            return True
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


class Fleet:
    def __init__(self, config: Path, directory: Path, env: dict[str, str]) -> None:
        self.config = config
        self.directory = directory
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.members: list[Member] = []
        self.kills = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, command: str, *extra: str, port: int | None = None) -> Member:
        n = sum(1 for m in self.members if m.name.startswith(command))
        args = [sys.executable, "-m", "crmsync", command, "-c", str(self.config), *extra]
        if port is not None:
            args += ["--port", str(port)]
        member = Member(f"{command}-{n}", args, self.directory / f"{command}-{n}.log", port)
        self.members.append(member)
        self._start(member)
        return member

    def _start(self, member: Member) -> None:
        with member.log.open("ab") as out:
            out.write(f"--- start {member.starts} at {time.strftime('%H:%M:%S')}\n".encode())
            out.flush()
            member.proc = subprocess.Popen(
                member.args, stdout=out, stderr=out, env=self.env, cwd=self.config.parent
            )
        member.starts += 1
        member.killed = False

    def supervise(self) -> None:
        """Restart any member that exited: at once when nobody killed it (and record why), or when
        the monkey said."""

        def loop() -> None:
            while not self._stop.wait(0.1):
                with self._lock:
                    for m in self.members:
                        assert m.proc is not None
                        status = m.proc.poll()
                        if status is None:
                            continue
                        if not m.killed:
                            tail = m.log.read_text(errors="replace").splitlines()[-15:]
                            m.exits.append(f"{m.name} exited with status {status}:\n" + "\n".join(tail))
                            m.killed, m.restart_at = True, time.monotonic() + RESTART_SECONDS
                        if time.monotonic() >= m.restart_at:
                            self._start(m)

        self._thread = threading.Thread(target=loop, name="supervisor", daemon=True)
        self._thread.start()

    def kill(self, member: Member, down_for: float) -> None:
        """SIGKILL ``member`` now; the supervisor starts it again ``down_for`` seconds later."""
        with self._lock:
            assert member.proc is not None
            member.killed, member.restart_at = True, time.monotonic() + down_for
            member.proc.send_signal(signal.SIGKILL)
            member.proc.wait()
            self.kills += 1

    def ready(self) -> bool:
        return all(m.proc is not None and m.proc.poll() is None and m.answers() for m in self.members)

    def unexpected_exits(self) -> list[str]:
        """Exits nobody caused, except the documented one: a process started while the store cannot
        be reached says so on one line and exits with status 1 (the supervisor starts it again)."""
        return [e for m in self.members for e in m.exits if not _store_unreachable_at_start(e)]

    def store_down_exits(self) -> int:
        return sum(1 for m in self.members for e in m.exits if _store_unreachable_at_start(e))

    def stop(self) -> list[int | None]:
        """SIGTERM to all (a clean stop); their exit statuses."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None:
                m.proc.send_signal(signal.SIGTERM)
        statuses = []
        for m in self.members:
            assert m.proc is not None
            try:
                statuses.append(m.proc.wait(60))
            except subprocess.TimeoutExpired:
                m.proc.kill()
                statuses.append(m.proc.wait())
        return statuses
