"""Adversarial attacks in model-input space with an eps-sweep engine that reuses work across eps.

::

    from robustbench_fundus.attacks import get_attack, resolve_attack
    pgd = get_attack("pgd", steps=10)                     # Linf; "pgd_l2", "fgsm", "autoattack"
    res = pgd(model, x, y, eps=[0.5/255, 1/255, 2/255], seed=0, sample_ids=ids)
    res.success_rate, res.robust_accuracy, res.flags       # per eps; flags: list of dicts
    res[k].x_adv, res[k].success, res[k].broken_at_step    # per sample at eps[k]
    total = sum(r.counts for r in results)                 # integer counts add over batches
    # ranks: dist.all_reduce(t := total.to_tensor()); SweepCounts.from_tensor(t, eps)
    atk = resolve_attack("torchattacks:PGD", steps=20, options={"random_start": "false"})
    atk.identity().label, atk.identity().config_hash       # 'torchattacks:PGD_linf_20', ...

``x`` is float (B,3,H,W) in [0,1] (normalisation inside the model), ``eps`` ascending in [0,1]
pixel units (``parse_eps("2/255,4/255")``; L2: ``parse_eps("0.5,1", norm="L2")``). Any
``torchattacks`` attack runs through ``get_attack("torchattacks:<Name>", **its_options)`` when
that optional package is installed; a foreign function through :class:`CallableAttack`.
Third-party attacks plug in through the entry-point group ``robustbench_fundus.attacks`` (an
:class:`Attack` subclass, or a module that calls ``REGISTRY.register(cls)``).
"""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import RBFError
from ..registry import Registry
from .base import (SCHEMA_VERSION, Attack, AttackConfig, Context, EpsResult, SweepCounts,
                   SweepResult, distance, eval_mode, predict, project)
from .callable import CallableAttack, CallableAttackConfig
from .eps import (DEFAULT_EPS, DEFAULT_EPS_L2, DEFAULT_EPS_LINF, default_eps, format_eps,
                  parse_eps)
from .external import (AutoAttack, AutoAttackConfig, TorchAttacksAdapter, TorchAttacksConfig,
                       torchattacks_classes)
from .identity import EXECUTION_OPTIONS, AttackIdentity
from .listing import describe_rows
from .options import parse_option_assignments
from .pgd import FGSM, PGD, FGSMConfig, PGDConfig, PGDL2, pgd_sweep

__all__ = [
    "REGISTRY", "get_attack", "resolve_attack", "describe", "parse_option_assignments",
    "Attack", "AttackConfig", "AttackIdentity", "CallableAttack", "CallableAttackConfig",
    "SweepResult", "SweepCounts", "EpsResult", "Context", "PGD", "PGDL2", "FGSM", "AutoAttack",
    "TorchAttacksAdapter", "PGDConfig", "FGSMConfig", "AutoAttackConfig", "TorchAttacksConfig",
    "parse_eps", "format_eps", "default_eps", "DEFAULT_EPS", "DEFAULT_EPS_LINF", "DEFAULT_EPS_L2",
    "EXECUTION_OPTIONS", "project", "distance", "predict", "eval_mode", "pgd_sweep",
    "torchattacks_classes", "SCHEMA_VERSION", "TORCHATTACKS_PREFIX",
]

REGISTRY: Registry = Registry("attack", "robustbench_fundus.attacks")
TORCHATTACKS_PREFIX = "torchattacks:"

for _cls in (PGD, PGDL2, FGSM, AutoAttack):
    REGISTRY.register(_cls, name=_cls.name, norm=_cls.norm)
REGISTRY.register(TorchAttacksAdapter, name="torchattacks", norm="Linf|L2")
del _cls


def get_attack(name: str, **options: Any) -> Attack:
    """A configured attack: ``get_attack("pgd", steps=20)``, ``get_attack("torchattacks:CW",
    c=1.0)``. Keywords are the attack's options (:meth:`Attack.options`); values may be strings
    from a command line (coerced to each option's type). An option the attack does not have is
    a one-line RBFError listing the options it has."""
    if not isinstance(name, str):
        raise RBFError(f"attack name must be a string, got {type(name).__name__}")
    if name.startswith(TORCHATTACKS_PREFIX):
        cls = REGISTRY.get("torchattacks")
        return cls(attack=name[len(TORCHATTACKS_PREFIX):], **options)
    if name == "torchattacks":
        raise RBFError("attack 'torchattacks' needs a class name: write torchattacks:<Name>, "
                       "e.g. torchattacks:PGD (rbf list attacks)")
    obj = REGISTRY.get(name)
    if isinstance(obj, type) and issubclass(obj, Attack):
        return obj(**options)
    if isinstance(obj, Attack):
        return obj.with_options(**options) if options else obj
    if callable(obj):  # a factory registered by a plugin
        att = obj(**options)
        if not isinstance(att, Attack):
            raise RBFError(f"attack {name!r} from a plugin did not build an Attack "
                           f"(got {type(att).__name__})")
        return att
    raise RBFError(f"attack {name!r} is not an Attack (got {type(obj).__name__})")


def resolve_attack(spec: Any, *, steps: int | None = None,
                   options: Mapping[str, Any] | None = None) -> Attack | None:
    """The one way the benchmark turns what the user gave into a configured attack.

    * ``None`` or ``"none"`` (any case) -> ``None`` (no attack);
    * an :class:`Attack` instance -> itself, or ``spec.with_options(...)`` when options or steps
      are given;
    * a registered name or ``"torchattacks:<Class>"`` -> :func:`get_attack`;
    * anything else (a plain function, another callable) -> a one-line RBFError: wrap a foreign
      function with :class:`CallableAttack`.

    ``options``: option values, real or command-line strings (``{"steps": "20",
    "step_size": "0.5/255", "random_start": "false", "sanity_eps": "none"}``), coerced to each
    option's type. ``steps``: the ``--steps N`` shorthand for the ``steps`` option; an attack
    without one is an RBFError. None keeps the attack's own default."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "none"):
        return None
    opts = dict(options or {})
    if isinstance(spec, Attack):
        atk = spec.with_options(**opts) if opts else spec
    elif isinstance(spec, type) and issubclass(spec, Attack):
        atk = spec(**opts)
    elif isinstance(spec, str) and spec.strip():
        atk = get_attack(spec.strip(), **opts)
    else:
        raise RBFError(f"the benchmark takes an Attack instance or a registered attack name "
                       f"(see rbf list attacks), got {type(spec).__name__}; wrap a foreign "
                       f"callable fn(model, x, y, eps) with robustbench_fundus.attacks."
                       f"CallableAttack(fn, name=..., norm=...)")
    if steps is not None:
        have = atk.options()
        if "steps" not in have:
            raise RBFError(f"--steps: attack {atk.display_name!r} has no steps; its options are "
                           f"{', '.join(sorted(have))}")
        if "steps" in opts and have["steps"] != steps:
            raise RBFError(f"--steps {steps} and the option steps={opts['steps']} disagree for "
                           f"attack {atk.display_name!r}; give one of them")
        atk = atk.with_options(steps=steps)
    return atk


def describe(pattern: str = "*", full: bool = False) -> list[dict]:
    """One row per registered attack matching ``pattern`` (for ``rbf list attacks``): name, norm,
    availability, source, options and description. ``full=True`` (``--json``): ``options``
    maps every option to its default; else (the table) it names the attack's own options."""
    return describe_rows(REGISTRY, pattern, full=full)
