"""``crmsync check --connect`` checks names against any connector that offers a catalog."""

from __future__ import annotations

from collections.abc import Sequence

from crmsync.config.connected import Reference, catalog_for, check_references
from crmsync.connectors.app import AppConnector
from crmsync.connectors.base import Connector
from crmsync.connectors.capabilities import Catalog, Catalogued


class ShelfCatalog:
    """A plug-in system holding one object, ``Book``, whose ``Author`` leads to ``Person``."""

    objects = {"Book": ["Title", "Author"], "Person": ["Name"]}

    def object_names(self) -> Sequence[str]:
        return list(self.objects)

    def field_names(self, object_name: str) -> Sequence[str] | None:
        return self.objects.get(object_name)

    def parent_of(self, object_name: str, relationship: str) -> str | None:
        return "Person" if (object_name, relationship) == ("Book", "Author") else None

    def describe_missing(self, object_name: str) -> str:
        return f"no shelf {object_name!r}"


class ShelfConnector(Connector, Catalogued):
    kind = "shelf"

    def check(self) -> None:
        return None

    def catalog(self) -> Catalog:
        return ShelfCatalog()


def test_a_connector_s_own_catalog_checks_the_names_whatever_its_type() -> None:
    catalog = catalog_for(ShelfConnector("shelf"))
    assert catalog is not None
    here = ("flows", "books")
    refs = [
        Reference((*here, "object"), "shelf", "Bok"),
        Reference((*here, "fields", 0, "target"), "shelf", "Book", "Titel"),
        Reference((*here, "fields", 1, "target"), "shelf", "Book", "Author.Name"),
        Reference((*here, "fields", 2, "target"), "shelf", "Book", "Author.Nmae"),
    ]
    problems = check_references(refs, {"shelf": catalog})
    assert [(p.path, p.message) for p in problems] == [
        ((*here, "object"), "no shelf 'Bok' (did you mean 'Book'?)"),
        (
            (*here, "fields", 0, "target"),
            "Book has no field 'Titel' on connection 'shelf' (did you mean 'Title'?)",
        ),
        (
            (*here, "fields", 2, "target"),
            "Book has no field 'Author.Nmae' on connection 'shelf' (did you mean 'Author'?)",
        ),
    ]


def test_a_connector_without_a_catalog_is_not_checked() -> None:
    assert catalog_for(AppConnector("shop")) is None


class LoanCatalog(ShelfCatalog):
    """``Loan.Item`` may lead to a ``Book`` or a ``Film`` (a polymorphic relationship)."""

    objects = {"Loan": ["ItemId"], "Book": ["Title", "Pages"], "Film": ["Title", "Minutes"]}

    def parents_of(self, object_name: str, relationship: str) -> Sequence[str]:
        return ["Book", "Film"] if (object_name, relationship) == ("Loan", "Item") else []


def test_a_field_through_a_polymorphic_relationship_is_known_when_any_of_its_objects_has_it() -> None:
    refs = [
        Reference(("flows", "loans", "fields", n, "source"), "shelf", "Loan", field)
        for n, field in enumerate(["Item.Title", "Item.Minutes", "Item.Pages", "Item.Weight"])
    ]
    problems = check_references(refs, {"shelf": LoanCatalog()})
    assert [p.path[-2] for p in problems] == [3]
    assert "Loan has no field 'Item.Weight'" in problems[0].message
