"""Checks that span sections of ``crmsync.yaml``: names that must refer to something declared.

They read the plain data (not the models) so that they run even when some other part of the
file is invalid: ``crmsync check`` reports every problem at once. Each problem is a dotted path
(as a tuple) and what is wrong; :mod:`crmsync.config.loader` adds the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from crmsync.connectors import registry
from crmsync.connectors.base import Connector
from crmsync.connectors.capabilities import (
    CHANGE_SOURCES,
    IngestSource,
    PolledSource,
    Queryable,
    WebhookSource,
    Writable,
    missing,
    offers,
)
from crmsync.engine import transforms
from crmsync.errors import ConfigError

Path_ = tuple[str | int, ...]
Problem = tuple[Path_, str]

_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_PARAM = re.compile(r"(?<![\w:]):([A-Za-z_]\w*)")


def query_params(query: str) -> list[str]:
    """The ``:name`` placeholders of a query, in order, outside quoted literals."""
    names: list[str] = []
    for name in _PARAM.findall(_QUOTED.sub("''", query)):
        if name not in names:
            names.append(name)
    return names


def _connector_class(conn: Any) -> type[Connector] | None:
    """The connector class of a raw connection (None: no or unknown type, reported elsewhere)."""
    kind = _mapping(conn).get("type")
    if not isinstance(kind, str) or kind not in registry.kinds():
        return None
    return registry.connector_class(kind)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _choices(names: Any) -> str:
    return ", ".join(sorted(str(n) for n in names)) or "(none declared)"


def check(data: Mapping[str, Any], base_dir: Path) -> list[Problem]:
    """Every cross-section problem of the raw configuration ``data``."""
    return [
        *_check_flows(_mapping(data.get("flows")), _mapping(data.get("connections"))),
        *_check_shapes(_mapping(data.get("flows")), _mapping(data.get("connections"))),
        *_check_views(_mapping(data.get("views")), _mapping(data.get("connections"))),
    ]


def _check_flows(flows: Mapping[str, Any], connections: Mapping[str, Any]) -> Iterator[Problem]:
    for name, flow in flows.items():
        flow = _mapping(flow)
        here: Path_ = ("flows", name)
        for side in ("source", "target"):
            ref = flow.get(side)
            if isinstance(ref, str) and ref not in connections:
                yield (*here, side), f"unknown connection {ref!r}; valid: {_choices(connections)}"
        raw_fields = flow.get("fields")
        raw_fields = raw_fields if isinstance(raw_fields, list) else []
        mappings = [m for m in raw_fields if isinstance(m, Mapping)]
        yield from _check_fields(here, raw_fields)
        sources = {m.get("source") for m in mappings}
        targets = {m.get("target") for m in mappings}
        key = flow.get("key")
        source_name = flow.get("source")
        source_conn = _mapping(connections.get(source_name)) if isinstance(source_name, str) else {}
        # an application names its records by a field it sends; other systems by their own ids
        source_cls = _connector_class(source_conn)
        names_by_field = not source_conn or (source_cls is not None and offers(source_cls, IngestSource))
        if isinstance(key, str) and mappings and names_by_field and key not in sources:
            yield (*here, "key"), f"{key!r} is not a mapped source field; mapped: {_choices(sources)}"
        match = _mapping(flow.get("match"))
        if isinstance(match.get("field"), str) and mappings and match["field"] not in targets:
            yield (
                (*here, "match", "field"),
                f"{match['field']!r} is not a mapped target field; mapped: {_choices(targets)}",
            )
        lock = _mapping(flow.get("lock"))
        if isinstance(lock.get("key"), str) and mappings and lock["key"] not in sources:
            yield (
                (*here, "lock", "key"),
                f"{lock['key']!r} is not a mapped source field; mapped: {_choices(sources)}",
            )
        if isinstance(lock.get("message"), str):
            yield from _check_message(here, lock["message"], sources)


def _check_shapes(flows: Mapping[str, Any], connections: Mapping[str, Any]) -> Iterator[Problem]:
    """Can the connectors run each flow's shape? The source's changes must come from somewhere (a
    change source), the target must take writes; a flow carrying fields back also writes to the
    source and learns of the target's changes (polled or by webhooks)."""
    for name, flow in flows.items():
        flow = _mapping(flow)
        here: Path_ = ("flows", name)
        source, target = flow.get("source"), flow.get("target")
        if not isinstance(source, str) or not isinstance(target, str):
            continue
        if source == target:
            yield (
                (*here, "target"),
                f"the flow's source is its target ({source!r}): it would read its own writes",
            )
            continue
        source_cls, target_cls = (
            _connector_class(connections.get(source)),
            _connector_class(connections.get(target)),
        )
        raw = flow.get("fields")
        back = any(
            isinstance(m, Mapping) and m.get("direction") in ("both", "to_source")
            for m in (raw if isinstance(raw, list) else [])
        )
        where = f"flow {name!r}"
        if source_cls is not None and offers(source_cls, IngestSource):
            back = False  # an application's flow is one-way: what flows back is read through the API
        if source_cls is not None:
            if not any(offers(source_cls, proto) for proto in CHANGE_SOURCES):
                yield (
                    (*here, "source"),
                    (
                        f"connection {source!r} (type {source_cls.kind}) has no change source "
                        f"(PolledSource, WebhookSource or IngestSource), needed by {where}"
                    ),
                )
            if back and not offers(source_cls, Writable):
                yield (
                    (*here, "source"),
                    missing(source_cls.kind, source, Writable, f"{where} (fields back)").message,
                )
        if target_cls is not None:
            if not offers(target_cls, Writable):
                yield (*here, "target"), missing(target_cls.kind, target, Writable, where).message
            if back and not (offers(target_cls, PolledSource) or offers(target_cls, WebhookSource)):
                yield (
                    (*here, "target"),
                    (
                        f"connection {target!r} (type {target_cls.kind}) cannot tell its changes "
                        f"(PolledSource or WebhookSource), needed by {where} (fields back)"
                    ),
                )


