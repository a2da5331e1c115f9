"""The one eps parser of the library, the eps check of an attack call, eps formatting and the
default sweeps per norm.

eps is always in [0,1] pixel units of the model input: a Linf eps is the largest change of one
pixel value (``2/255`` = two 8-bit levels, so it lies in (0, 1]); an L2 eps is the Euclidean
norm of the whole perturbation (it grows with the image size and may exceed 1).

Imports nothing from the rest of the attack stage except the norm names.
"""
from __future__ import annotations

import math
from typing import Sequence

from ..errors import RBFError
from .context import canonical_norm

#: The bench's default Linf sweep (fractions of the [0,1] pixel range).
DEFAULT_EPS_LINF: tuple[float, ...] = (0.5 / 255, 1 / 255, 2 / 255, 2.5 / 255, 4 / 255, 8 / 255)
#: The bench's default L2 sweep (L2 norm of the perturbation in [0,1] pixel units).
DEFAULT_EPS_L2: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
DEFAULT_EPS: dict[str, tuple[float, ...]] = {"Linf": DEFAULT_EPS_LINF, "L2": DEFAULT_EPS_L2}

_EXAMPLES = {"Linf": "2/255 or 0.5/255,1/255,2/255", "L2": "0.5 or 0.25,0.5,1"}


def default_eps(norm: str = "Linf") -> tuple[float, ...]:
    """The default sweep of ``norm`` ("Linf" or "L2", any case)."""
    return DEFAULT_EPS[canonical_norm(norm)]


def _value(it: str | float, what: str, norm: str) -> float:
    if not isinstance(it, str):
        try:
            return float(it)
        except (TypeError, ValueError):
            raise RBFError(f"{what}: bad eps {it!r} ({norm}): write a number such as "
                           f"{_EXAMPLES[norm]}") from None
    try:
        if "/" in it:
            a, b = it.split("/", 1)
            return float(a) / float(b)
        return float(it)
    except (ValueError, ZeroDivisionError):
        raise RBFError(f"{what}: bad eps {it!r} ({norm}): write a number such as "
                       f"{_EXAMPLES[norm]}") from None


def parse_eps(spec: str | float | Sequence[str | float], *, what: str = "eps",
              norm: str = "Linf") -> list[float]:
    """``"0.5/255,1/255,2/255"`` (or a list of such items or numbers) -> floats, in the given
    order. The one eps parser of the library (the bench and train CLIs use it too).

    Linf values must lie in (0, 1] ([0,1] pixel units: write ``2/255``, not ``2``); L2 values
    must be finite and > 0 (the L2 norm of the perturbation, no upper cap). Fractions ``a/b``
    are accepted for both. ``what`` names the argument in error messages."""
    norm = canonical_norm(norm, what=f"{what}: norm")
    if isinstance(spec, str):
        items: Sequence[str | float] = [s for s in spec.replace(" ", "").split(",") if s]
    elif isinstance(spec, (int, float)):
        items = [spec]
    else:
        items = list(spec)
    out = []
    for it in items:
        v = _value(it, what, norm)
        if norm == "Linf" and not (math.isfinite(v) and 0 < v <= 1):
            raise RBFError(f"{what}: Linf eps {it!r} is outside (0, 1]; Linf eps is in [0,1] "
                           "pixel units (write 2/255, not 2)")
        if norm == "L2" and not (math.isfinite(v) and v > 0):
            raise RBFError(f"{what}: L2 eps {it!r} must be finite and > 0 (the L2 norm of the "
                           "perturbation in [0,1] pixel units, e.g. 0.5 or 2)")
        out.append(v)
    if not out:
        raise RBFError(f"{what}: no eps given; write e.g. {_EXAMPLES[norm]}")
    return out


def check_eps(eps: float | Sequence[float]) -> list[float]:
    """The eps list of an attack call: finite, >= 0, strictly ascending (one-line RBFError
    otherwise)."""
    try:
        vals = [float(eps)] if isinstance(eps, (int, float)) else [float(e) for e in eps]
    except (TypeError, ValueError):
        raise RBFError(f"eps must be a number or a list of numbers (use parse_eps for text such "
                       f"as '2/255'), got {eps!r}") from None
    if not vals:
        raise RBFError("eps is empty: give at least one radius, e.g. eps=[2/255]")
    for e in vals:
        if not math.isfinite(e) or e < 0:
            raise RBFError(f"eps must be finite and >= 0 (in [0,1] pixel units), got {e}")
    if any(b <= a for a, b in zip(vals, vals[1:])):
        raise RBFError(f"eps must be strictly ascending, got {vals}")
    return vals


_check_eps = check_eps  # the name the base class used before the split


def format_eps(eps: float, norm: str = "Linf") -> str:
    """How eps is shown: Linf in 8-bit levels (``2/255``, ``2.5/255``), L2 as a plain number
    (``0.5``)."""
    if canonical_norm(norm) == "Linf":
        return f"{round(float(eps) * 255, 2):g}/255"
    return f"{float(eps):g}"
