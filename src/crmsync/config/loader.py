"""Read ``crmsync.yaml`` into a :class:`~crmsync.config.models.Config`, or list every problem.

The file is composed into YAML nodes (which know their line), turned into plain data while
``${VARS}`` are interpolated, validated by the models, then cross-checked
(:mod:`crmsync.config.checks`). Every problem, from any stage, becomes one line
``<file>:<line>: <dotted.key>: <what is wrong>`` of one :class:`crmsync.errors.ConfigError`.
Problems never quote the values they complain about, so secrets cannot leak through them.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from crmsync.config import checks
from crmsync.config.interpolate import Sources, has_variables, interpolate, read_dotenv
from crmsync.config.models import CONNECTION_TYPES, Config
from crmsync.config.secrets import SecretStore
from crmsync.errors import ConfigError

DEFAULT_PATH = Path("crmsync.yaml")

Key = tuple[str | int, ...]


@dataclass
class _Problem:
    line: int
    path: Key
    message: str
    #: found while reading the file (YAML, variables): later problems at the same key are its echoes
    primary: bool = False


@dataclass
class _Document:
    """Plain data read from the nodes, with the line of every key and where variables came from."""

    file: str
    sources: Sources
    lines: dict[Key, int] = field(default_factory=lambda: {(): 1})
    origins: dict[str, str] = field(default_factory=dict)
    variables: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    problems: list[_Problem] = field(default_factory=list)

    def line_of(self, path: Key) -> int:
        for n in range(len(path), -1, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return 1

    def add(self, path: Key, message: str, line: int | None = None, *, primary: bool = False) -> None:
        self.problems.append(_Problem(line or self.line_of(path), path, message, primary))

    def formatted(self) -> list[str]:
        # a value whose variable is missing gets that one problem, not also "required but not set"
        unreadable = {p.path for p in self.problems if p.primary}
        kept = [p for p in self.problems if p.primary or p.path not in unreadable]
        out = []
        for p in sorted(kept, key=lambda p: p.line):
            where = dotted(p.path) or "(file)"
            out.append(f"{self.file}:{p.line}: {where}: {p.message}")
        return out


def dotted(path: Key) -> str:
    return ".".join(str(p) for p in path)


def load_config(path: Path | str = DEFAULT_PATH, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate, validate and cross-check the configuration file at ``path``.

    Variables come from ``environ`` (default: the process environment), then from the ``.env``
    file next to ``path``, then from ``${VAR:-default}``. Raises :class:`ConfigError` listing
    every problem, or, when there is no file, saying so and suggesting ``crmsync init``.
    """
    path = Path(path)
    if not path.is_file():
        message = f"{path}: no configuration file here; create one with `crmsync init`"
        raise ConfigError(message, problems=[message])
    env = dict(os.environ if environ is None else environ)
    sources = Sources(
        environ=env, dotenv=read_dotenv(path.parent / ".env"), secrets=SecretStore(path, env).read
    )
    return parse_config(path.read_text(encoding="utf-8"), path=path, sources=sources)


def parse_config(text: str, *, path: Path, sources: Sources) -> Config:
    """Validate configuration ``text`` as if read from ``path`` (whose folder relative paths use)."""
    doc = _Document(file=str(path), sources=sources)
    data = _compose(text, doc)
    if data is None:
        if not doc.problems:
            doc.add((), "the file is empty; `crmsync init` writes a starter file")
        raise _error(doc)
    if not isinstance(data, dict):
        doc.add((), "the file must be a mapping of sections (version, store, connections, flows, ...)")
        raise _error(doc)
    base_dir = path.parent.resolve()
    config: Config | None = None
    try:
        config = Config.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            _add_validation_error(doc, data, error)
    for where, message in checks.check(data, base_dir):
        doc.add(where, message)
    if doc.problems or config is None:
        raise _error(doc)
    config._path = path
    config._origins = dict(doc.origins)
    config._variables = dict(doc.variables)
    config._lines = dict(doc.lines)
    config._sources = sources
    return config


def _error(doc: _Document) -> ConfigError:
    problems = doc.formatted()
    count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
    return ConfigError(f"{doc.file} is invalid ({count})", problems=problems)


# ---------------------------------------------------------------- YAML nodes → data


def _compose(text: str, doc: _Document) -> Any:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        doc.problems.append(_Problem(line, (), f"YAML syntax: {what}"))
        return None
    except yaml.YAMLError as exc:
        doc.problems.append(_Problem(1, (), f"YAML: {exc}"))
        return None
    if root is None:
        return None
    return _Builder(doc).build(root, ())


