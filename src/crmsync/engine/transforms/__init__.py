"""Named field transforms: what a flow's ``transform:`` key refers to.

A transform turns one source value into one target value::

    @transform("upper")
    def upper(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
        ...

``args`` is the field mapping's ``args:`` (empty when none), ``record`` is the whole source
record (what ``template`` formats). ``None`` passes through every built-in unchanged unless it
says otherwise. Bad input raises :class:`crmsync.errors.FixTheData` with a message a person can
act on; a transform never guesses.

There is one way to register a transform: the :func:`transform` decorator. Plug-ins ship theirs
in a module named by an entry point of the ``crmsync.transforms`` group (the entry point may
name the module or one decorated function); it is imported the first time a name is looked up.

Every transform is bounded for any input: text longer than :data:`MAX_TEXT` characters, numbers
of more than :data:`MAX_DIGITS` digits before the point (or text of more than
:data:`MAX_NUMBER_TEXT` characters), NaN and infinity are refused before any costly work, so a
hostile value costs microseconds and never an exception other than ``FixTheData``.

Transforms that bridge Monday.com column values (``link``, ``people``, ``dropdown``,
``checkbox``, ``date``, ``email``, ``phone``) read Monday's value shape — a mapping or its JSON
string — and turn a plain value into Monday's shape, so one name serves both directions.

The package, by purpose (import from the package itself; the modules are its layout):

- ``registry`` — the :class:`Transform` interface, the decorator, :func:`get`, :func:`names`, plug-ins;
- ``values`` — the bounds, :func:`shown` for refusals, and the readers the built-ins share;
- ``strings`` — text, ``template``, ``value_map`` and ``split_name``;
- ``numeric`` — numbers with precision and scale (:func:`to_decimal`, :func:`fit_digits`), yes/no;
- ``dates`` — ``date`` and ``datetime``;
- ``columns`` — e-mail addresses, phone numbers and Monday's link, people and dropdown columns.

Importing the package registers every built-in.
"""

from __future__ import annotations

from crmsync.engine.transforms.columns import dropdown, email, link, people, phone
from crmsync.engine.transforms.dates import date, datetime
from crmsync.engine.transforms.numeric import boolean, checkbox, fit_digits, integer, number, to_decimal
from crmsync.engine.transforms.registry import (
    ENTRY_POINT_GROUP,
    Transform,
    TransformFunction,
    get,
    names,
    transform,
)
from crmsync.engine.transforms.strings import (
    constant,
    lower,
    split_name,
    strip,
    template,
    template_fields,
    text,
    upper,
    value_map,
)
from crmsync.engine.transforms.values import (
    MAX_DIGITS,
    MAX_EMAIL,
    MAX_NUMBER_TEXT,
    MAX_TEXT,
    MAX_URL,
    bounded_text,
    shown,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "MAX_DIGITS",
    "MAX_EMAIL",
    "MAX_NUMBER_TEXT",
    "MAX_TEXT",
    "MAX_URL",
    "Transform",
    "TransformFunction",
    "boolean",
    "bounded_text",
    "checkbox",
    "constant",
    "date",
    "datetime",
    "dropdown",
    "email",
    "fit_digits",
    "get",
    "integer",
    "link",
    "lower",
    "names",
    "number",
    "people",
    "phone",
    "shown",
    "split_name",
    "strip",
    "template",
    "template_fields",
    "text",
    "to_decimal",
    "transform",
    "upper",
    "value_map",
]