def _check_fields(here: Path_, fields: list[Any]) -> Iterator[Problem]:
    seen: dict[tuple[str, str], int] = {}
    for i, mapping in enumerate(fields):
        if not isinstance(mapping, Mapping):
            continue
        target, direction = mapping.get("target"), mapping.get("direction", "to_target")
        if isinstance(target, str) and direction in ("to_target", "both"):
            if (target, "to") in seen:
                yield (
                    (*here, "fields", i, "target"),
                    f"{target!r} is also written by fields[{seen[target, 'to']}]",
                )
            seen.setdefault((target, "to"), i)
        name = mapping.get("transform")
        if not isinstance(name, str):
            continue
        try:
            t = transforms.get(name)
        except ConfigError as exc:
            yield (*here, "fields", i, "transform"), exc.message
            continue
        args = mapping.get("args")
        for problem in t.check_args(args if isinstance(args, Mapping) else {}):
            yield (*here, "fields", i, "args"), problem


def _check_message(here: Path_, message: str, sources: set[Any]) -> Iterator[Problem]:
    try:
        names = transforms.template_fields(message)
    except ValueError as exc:
        yield (*here, "lock", "message"), f"not a valid message template: {exc}"
        return
    for field in names:
        if field != "parent" and field not in sources:
            valid = _choices({*sources, "parent"})
            yield (*here, "lock", "message"), f"{{{field}}} is not a mapped source field; valid: {valid}"


def _check_views(views: Mapping[str, Any], connections: Mapping[str, Any]) -> Iterator[Problem]:
    for name, view in views.items():
        view = _mapping(view)
        here: Path_ = ("views", name)
        ref = view.get("connection")
        if isinstance(ref, str):
            if ref not in connections:
                yield (*here, "connection"), f"unknown connection {ref!r}; valid: {_choices(connections)}"
            else:
                cls = _connector_class(connections[ref])
                if cls is not None and not offers(cls, Queryable):
                    yield (*here, "connection"), missing(cls.kind, ref, Queryable, f"view {name!r}").message
        query = view.get("query")
        params = _mapping(view.get("params"))
        if not isinstance(query, str):
            continue
        used = query_params(query)
        for p in used:
            if p not in params:
                yield (*here, "query"), f"uses :{p}, which params does not declare"
        for p in params:
            if p not in used:
                yield (*here, "params", p), f"declared but the query does not use :{p}"