class _Builder:
    def __init__(self, doc: _Document) -> None:
        self.doc = doc
        self.constructor = SafeConstructor()

    def build(self, node: Node, path: Key) -> Any:
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            items = []
            for i, child in enumerate(node.value):
                self.doc.lines[(*path, i)] = child.start_mark.line + 1
                items.append(self.build(child, (*path, i)))
            return items
        return self._scalar(node, path)

    def _scalar(self, node: Node, path: Key) -> Any:
        try:
            value = self.constructor.construct_object(node, deep=True)
        except ConstructorError as exc:
            self.doc.add(path, f"YAML: {exc.problem}", node.start_mark.line + 1, primary=True)
            return None
        if not isinstance(value, str) or not has_variables(value):
            return value
        result = interpolate(value, self.doc.sources)
        for problem in result.problems:
            self.doc.add(path, problem, node.start_mark.line + 1, primary=True)
        if result.substitutions:
            origins = list(dict.fromkeys(s.origin for s in result.substitutions))
            self.doc.origins[dotted(path)] = ", ".join(origins)
            self.doc.variables[dotted(path)] = tuple((s.variable, s.origin) for s in result.substitutions)
        plain = isinstance(node, ScalarNode) and node.style is None
        if plain and result.whole and result.text == "":
            return None  # like an empty value in YAML; quote it to keep an empty string
        return result.text

    def _mapping(self, node: MappingNode, path: Key) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                merged.update(self._merge(value_node, path, line))
                continue
            if not isinstance(key_node, ScalarNode):
                self.doc.add(path, "a key must be a plain value, not a list or mapping", line)
                continue
            key = self.constructor.construct_object(key_node, deep=True)
            if key in first_line:
                self.doc.add((*path, key), f"duplicate key (first at line {first_line[key]})", line)
                continue
            first_line[key] = line
            self.doc.lines[(*path, key)] = line
            out[key] = self.build(value_node, (*path, key))
        return {**merged, **out}

    def _merge(self, node: Node, path: Key, line: int) -> dict[Any, Any]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        merged: dict[Any, Any] = {}
        for source in reversed(sources):
            value = self.build(source, path)
            if not isinstance(value, dict):
                self.doc.add(path, "<< merges a mapping only", line)
                continue
            merged.update(value)
        return merged


# ---------------------------------------------------------------- pydantic errors → problems


def _add_validation_error(doc: _Document, data: Any, error: Mapping[str, Any]) -> None:
    path = _normalise(tuple(error["loc"]), data)
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        doc.add(path, "required key is missing")
    elif kind == "extra_forbidden":
        doc.add(path, _unknown_key(path, data))
    elif kind == "union_tag_invalid":
        tag = ctx.get("tag")
        doc.add((*path, "type"), f"unknown connection type {tag!r}; valid: {', '.join(CONNECTION_TYPES)}")
    elif kind == "union_tag_not_found":
        doc.add((*path, "type"), f"required key is missing; valid: {', '.join(CONNECTION_TYPES)}")
    else:
        doc.add(path, str(error["msg"]))


def _normalise(loc: Key, data: Any) -> Key:
    """pydantic's error location as a path in the data (tags of unions and validators removed)."""
    out: list[str | int] = []
    node = data
    for element in loc:
        if _has(node, element):
            node = node[element]
        elif isinstance(node, dict) and isinstance(element, str) and node.get("type") == element:
            continue  # the discriminated union's tag
        elif isinstance(element, str) and element.endswith("]") and "[" in element:
            continue  # "[key]", "function-after[...]"
        else:
            node = None
        out.append(element)
    return tuple(out)


def _has(node: Any, element: str | int) -> bool:
    if isinstance(node, dict):
        return element in node
    return isinstance(node, list) and isinstance(element, int) and 0 <= element < len(node)


def _unknown_key(path: Key, data: Any) -> str:
    model = _model_at(path[:-1], data)
    if model is None:
        return "unknown key"
    valid = list(model.model_fields)
    message = f"unknown key; valid: {', '.join(valid)}"
    close = difflib.get_close_matches(str(path[-1]), valid, n=1)
    return message + (f" (did you mean {close[0]!r}?)" if close else "")


def _model_at(path: Key, data: Any) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` of ``data``."""
    annotation: Any = Config
    node = data
    for element in path:
        annotation = _unwrap(annotation, node)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info = annotation.model_fields.get(str(element))
            if info is None:
                return None
            nested = getattr(annotation, "nested_model", None)  # a key whose model depends on the data
            annotation = (nested(str(element), node) if nested else None) or info.annotation
        elif get_origin(annotation) in (dict, list):
            annotation = get_args(annotation)[-1]
        else:
            return None
        try:
            node = node[element]
        except (KeyError, IndexError, TypeError):
            node = None
    annotation = _unwrap(annotation, node)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _unwrap(annotation: Any, node: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (types.UnionType, typing.Union):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
            tag = node.get("type") if isinstance(node, dict) else None
            chosen = [
                m
                for m in members
                if isinstance(m, type)
                and issubclass(m, BaseModel)
                and tag in get_args(m.model_fields["type"].annotation)
            ]
            return chosen[0] if chosen else None
        else:
            return annotation
