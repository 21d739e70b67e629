"""Number and truth transforms: ``number``, ``integer``, ``boolean`` and Monday's ``checkbox``.

:func:`to_decimal` reads any value as a bounded, finite decimal and :func:`fit_digits` applies a
target field's precision and scale (Salesforce's rule); the engine's field limits use both too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any

from crmsync.engine.transforms.registry import transform
from crmsync.engine.transforms.values import MAX_DIGITS, MAX_NUMBER_TEXT, _bad, _blank, _monday, shown

_NUMBER_NOISE = re.compile(r"[\s,_]")


def to_decimal(value: Any) -> Decimal | None:
    """``value`` as a finite decimal of at most :data:`MAX_DIGITS` digits before the point.

    Blank is None; anything else (text that is not a number, NaN, infinity, ``1e5000``) is
    :class:`FixTheData`. The size is checked before any conversion, so every input is cheap.
    """
    value = _monday(value)
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise _bad(f"{value!r} is a yes/no value, not a number")
    if isinstance(value, int):
        if value.bit_length() > 4 * MAX_DIGITS:  # 2**152 > 10**38: surely too large, and cheap to see
            raise _bad(f"{shown(value)} has more than {MAX_DIGITS} digits before the decimal point")
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        if len(value) > MAX_NUMBER_TEXT:
            raise _bad(f"{shown(value)} is not a number (longer than {MAX_NUMBER_TEXT} characters)")
        cleaned = _NUMBER_NOISE.sub("", value.strip().strip('"'))
        try:
            number = Decimal(cleaned)
        except InvalidOperation:
            raise _bad(f"{shown(value)} is not a number") from None
    else:
        raise _bad(f"{shown(value)} is not a number")
    if not number.is_finite():
        raise _bad(f"{shown(value)} is not a number (NaN and infinity cannot be stored)")
    if number.is_zero():
        return Decimal(0)  # 0e999999999 is zero, not a number too large
    if number.adjusted() >= MAX_DIGITS:
        raise _bad(f"{shown(value)} has more than {MAX_DIGITS} digits before the decimal point")
    return number


def fit_digits(number: Decimal, precision: int, scale: int, shown_as: str) -> Decimal:
    """``number`` rounded to ``scale`` decimals, refused past ``precision - scale`` whole digits.

    Salesforce's rule for number, currency and percent fields: ``precision`` digits in all,
    ``scale`` of them after the point; extra decimals are rounded, extra whole digits refused.
    """
    whole = precision - scale
    if not number.is_zero() and number.adjusted() >= whole:
        raise _bad(
            f"{shown_as} does not fit: at most {whole} digit(s) before the decimal point "
            f"(precision {precision}, scale {scale})"
        )
    number = number.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP, context=_WIDE)
    if not number.is_zero() and number.adjusted() >= whole:  # 99.995 rounds up to 100.00
        raise _bad(
            f"{shown_as} does not fit: at most {whole} digit(s) before the decimal point "
            f"(precision {precision}, scale {scale})"
        )
    return number


#: wide enough for any number :func:`to_decimal` lets through, rounded to any scale it allows
_WIDE = Context(prec=2 * MAX_DIGITS + 2)


def _digits_args(args: Mapping[str, Any]) -> tuple[int, int] | None:
    if args.get("precision") is None:
        return None
    precision, scale = int(args["precision"]), int(args.get("scale") or 0)
    if not 0 <= scale <= precision <= MAX_DIGITS:
        raise _bad(f"args.precision and args.scale must satisfy 0 ≤ scale ≤ precision ≤ {MAX_DIGITS}")
    return precision, scale


@transform("number", optional=("precision", "scale"))
def number(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """A number from a number or text (thousands separators allowed); whole numbers come out as integers.

    Example: ``"1,234.50"`` → ``1234.5``; ``"3"`` → ``3``. With `args.precision` and `args.scale`
    (the target field's, as Salesforce declares them) extra decimals are rounded and a number with
    more whole digits than ``precision - scale`` is refused; without them, at most 38 whole digits.
    """
    d = to_decimal(value)
    if d is None:
        return None
    digits = _digits_args(args)
    if digits is not None:
        d = fit_digits(d, *digits, shown(value))
    return int(d) if d == d.to_integral_value() else float(d)


@transform("integer", optional=("precision",))
def integer(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """A whole number; a fraction is refused. Example: ``"42"`` → ``42``; ``"4.5"`` → refused.

    `args.precision` caps its digits (e.g. 9 for a Salesforce int field).
    """
    d = to_decimal(value)
    if d is None:
        return None
    if d != d.to_integral_value():
        raise _bad(f"{shown(value)} is not a whole number")
    if args.get("precision") is not None:
        d = fit_digits(d, min(int(args["precision"]), MAX_DIGITS), 0, shown(value))
    return int(d)


_TRUE = {"true", "yes", "y", "1", "on", "v", "checked", "t"}
_FALSE = {"false", "no", "n", "0", "off", "unchecked", "f", ""}


def _truth(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and len(value) <= MAX_NUMBER_TEXT:
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise _bad(f"{shown(value)} is not a yes/no value (true/false, yes/no, 1/0, on/off)")


@transform("boolean")
def boolean(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """True or false from true/false, yes/no, y/n, 1/0, on/off. Example: ``"Yes"`` → ``true``."""
    return _truth(value)


@transform("checkbox")
def checkbox(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
    """Monday checkbox ↔ true/false: ``{"checked": "true"}`` → ``true``; ``true`` → ``{"checked": "true"}``.

    Unchecking writes null (Monday's way to clear a checkbox); an empty Monday value reads as false.
    """
    value = _monday(value)
    if isinstance(value, Mapping):
        return _truth(value.get("checked", False)) is True
    return {"checked": "true"} if _truth(value) else None
