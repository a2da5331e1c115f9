"""Adversarial attacks in model-input space with an eps-sweep engine that reuses work across eps.

::

    from robustbench_fundus.attacks import get_attack
    pgd = get_attack("pgd", steps=10)                     # Linf; "pgd_l2", "fgsm", "autoattack"
    res = pgd(model, x, y, eps=[0.5/255, 1/255, 2/255], seed=0, sample_ids=ids)
    res.success_rate, res.robust_accuracy, res.flags       # per eps; flags: list of dicts
    res[k].x_adv, res[k].success, res[k].broken_at_step    # per sample at eps[k]
    total = sum(r.counts for r in results)                 # integer counts add over batches
    # ranks: dist.all_reduce(t := total.to_tensor()); SweepCounts.from_tensor(t, eps)

``x`` is float (B,3,H,W) in [0,1] (normalisation inside the model), ``eps`` ascending in [0,1]
pixel units (``parse_eps("2/255,4/255")``). Any ``torchattacks`` attack runs through
``get_attack("torchattacks:<Name>", **its_kwargs)`` when that optional package is installed.
Third-party attacks plug in through the entry-point group ``robustbench_fundus.attacks`` (an
:class:`Attack` subclass, or a module that calls ``REGISTRY.register(cls)``).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import RBFError
from ..registry import Registry
from .base import (SCHEMA_VERSION, Attack, AttackConfig, Context, EpsResult, SweepCounts,
                   SweepResult, distance, eval_mode, parse_eps, predict, project)
from .external import AutoAttack, AutoAttackConfig, TorchAttacksAdapter, TorchAttacksConfig
from .pgd import FGSM, PGD, FGSMConfig, PGDConfig, PGDL2, pgd_sweep

__all__ = [
    "REGISTRY", "get_attack", "describe", "Attack", "AttackConfig", "SweepResult", "SweepCounts",
    "EpsResult", "Context", "PGD", "PGDL2", "FGSM", "AutoAttack", "TorchAttacksAdapter",
    "PGDConfig", "FGSMConfig", "AutoAttackConfig", "TorchAttacksConfig", "parse_eps", "project",
    "distance", "predict", "eval_mode", "pgd_sweep", "SCHEMA_VERSION", "TORCHATTACKS_PREFIX",
]

REGISTRY: Registry = Registry("attack", "robustbench_fundus.attacks")
TORCHATTACKS_PREFIX = "torchattacks:"

for _cls in (PGD, PGDL2, FGSM, AutoAttack):
    REGISTRY.register(_cls, name=_cls.name, norm=_cls.norm)
REGISTRY.register(TorchAttacksAdapter, name="torchattacks", norm="Linf|L2")
del _cls


def get_attack(name: str, **config: Any) -> Attack:
    """A configured attack: ``get_attack("pgd", steps=20)``, ``get_attack("torchattacks:CW",
    c=1.0)``. Keyword arguments are fields of the attack's config dataclass."""
    if name.startswith(TORCHATTACKS_PREFIX):
        cls = REGISTRY.get("torchattacks")
        return cls(attack=name[len(TORCHATTACKS_PREFIX):], **config)
    obj = REGISTRY.get(name)
    if isinstance(obj, type) and issubclass(obj, Attack):
        return obj(**config)
    if isinstance(obj, Attack):
        if config:
            return type(obj)(dataclasses.replace(obj.config, **config))
        return obj
    if callable(obj):  # a factory registered by a plugin
        att = obj(**config)
        if not isinstance(att, Attack):
            raise RBFError(f"attack {name!r} from a plugin did not build an Attack "
                           f"(got {type(att).__name__})")
        return att
    raise RBFError(f"attack {name!r} is not an Attack (got {type(obj).__name__})")


def _config_fields(cls: type) -> str:
    cfg = getattr(cls, "Config", None)
    if cfg is None or not dataclasses.is_dataclass(cfg):
        return ""
    base = {f.name for f in dataclasses.fields(AttackConfig)}
    return ",".join(f.name for f in dataclasses.fields(cfg) if f.name not in base)


def describe(pattern: str = "*") -> list[dict]:
    """One JSON-able row per registered attack matching ``pattern`` (for ``rbf list attacks``)."""
    rows = []
    for name in REGISTRY.names(pattern):
        entry = REGISTRY.entry(name)
        obj = entry.obj
        cls = obj if isinstance(obj, type) else type(obj)
        available = True
        if name == "torchattacks":
            try:
                import torchattacks  # noqa: F401
            except ImportError:
                available = False
        rows.append({
            "name": name + (":<Name>" if name == "torchattacks" else ""),
            "norm": entry.info.get("norm", getattr(cls, "norm", "?")),
            "options": _config_fields(cls),
            "available": available,
            "source": entry.source,
            "description": getattr(cls, "description", ""),
        })
    return rows
