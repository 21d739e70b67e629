"""The secret store: credentials kept out of ``crmsync.yaml``, encrypted, and named from it.

``crmsync.yaml`` says ``token: ${secret:TRELLO_TOKEN}``; the value lives in ``crmsync.secrets``
next to it, a Fernet-encrypted JSON object (AES-128-CBC with an HMAC: unreadable and
tamper-evident without the key). The key comes from the environment variable
:data:`KEY_VARIABLE`, else from the key file :data:`KEY_FILE` next to the configuration (created,
readable by its owner only, the first time a secret is saved). The dashboard's Settings page
writes here; nothing else needs to: a secret is read when the configuration is loaded.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from crmsync.errors import ConfigError

SECRETS_FILE = "crmsync.secrets"
KEY_FILE = "crmsync.secrets.key"
KEY_VARIABLE = "CRMSYNC_SECRETS_KEY"


class SecretStore:
    """The encrypted secrets of the configuration file ``config_path``."""

    def __init__(self, config_path: Path, environ: Mapping[str, str] | None = None) -> None:
        folder = config_path.resolve().parent
        self.path = folder / SECRETS_FILE
        self.key_path = folder / KEY_FILE
        self._environ = os.environ if environ is None else environ
        self._cache: dict[str, str] | None = None

    def _key(self, *, create: bool) -> bytes | None:
        given = self._environ.get(KEY_VARIABLE)
        if given:
            return given.encode()
        if self.key_path.is_file():
            return self.key_path.read_bytes().strip()
        if not create:
            return None
        key = Fernet.generate_key()
        _write_private(self.key_path, key + b"\n")
        return key

    def read(self) -> dict[str, str]:
        """Every secret, decrypted (empty when there is no secrets file)."""
        if self._cache is not None:
            return dict(self._cache)
        if not self.path.is_file():
            return {}
        key = self._key(create=False)
        if key is None:
            raise ConfigError(
                f"{self.path}: no key to read it: set {KEY_VARIABLE} or restore {self.key_path}"
            )
        try:
            data = json.loads(Fernet(key).decrypt(self.path.read_bytes()))
        except (InvalidToken, ValueError) as exc:
            raise ConfigError(
                f"{self.path}: cannot be decrypted with the key ({KEY_VARIABLE} or {self.key_path})"
            ) from exc
        self._cache = {str(k): str(v) for k, v in data.items()}
        return dict(self._cache)

    def get(self, name: str) -> str | None:
        return self.read().get(name)

    def save(self, updates: Mapping[str, str]) -> None:
        """Set these secrets (the others are kept), encrypted, in one atomic write."""
        values = {**self.read(), **updates}
        key = self._key(create=True)
        assert key is not None
        token = Fernet(key).encrypt(json.dumps(values, sort_keys=True).encode())
        _write_private(self.path, token)
        self._cache = values


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by its owner only."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
