"""The executable schema (built once from ``schema.graphql``) and a cache of checked documents.

Parsing and validating a query costs far more than running it against the in-memory account,
so both are done once per distinct query text (:class:`DocumentCache`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cache
from importlib import resources

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    build_schema,
    parse,
    validate,
    value_from_ast_untyped,
)

from crmsync.sandbox.monday.resolvers import all_resolvers


def _sdl() -> str:
    return resources.files("crmsync.sandbox.monday").joinpath("schema.graphql").read_text()


@cache
def monday_schema() -> GraphQLSchema:
    schema = build_schema(_sdl())
    for type_name, fields in all_resolvers().items():
        graphql_type = schema.get_type(type_name)
        if not isinstance(graphql_type, GraphQLObjectType | GraphQLInterfaceType):
            raise TypeError(f"resolvers given for {type_name}, which is not an object type")
        for field_name, resolver in fields.items():
            graphql_type.fields[field_name].resolve = resolver
    column_value = schema.get_type("ColumnValue")
    assert isinstance(column_value, GraphQLInterfaceType)
    column_value.resolve_type = lambda value, info, abstract: value["__typename"]
    for name in ("JSON", "CompareValue"):
        scalar = schema.get_type(name)
        assert isinstance(scalar, GraphQLScalarType)
        scalar.parse_literal = lambda node, variables=None: value_from_ast_untyped(node, variables)  # type: ignore[method-assign]
    return schema


@dataclass(frozen=True)
class CheckedDocument:
    document: DocumentNode | None
    syntax_error: GraphQLSyntaxError | None
    errors: tuple[GraphQLError, ...]

    def operation(self, name: str | None) -> OperationDefinitionNode | None:
        if self.document is None:
            return None
        operations = [d for d in self.document.definitions if isinstance(d, OperationDefinitionNode)]
        if name is None:
            return operations[0] if len(operations) == 1 else None
        return next((o for o in operations if o.name is not None and o.name.value == name), None)


class DocumentCache:
    """Parsed and validated documents by query text (least recently used ones dropped)."""

    def __init__(self, schema: GraphQLSchema, size: int = 1024) -> None:
        self.schema = schema
        self.size = size
        self._docs: OrderedDict[str, CheckedDocument] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, query: str) -> CheckedDocument:
        with self._lock:
            found = self._docs.get(query)
            if found is not None:
                self._docs.move_to_end(query)
                return found
        checked = self._check(query)
        with self._lock:
            self._docs[query] = checked
            while len(self._docs) > self.size:
                self._docs.popitem(last=False)
        return checked

    def _check(self, query: str) -> CheckedDocument:
        try:
            document = parse(query)
        except GraphQLSyntaxError as exc:
            return CheckedDocument(None, exc, ())
        return CheckedDocument(document, None, tuple(validate(self.schema, document)))
