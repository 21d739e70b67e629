"""A PostgreSQL cluster of the test's own: ``initdb`` in a temporary folder, a free port, started and
stopped at will (``pg_ctl``) — the shared test server is never touched, since the chaos tests stop it.

The server binaries are found under ``/usr/lib/postgresql/*/bin`` (or on ``PATH``, or in
``CRMSYNC_PG_BIN``). PostgreSQL refuses to run as root: run as root, the cluster belongs to the
``postgres`` account and its commands run as that user (``runuser``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_binaries() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres`` (the newest installed version)."""
    given = os.environ.get("CRMSYNC_PG_BIN")
    if given:
        return Path(given)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError(
        "the PostgreSQL server binaries (initdb, pg_ctl) are required: install postgresql, or set "
        "CRMSYNC_PG_BIN to the folder holding them"
    )


class PostgresCluster:
    """``with PostgresCluster() as pg:`` — initialised and started; ``pg.url`` is its store URL."""

    def __init__(self) -> None:
        self.bin = server_binaries()
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="crmsync-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgresql.log"
        self._as_root = os.geteuid() == 0
        if self._as_root:  # the server refuses root: the folder and the server belong to postgres
            account = pwd.getpwnam("postgres")
            os.chown(self.directory, account.pw_uid, account.pw_gid)
        self.directory.chmod(0o700)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{tool} failed ({done.returncode}): {done.stderr}{done.stdout}\n{log[-2000:]}"
            )

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.directory} "
            "-c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        """``fast``: connections are cut, the server shuts down cleanly; ``immediate``: as a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def __enter__(self) -> PostgresCluster:
        self.init()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
