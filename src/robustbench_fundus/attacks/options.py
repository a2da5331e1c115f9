"""Typed attack options: coercion of option values (Python values or command-line strings) to the
type an option declares, and the ``KEY=VALUE`` reader of ``--attack-opt``.

An option's type is a dataclass field annotation (``int``, ``float | None``, ``bool | str``,
``tuple[int, ...]``, ``Literal["auto"]`` unions) or, for third-party parameters, one derived from
the parameter's default. Strings are read as

* bool: ``true``/``false``/``yes``/``no``/``1``/``0`` (any case);
* int: an integer literal; float: a number or a fraction ``a/b`` (``0.5/255``);
* None (for optional options): ``none`` or ``null``;
* tuple: comma-separated items (``2,10``), each read by the element type;
* str: as given.

A value that fits none of the option's types is a one-line :class:`RBFError` naming the option
and the expected type. Imports nothing from the rest of the attack stage.
"""
from __future__ import annotations

import re
import types
import typing
from typing import Any, Iterable, Literal

from ..errors import RBFError

_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")
_NONE = ("none", "null")
_INT_RE = re.compile(r"[+-]?\d+")


class _Fail(Exception):
    pass


def members(annotation: Any) -> tuple[Any, ...]:
    """The alternatives of a (possibly union) annotation, in order; ``Any`` -> ``(Any,)``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        out: list[Any] = []
        for a in typing.get_args(annotation):
            out.extend(members(a))
        return tuple(out)
    return (annotation,)


def type_name(annotation: Any) -> str:
    """Human words for the values ``annotation`` accepts (for error messages)."""
    words = []
    for m in members(annotation):
        if m is Any:
            return "any value"
        if m is bool:
            words.append("true or false")
        elif m is int:
            words.append("an integer")
        elif m is float:
            words.append("a number (e.g. 0.5 or 2/255)")
        elif m is str:
            words.append("a string")
        elif m is type(None) or m is None:
            words.append("none")
        elif typing.get_origin(m) is Literal:
            words.append(" or ".join(repr(v) for v in typing.get_args(m)))
        elif m is tuple or typing.get_origin(m) is tuple:
            words.append("comma-separated values (e.g. 2,10)")
        else:
            words.append(getattr(m, "__name__", str(m)))
    return " or ".join(words)


def _number(s: str) -> float:
    s = s.strip()
    if "/" in s:
        a, b = s.split("/", 1)
        return float(a) / float(b)
    return float(s)


def _from_string(s: str, m: Any) -> Any:
    t = s.strip()
    low = t.lower()
    if m is Any:
        for cand in (type(None), bool, int, float):
            try:
                return _from_string(s, cand)
            except (_Fail, ValueError, ZeroDivisionError):
                pass
        return s
    if m is type(None) or m is None:
        if low in _NONE:
            return None
        raise _Fail
    if m is bool:
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise _Fail
    if m is int:
        if _INT_RE.fullmatch(t):
            return int(t)
        raise _Fail
    if m is float:
        try:
            return float(_number(t))
        except (ValueError, ZeroDivisionError):
            raise _Fail from None
    if m is str:
        return s
    if typing.get_origin(m) is Literal:
        for v in typing.get_args(m):
            if isinstance(v, str) and low == v.lower():
                return v
        raise _Fail
    if m is tuple or typing.get_origin(m) is tuple:
        items = [p for p in t.strip("()[] ").split(",") if p.strip()]
        args = typing.get_args(m)
        elem = args[0] if args else Any
        if len(args) == 2 and args[1] is Ellipsis or len(args) <= 1:
            return tuple(_from_string(p, elem) for p in items)
        if len(items) != len(args):
            raise _Fail
        return tuple(_from_string(p, a) for p, a in zip(items, args))
    raise _Fail


def _from_value(v: Any, m: Any) -> Any:
    if m is Any:
        return v
    if m is type(None) or m is None:
        if v is None:
            return None
        raise _Fail
    if m is bool:
        if isinstance(v, bool):
            return v
        raise _Fail
    if isinstance(v, bool):  # never an integer or a number
        raise _Fail
    if m is int:
        if isinstance(v, int):
            return int(v)
        if isinstance(v, float) and v.is_integer():
            return int(v)
        raise _Fail
    if m is float:
        if isinstance(v, (int, float)):
            return float(v)
        raise _Fail
    if m is str:
        if isinstance(v, str):
            return v
        raise _Fail
    if typing.get_origin(m) is Literal:
        if v in typing.get_args(m):
            return v
        raise _Fail
    if m is tuple or typing.get_origin(m) is tuple:
        if isinstance(v, (list, tuple)):
            args = typing.get_args(m)
            elem = args[0] if args else Any
            if len(args) == 2 and args[1] is Ellipsis or len(args) <= 1:
                return tuple(_from_value(e, elem) for e in v)
            if len(v) != len(args):
                raise _Fail
            return tuple(_from_value(e, a) for e, a in zip(v, args))
        raise _Fail
    if isinstance(m, type) and isinstance(v, m):
        return v
    raise _Fail


def coerce(value: Any, annotation: Any, *, where: str) -> Any:
    """``value`` (a Python value or a command-line string) as the type of ``annotation``.

    ``where`` names the option in the error, e.g. ``"attack 'pgd' option 'steps'"``."""
    alts = members(annotation)
    if isinstance(value, str):
        # None first (``none`` is never meant as the string "none" for an optional option)
        order = sorted(alts, key=lambda m: 0 if (m is type(None) or m is None) else 1)
        for m in order:
            try:
                return _from_string(value, m)
            except (_Fail, ValueError, ZeroDivisionError):
                continue
    else:
        for m in alts:
            try:
                return _from_value(value, m)
            except (_Fail, ValueError, TypeError):
                continue
    raise RBFError(f"{where}: expected {type_name(annotation)}, got {value!r}")


def annotation_from_default(default: Any) -> Any:
    """The option type implied by a third-party parameter's default value."""
    if isinstance(default, bool):
        return bool
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    if isinstance(default, str):
        return str
    if isinstance(default, tuple):
        elems = {annotation_from_default(e) for e in default}
        elem = elems.pop() if len(elems) == 1 else Any
        return tuple[elem, ...]  # type: ignore[valid-type]
    return Any


def parse_option_assignments(items: Iterable[str] | None, what: str = "--attack-opt"
                             ) -> dict[str, str]:
    """``["steps=20", "step_size=0.5/255"]`` -> ``{"steps": "20", "step_size": "0.5/255"}``
    (values stay strings: :func:`robustbench_fundus.attacks.resolve_attack` coerces them to each
    option's type). A later item overrides an earlier one; an item without ``=`` or with an empty
    key is a one-line RBFError."""
    out: dict[str, str] = {}
    for item in items or ():
        if not isinstance(item, str) or "=" not in item:
            raise RBFError(f"{what}: {item!r} is not KEY=VALUE; write e.g. {what} steps=20")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise RBFError(f"{what}: {item!r} has an empty key; write e.g. {what} steps=20")
        out[key] = value.strip()
    return out
