"""Fields read through a polymorphic relationship (a Task's ``What``): one ``TYPEOF`` per relationship.

Without ``TYPEOF``, Salesforce answers a polymorphic relationship with its ``Name`` object, which
has only a few fields (:data:`NAME_OBJECT_FIELDS`): ``What.Name`` reads, ``What.Amount`` is
``INVALID_FIELD``. A query that maps ``What.Amount`` or ``What.Account.Name`` therefore reads that
relationship through ``TYPEOF What WHEN Opportunity THEN Amount, Account.Name … ELSE Name END``,
built from the describes (:func:`typeofs`); the rows then carry ``What`` typed by the related record,
so ``What.Amount`` is read like any relationship path. Every query that reads a flow's fields —
the poller's (:mod:`.poll_plan`) and a backfill's export (:mod:`.export`) — writes its SELECT list
with :func:`select_list`, so they read the same values.

Pure functions and values, no I/O: the describes come from the caller (cached there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: fields of Salesforce's ``Name`` object: what a polymorphic relationship (``Task.What``) gives
#: without TYPEOF
NAME_OBJECT_FIELDS = frozenset(
    ("id", "name", "type", "alias", "email", "firstname", "lastname", "phone", "title", "isactive")
)

Describe = Callable[[str], Mapping[str, Any]]


@dataclass(frozen=True)
class TypeOf:
    """``TYPEOF What WHEN Opportunity THEN Name, Amount … ELSE Name END``: the fields read through
    a polymorphic relationship that are not all fields of the ``Name`` object. Each type lists the
    requested fields it has; the rows answer ``What`` typed by the related record, so
    ``What.Amount`` is read like any relationship path (absent for a type without it)."""

    relationship: str
    whens: tuple[tuple[str, tuple[str, ...]], ...]
    otherwise: tuple[str, ...] = ()

    def soql(self) -> str:
        whens = " ".join(f"WHEN {t} THEN {', '.join(fields)}" for t, fields in self.whens)
        otherwise = f" ELSE {', '.join(self.otherwise)}" if self.otherwise else ""
        return f"TYPEOF {self.relationship} {whens}{otherwise} END"


def beyond_name_object(fields: Iterable[str]) -> bool:
    """Some field goes through a relationship to more than a ``Name`` object field: it may need a
    TYPEOF (:func:`typeofs` tells from the describes), so only then are describes asked for."""
    return any("." in f and f.split(".", 1)[1].lower() not in NAME_OBJECT_FIELDS for f in fields)


def typeofs(object_name: str, fields: Sequence[str], describe: Describe) -> tuple[TypeOf, ...]:
    """The TYPEOFs a query of ``fields`` on ``object_name`` needs: one per polymorphic relationship
    of the object (describe's ``polymorphicForeignKey``) through which it reads a field that is not
    a ``Name`` object field (``What.Amount``, ``What.Account.Name``). Each of the relationship's
    types gets the requested fields it has (``describe`` of each, cached by the caller); the
    ``ELSE`` branch the ``Name`` object fields, for the types without a branch."""
    out = []
    for ref in describe(object_name).get("fields", []):
        relationship = str(ref.get("relationshipName") or "")
        if not relationship or not ref.get("polymorphicForeignKey"):
            continue
        paths = [
            f.split(".", 1)[1] for f in fields if "." in f and f.split(".")[0].lower() == relationship.lower()
        ]
        if all(p.lower() in NAME_OBJECT_FIELDS for p in paths):
            continue
        whens = []
        for type_name in ref.get("referenceTo") or []:
            mine = tuple(p for p in paths if _has_path(describe, str(type_name), p))
            if mine:
                whens.append((str(type_name), mine))
        if not whens:  # no type has them: the plain query says which field is unknown
            continue
        otherwise = tuple(p for p in paths if p.lower() in NAME_OBJECT_FIELDS)
        out.append(TypeOf(relationship, tuple(whens), otherwise))
    return tuple(out)


def select_list(fields: Sequence[str], through: Sequence[TypeOf] = ()) -> str:
    """The SELECT list as SOQL: the plain fields, then each TYPEOF (the fields it reads leave the
    plain list: Salesforce refuses a TYPEOF relationship also named in the field list)."""
    typed = {t.relationship.lower() for t in through}
    plain = [f for f in fields if "." not in f or f.partition(".")[0].lower() not in typed]
    return ", ".join([*plain, *(t.soql() for t in through)])


def _has_path(describe: Describe, object_name: str, path: str) -> bool:
    """``object_name`` has the field ``path`` (``Amount``, or ``Account.Name`` through a lookup)."""
    head, _, rest = path.partition(".")
    for f in describe(object_name).get("fields", []):
        if not rest and str(f.get("name", "")).lower() == head.lower():
            return True
        if rest and str(f.get("relationshipName") or "").lower() == head.lower() and f.get("referenceTo"):
            return _has_path(describe, str(f["referenceTo"][0]), rest)
    return False
