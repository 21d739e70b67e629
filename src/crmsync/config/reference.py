"""The key tables and the transform list of ``docs/configuration.md``, generated from the code.

``python -m crmsync.config.reference docs/configuration.md`` rewrites the generated blocks of
the document in place; a unit test fails when the document and the models drift apart.
"""

from __future__ import annotations

import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from crmsync.config import models
from crmsync.connectors import registry
from crmsync.engine import transforms


def _connection_sections() -> list[tuple[str, type[BaseModel]]]:
    """One section per registered connection type's settings model, and per model nested in it."""
    out: list[tuple[str, type[BaseModel]]] = []
    for kind in registry.kinds():
        model = registry.settings_model(kind)
        out.append((f"connections.NAME (type: {kind})", model))
        for key, info in model.model_fields.items():
            inner = get_args(info.annotation)[0] if get_origin(info.annotation) is list else info.annotation
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                suffix = "[]" if get_origin(info.annotation) is list else ""
                out.append((f"connections.NAME.{key}{suffix} (type: {kind})", inner))
    return out


#: each section of the file: (heading, model)
SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("top level", models.Config),
    ("store", models.StoreConfig),
    ("web", models.WebConfig),
    ("worker", models.WorkerConfig),
    ("worker.backoff", models.BackoffConfig),
    ("alerts", models.AlertsConfig),
    *_connection_sections(),
    ("flows.NAME", models.Flow),
    ("flows.NAME.fields[]", models.FieldMapping),
    ("flows.NAME.match", models.MatchRule),
    ("flows.NAME.lock", models.LockRule),
    ("flows.NAME.conflict", models.ConflictPolicy),
    ("views.NAME", models.View),
    ("views.NAME.params.PARAM", models.ViewParam),
    ("jobs.NAME", models.JobConfig),
]


def _job_sections() -> list[tuple[str, type[BaseModel]]]:
    """One section per built-in job's settings (``args:``), and per list of mappings in them."""
    from crmsync.jobs import registry

    out: list[tuple[str, type[BaseModel]]] = []
    for cls in registry.builtin():
        out.append((f"jobs.NAME.args (job: {cls.name})", cls.Settings))
        for key, info in cls.Settings.model_fields.items():
            inner = get_args(info.annotation)[0] if get_origin(info.annotation) is list else None
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                out.append((f"jobs.NAME.args.{key}[] (job: {cls.name})", inner))
    return out


SECTIONS += _job_sections()

BLOCKS = ("keys", "transforms")


def type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(str(a) for a in get_args(annotation))
    if origin in (types.UnionType, typing.Union):
        members = [a for a in get_args(annotation) if a is not type(None)]
        name = " or ".join(type_name(a) for a in members)
        return name + (" or null" if len(members) < len(get_args(annotation)) else "")
    if origin is typing.Annotated:
        return type_name(get_args(annotation)[0])
    if origin is dict:
        return f"mapping of {type_name(get_args(annotation)[1])}"
    if origin is list:
        return f"list of {type_name(get_args(annotation)[0])}"
    simple = {
        str: "text",
        int: "integer",
        float: "number",
        bool: "boolean",
        SecretStr: "secret",
        Path: "file",
    }
    if annotation in simple:
        return simple[annotation]
    if isinstance(annotation, type) and issubclass(annotation, SecretStr):  # e.g. a database URL
        return "secret"
    if annotation is Any:
        return "any"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        heading = next((h for h, m in SECTIONS if m is annotation), None)
        return f"mapping (`{heading}`)" if heading else "mapping"
    return str(annotation)


def _default(info: Any) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        value = info.default_factory()
        return "see below" if isinstance(value, BaseModel) else f"`{value!r}`"
    if info.default is PydanticUndefined:
        return "required"
    if info.default is None:
        return "`null`"
    return f"`{info.default}`" if not isinstance(info.default, str) else f'`"{info.default}"`'


def keys_markdown() -> str:
    """One table per section: key, type, default, description."""
    out: list[str] = []
    for heading, model in SECTIONS:
        out += [f"### `{heading}`", "", "| key | type | default | description |", "|---|---|---|---|"]
        for name, info in model.model_fields.items():
            description = (info.description or "").replace("|", "\\|")
            kind = "mapping of connections" if name == "connections" else type_name(info.annotation)
            out.append(f"| `{name}` | {kind} | {_default(info)} | {description} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def transforms_markdown() -> str:
    """One row per built-in transform (plug-ins installed here are left out): name, args, docstring."""
    out = ["| transform | args | what it does |", "|---|---|---|"]
    for name in transforms.names():
        t = transforms.get(name)
        if not t.function.__module__.startswith(f"{transforms.__name__}."):
            continue
        args = [f"`{a}`" for a in t.required_args] + [f"`{a}`?" for a in t.optional_args]
        text = " ".join(line.strip() for line in t.doc.strip().splitlines() if line.strip())
        text = text.replace("|", "\\|")
        out.append(f"| `{name}` | {', '.join(args) or '—'} | {text} |")
    return "\n".join(out) + "\n"


def render(block: str) -> str:
    return keys_markdown() if block == "keys" else transforms_markdown()


def _pattern(block: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- generated: {block} -->\n)(.*?)(<!-- end generated: {block} -->)",
        re.DOTALL,
    )


def update(document: str) -> str:
    """``document`` with every generated block replaced by its current content."""
    for block in BLOCKS:
        content = render(block)

        def replace(m: re.Match[str], content: str = content) -> str:
            return m.group(1) + content + m.group(3)

        document = _pattern(block).sub(replace, document)
    return document


def stale_blocks(document: str) -> list[str]:
    """The generated blocks of ``document`` that are missing or out of date."""
    return [b for b in BLOCKS if (m := _pattern(b).search(document)) is None or m.group(2) != render(b)]


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "docs/configuration.md")
    path.write_text(update(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
