"""The SOQL grammar of the Salesforce emulator (lark, LALR) and the texts of its string literals.

:func:`parser` builds the parser on first use; :func:`decode_string` reads a quoted literal with
Salesforce's escapes (and refuses the others, as Salesforce does); :func:`like_regex` turns a LIKE
pattern into a regular expression. Turning the parse tree into a query is
:mod:`crmsync.sandbox.salesforce.soql_parse`; the subset the grammar accepts is described in
:mod:`crmsync.sandbox.salesforce.soql`.
"""

from __future__ import annotations

import functools
import re

from lark import Lark

from crmsync.sandbox.salesforce.soql_errors import SoqlError

_RELATIVE_NAMES = (
    "YESTERDAY|TODAY|TOMORROW|LAST_WEEK|THIS_WEEK|NEXT_WEEK|LAST_MONTH|THIS_MONTH|NEXT_MONTH"
    "|LAST_90_DAYS|NEXT_90_DAYS|LAST_QUARTER|THIS_QUARTER|NEXT_QUARTER|LAST_YEAR|THIS_YEAR|NEXT_YEAR"
)
_RELATIVE_N_NAMES = (
    "LAST_N_DAYS|NEXT_N_DAYS|N_DAYS_AGO|LAST_N_WEEKS|NEXT_N_WEEKS|N_WEEKS_AGO"
    "|LAST_N_MONTHS|NEXT_N_MONTHS|N_MONTHS_AGO|LAST_N_YEARS|NEXT_N_YEARS|N_YEARS_AGO"
)

_GRAMMAR = rf"""
start: "SELECT"i select_list "FROM"i IDENT where? order? limit? offset?

select_list: select_item ("," select_item)*
?select_item: path
            | COUNT "(" ")"                 -> count_all
            | COUNT "(" path ")" IDENT?     -> count_field
            | "(" subquery ")"
            | TYPEOF path typeof_when+ typeof_else? "END"i   -> typeof
typeof_when: "WHEN"i IDENT "THEN"i path ("," path)*
typeof_else: "ELSE"i path ("," path)*
subquery: "SELECT"i sub_list "FROM"i IDENT where? order? limit? offset?
sub_list: path ("," path)*

path: IDENT ("." IDENT)*

where: "WHERE"i expr
?expr: unary
     | unary ("AND"i unary)+   -> and_
     | unary ("OR"i unary)+    -> or_
?unary: "NOT"i unary           -> not_
      | "(" expr ")"
      | condition
?condition: path OP value                          -> compare
          | path "IN"i "(" values ")"              -> in_
          | path "NOT"i "IN"i "(" values ")"       -> not_in
          | path "IN"i "(" semi ")"                -> in_select
          | path "NOT"i "IN"i "(" semi ")"         -> not_in_select
          | path "LIKE"i STRING                    -> like
          | path "INCLUDES"i "(" values ")"        -> includes
          | path "EXCLUDES"i "(" values ")"        -> excludes
semi: "SELECT"i path "FROM"i IDENT where?
values: value ("," value)*
value: STRING | NUMBER | DATE | DATETIME | RELATIVE | RELATIVE_N | TRUE | FALSE | NULL

order: "ORDER"i "BY"i order_item ("," order_item)*
order_item: path DIRECTION? nulls?
nulls: "NULLS"i NULLS_WHERE
limit: "LIMIT"i INT
offset: "OFFSET"i INT

COUNT: "COUNT"i
TYPEOF: "TYPEOF"i
TRUE: "TRUE"i
FALSE: "FALSE"i
NULL: "NULL"i
DIRECTION: "ASC"i | "DESC"i
NULLS_WHERE: "FIRST"i | "LAST"i
OP: "=" | "!=" | "<>" | "<=" | ">=" | "<" | ">"
IDENT: /[A-Za-z][A-Za-z0-9_]*/
STRING: /'(?:[^'\\]|\\[\s\S])*'/
DATETIME.4: /\d{{4}}-\d{{2}}-\d{{2}}T\d{{2}}:\d{{2}}:\d{{2}}(?:\.\d+)?(?:Z|[+-]\d{{2}}:?\d{{2}})/i
DATE.3: /\d{{4}}-\d{{2}}-\d{{2}}(?![\w:.-])/
RELATIVE_N.2: /(?:{_RELATIVE_N_NAMES}):\d+/i
RELATIVE.2: /(?:{_RELATIVE_NAMES})(?![A-Za-z0-9_])/i
NUMBER.1: /[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?![A-Za-z_])/
INT: /\d+/

%import common.WS
%ignore WS
"""


@functools.cache
def parser() -> Lark:
    # built on first use: importing the module does no work
    return Lark(_GRAMMAR, parser="lalr", lexer="contextual", maybe_placeholders=False)


# -- string literals ---------------------------------------------------------------------------

_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")


def decode_string(raw: str, *, like: bool = False) -> str:
    """The text of a quoted literal (quotes included in ``raw``).

    With ``like``, ``\\%`` and ``\\_`` stay escaped (as ``\\%``/``\\_``, and a literal backslash as
    ``\\\\``) so :func:`like_regex` can tell them from the wildcards. Any other backslash is an
    error, as in Salesforce.
    """
    body = raw[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1] if i + 1 < len(body) else ""
        if nxt in _ESCAPES:
            decoded = _ESCAPES[nxt]
            out.append("\\\\" if like and decoded == "\\" else decoded)
            i += 2
        elif nxt == "u" and _HEX4.fullmatch(body[i + 2 : i + 6]):
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        elif like and nxt in "%_":
            out.append("\\" + nxt)
            i += 2
        else:
            bad = body[i : i + 2] if nxt != "u" else body[i : i + 6]
            raise SoqlError(
                "MALFORMED_QUERY",
                f"Invalid string literal '{body}'. Illegal character sequence '{bad}' in string literal.",
            )
    return "".join(out)


def like_regex(pattern: str) -> str:
    """A regular expression (for ``re.fullmatch``) from a LIKE pattern decoded with ``like=True``."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return "".join(out)
