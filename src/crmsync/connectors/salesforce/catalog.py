"""The objects and fields of a Salesforce org, for ``crmsync check --connect``: from its describe
calls (one per object, cached) and the list of its objects (one call)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from crmsync.errors import CrmsyncError

if TYPE_CHECKING:
    from crmsync.connectors.salesforce.client import SalesforceClient


class SalesforceCatalog:
    """Objects, fields and relationships, as :class:`~crmsync.connectors.capabilities.Catalog`."""

    def __init__(self, client: SalesforceClient) -> None:
        self.client = client
        self._objects: list[str] | None = None
        self._describes: dict[str, dict[str, Any] | None] = {}

    def object_names(self) -> Sequence[str]:
        if self._objects is None:
            body = self.client.request("GET", "sobjects").body
            self._objects = [str(o["name"]) for o in body.get("sobjects", [])]
        return self._objects

    def _describe(self, object_name: str) -> dict[str, Any] | None:
        key = object_name.lower()
        if key not in self._describes:
            try:
                self._describes[key] = dict(self.client.describe(object_name))
            except CrmsyncError as exc:
                if exc.vendor_code not in ("NOT_FOUND", "INVALID_TYPE"):
                    raise
                self._describes[key] = None
        return self._describes[key]

    def field_names(self, object_name: str) -> Sequence[str] | None:
        describe = self._describe(object_name)
        return None if describe is None else [str(f["name"]) for f in describe.get("fields", [])]

    def parent_of(self, object_name: str, relationship: str) -> str | None:
        """The object a relationship name (``Account``, ``Contract__r``) of ``object_name`` leads to."""
        for f in (self._describe(object_name) or {}).get("fields", []):
            name = str(f.get("relationshipName") or "")
            if name.lower() == relationship.lower() and f.get("referenceTo"):
                return str(f["referenceTo"][0])
        return None

    def parents_of(self, object_name: str, relationship: str) -> Sequence[str]:
        """Every object a relationship may lead to: several for a polymorphic one (``Task.What``)."""
        for f in (self._describe(object_name) or {}).get("fields", []):
            name = str(f.get("relationshipName") or "")
            if name.lower() == relationship.lower() and f.get("referenceTo"):
                return [str(t) for t in f["referenceTo"]]
        return []

    def describe_missing(self, object_name: str) -> str:
        return f"no object {object_name!r} in this Salesforce org"
