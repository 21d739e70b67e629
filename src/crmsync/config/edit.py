"""Edit ``crmsync.yaml`` from the dashboard: a flow's field map, a connection's credentials.

An edit is made on the file's YAML round-trip tree (ruamel.yaml), so comments, key order, quoting
and flow-style mappings (``- {source: a, target: B}``) stay as they were; only the edited values
change. The candidate text is validated exactly as ``crmsync check`` validates a file
(:func:`crmsync.config.loader.parse_config`): a refused edit raises :class:`ConfigError` with the
same ``<file>:<line>: <key>: <what>`` problems, and nothing is written. Credentials never go into
the file: they are saved in the encrypted secret store (:mod:`crmsync.config.secrets`) and the
file names them, ``${secret:NAME}``.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import SecretStr
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.util import load_yaml_guess_indent

from crmsync.config.interpolate import Sources, read_dotenv
from crmsync.config.loader import parse_config
from crmsync.config.models import Config
from crmsync.config.secrets import SecretStore
from crmsync.connectors import registry
from crmsync.errors import ConfigError

#: the keys of a field mapping the Settings page edits, in the order they are written
FIELD_KEYS = ("source", "target", "transform", "owner", "direction")


@dataclass(frozen=True)
class FieldRow:
    """One field mapping as the Settings page edits it (other keys of the mapping are kept)."""

    source: str
    target: str
    transform: str | None = None
    owner: str | None = None
    direction: str | None = None


def secret_fields(connection_type: str) -> list[str]:
    """The settings of a connection type that are secrets (credentials), in declaration order."""
    model = registry.settings_model(connection_type)
    return [name for name, info in model.model_fields.items() if _is_secret(info.annotation)]


def _is_secret(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, SecretStr):
        return True
    if get_origin(annotation) in (types.UnionType, typing.Union, typing.Annotated):
        return any(_is_secret(a) for a in get_args(annotation))
    return False


def secret_name(connection: str, field: str) -> str:
    """The secret store's name of a connection's credential, e.g. ``TRELLO_TOKEN``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{connection}_{field}").upper()


class ConfigEditor:
    """Edits of the configuration file behind ``config`` (its variables read the same way)."""

    def __init__(self, config: Config) -> None:
        if config.path is None:
            raise ConfigError("this configuration was not read from a file: it cannot be edited")
        self.path: Path = config.path
        sources = config._sources
        self.environ: Mapping[str, str] = dict(sources.environ) if sources is not None else dict(os.environ)
        self.secrets = SecretStore(self.path, self.environ)
        self._yaml = YAML()
        self._yaml.preserve_quotes = True
        self._yaml.width = 4096

    def _load(self) -> tuple[str, Any]:
        text = self.path.read_text(encoding="utf-8")
        _, sequence, offset = load_yaml_guess_indent(text)
        mapping = _mapping_indent(text)
        # lists indented as the file indents them ("  - a" under a key, or "- a" flush)
        self._yaml.indent(mapping=mapping, sequence=max(sequence or 2, (offset or 0) + 2), offset=offset or 0)
        return text, self._yaml.load(text)

    def _dump(self, tree: Any) -> str:
        out = io.StringIO()
        self._yaml.dump(tree, out)
        return out.getvalue()

    def validate(self, text: str, secrets: Mapping[str, str] | None = None) -> Config:
        """``text`` read as ``crmsync check`` reads the file (with ``secrets`` about to be saved)."""
        pending = dict(secrets or {})
        sources = Sources(
            environ=self.environ,
            dotenv=read_dotenv(self.path.parent / ".env"),
            secrets=lambda: {**self.secrets.read(), **pending},
        )
        return parse_config(text, path=self.path, sources=sources)

    # -- field maps -----------------------------------------------------------------------------

    def fields_of(self, flow: str) -> list[FieldRow]:
        """The flow's field map as written in the file (values before interpolation)."""
        _, tree = self._load()
        rows = []
        for item in _flow(tree, flow).get("fields") or []:
            if isinstance(item, Mapping):
                rows.append(
                    FieldRow(**{k: (None if item.get(k) is None else str(item.get(k))) for k in FIELD_KEYS})  # type: ignore[arg-type]
                )
        return rows

    def with_fields(self, flow: str, rows: Sequence[FieldRow]) -> str:
        """The file's text with the flow's field map set to ``rows`` (row i edits the file's i-th
        mapping, keeping its other keys and its style; extra rows are added, missing ones removed)."""
        _, tree = self._load()
        target = _flow(tree, flow)
        fields = target.get("fields")
        if not isinstance(fields, CommentedSeq):
            fields = CommentedSeq()
            target["fields"] = fields
        flow_style = bool(fields) and isinstance(fields[0], CommentedMap) and fields[0].fa.flow_style()
        for i, row in enumerate(rows):
            if i < len(fields) and isinstance(fields[i], CommentedMap):
                item = fields[i]
            else:
                item = CommentedMap()
                if flow_style:
                    item.fa.set_flow_style()
                if i < len(fields):
                    fields[i] = item
                else:
                    fields.append(item)
            for key in FIELD_KEYS:
                value = getattr(row, key)
                if value in (None, ""):
                    if key in item:
                        del item[key]
                elif item.get(key) != value:
                    item[key] = value
        while len(fields) > len(rows):
            del fields[len(fields) - 1]
        return self._dump(tree)

    # -- credentials ----------------------------------------------------------------------------

    def with_credentials(self, connection: str, values: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        """The file's text with the connection's credentials named from the secret store, and the
        secrets to save. Only non-empty values change (an empty field keeps the current one)."""
        _, tree = self._load()
        connections = tree.get("connections") if isinstance(tree, Mapping) else None
        conn = connections.get(connection) if isinstance(connections, Mapping) else None
        if not isinstance(conn, CommentedMap):
            raise ConfigError(f"no connection {connection!r} in {self.path}")
        allowed = secret_fields(str(conn.get("type")))
        secrets: dict[str, str] = {}
        for field, value in values.items():
            if field not in allowed:
                raise ConfigError(
                    f"{field!r} is not a credential of {connection}; valid: {', '.join(allowed)}"
                )
            if not value:
                continue
            name = secret_name(connection, field)
            secrets[name] = value
            conn[field] = "${secret:" + name + "}"
        return self._dump(tree), secrets

    # -- saving ---------------------------------------------------------------------------------

    def save(self, text: str, secrets: Mapping[str, str] | None = None) -> Config:
        """Validate, then save the secrets and the file (atomically, its mode kept); the new
        configuration. A refused edit raises :class:`ConfigError` and writes nothing."""
        config = self.validate(text, secrets)
        if secrets:
            self.secrets.save(secrets)
        _replace(self.path, text)
        return config


def _mapping_indent(text: str) -> int:
    """The indent of the file's first nested key (2 when there is none)."""
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if stripped and not stripped.startswith(("#", "-")) and len(stripped) < len(line):
            return len(line) - len(stripped)
    return 2


def _flow(tree: Any, flow: str) -> CommentedMap:
    flows = tree.get("flows") if isinstance(tree, Mapping) else None
    found = flows.get(flow) if isinstance(flows, Mapping) else None
    if not isinstance(found, CommentedMap):
        raise ConfigError(f"no flow {flow!r} in the configuration file")
    return found


def _replace(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def reload(config: Config) -> Config:
    """The configuration file behind ``config`` read again, with the same environment."""
    if config.path is None:
        return config
    return ConfigEditor(config).validate(config.path.read_text(encoding="utf-8"))


__all__ = ["ConfigEditor", "FieldRow", "reload", "secret_fields", "secret_name"]
