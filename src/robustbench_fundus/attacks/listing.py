"""The rows of ``rbf list attacks``: short ones for the table (the CLI fits it to the
terminal's 100 columns), complete ones (every option with its default) for ``--json``."""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from .base import Attack, AttackConfig


def _defaults(cfg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not dataclasses.is_dataclass(cfg):
        return out
    for f in dataclasses.fields(cfg):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
        else:
            out[f.name] = None
    return out


def _options(name: str, cls: type) -> tuple[dict[str, Any], list[str]]:
    """(every option -> default, the attack's own option names for the table)."""
    shared = [f.name for f in dataclasses.fields(AttackConfig)]
    if name == "torchattacks":
        from .external import TorchAttacksAdapter
        d = _defaults(TorchAttacksAdapter.Config)
        full = {k: d[k] for k in TorchAttacksAdapter._OWN}
        full["<class parameters>"] = "the torchattacks class's own __init__ parameters"
        return full, ["norm", "<class parameters>"]
    if isinstance(cls, type) and issubclass(cls, Attack):
        full = _defaults(cls.Config)
        return full, [k for k in full if k not in shared]
    return {}, []


def describe_rows(registry: Any, pattern: str = "*", full: bool = False) -> list[dict]:
    """One row per registered attack matching ``pattern``. ``full=False`` (the table of
    ``rbf list attacks``): ``options`` is the attack's own option names; ``full=True``
    (``--json``): ``options`` maps every option, shared ones included, to its default."""
    rows = []
    for name in registry.names(pattern):
        entry = registry.entry(name)
        obj = entry.obj
        cls = obj if isinstance(obj, type) else type(obj)
        from ..registry import is_available
        available = is_available(obj)
        if name == "torchattacks":
            try:
                importlib.import_module("torchattacks")
            except ImportError:
                available = False
        every, own = _options(name, cls)
        rows.append({
            "name": name + (":<Name>" if name == "torchattacks" else ""),
            "norm": str(entry.info.get("norm", getattr(cls, "norm", "?"))),
            "available": available,
            "source": str(entry.source),
            "options": every if full else (",".join(own) or "-"),
            "description": str(getattr(obj, "description", "") or
                               getattr(cls, "description", "") or ""),
        })
    return rows
