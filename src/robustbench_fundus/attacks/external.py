"""Adapters for third-party attacks: AutoAttack (``pyautoattack``) and any ``torchattacks``
attack by name (``torchattacks:PGD``, ``torchattacks:CW``, ...).

Both go through the base class's default sweep: each eps is run on the samples not yet broken at
a smaller eps (checked by a forward pass), and a sample broken at a smaller eps keeps that
perturbation. Their internal random draws use torch's global generator, so they run inside
``torch.random.fork_rng`` seeded from (seed, attack name, eps index): the caller's global random
state is untouched and a call is reproducible, but the noise of a sample depends on its batch
(unlike the native attacks).
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import sys
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from ..errors import RBFError
from ..seeding import derive_seed
from .base import Attack, AttackConfig, Context, ModuleFn

AUTOATTACK_VERSIONS = ("standard", "plus", "rand")


@contextlib.contextmanager
def _forked_rng(device: torch.device, seed: int) -> Iterator[None]:
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)  # inside fork_rng: restored on exit
        yield


@dataclass
class AutoAttackConfig(AttackConfig):
    """version: AutoAttack version ('standard': APGD-CE, APGD-T, FAB-T, Square);
    n_target_classes: target classes of the targeted attacks (None: classes - 1, at most 9;
    4 for the 5 DR grades); batch_size: AutoAttack's internal batch."""
    version: str = "standard"
    n_target_classes: int | None = None
    batch_size: int = 250


class AutoAttack(Attack):
    """AutoAttack (Croce & Hein 2020) through the official ``pyautoattack`` package."""
    name = "autoattack"
    norm = "Linf"
    Config = AutoAttackConfig
    description = "AutoAttack (pyautoattack, standard: APGD-CE, APGD-T, FAB-T, Square), Linf"
    nominal_steps = 100

    def _validate_config(self) -> None:
        super()._validate_config()
        if self.config.version not in AUTOATTACK_VERSIONS:
            raise RBFError(f"autoattack version must be one of {AUTOATTACK_VERSIONS}, got "
                           f"{self.config.version!r}")

    def _attack_eps(self, ctx: Context, x, y, eps, *, seed, sample_ids):
        try:
            from pyautoattack import AutoAttack as _AA
        except ImportError:  # pragma: no cover - a declared dependency
            raise RBFError("autoattack needs the pyautoattack package: pip install "
                           "pyautoattack") from None
        fn = ModuleFn(ctx)
        with torch.no_grad():
            n_cls = int(ctx.forward(x[:1]).shape[1])
        if n_cls < 2:
            raise RBFError("autoattack needs a model with at least 2 classes")
        aa = _AA(fn, norm=self.norm, eps=float(eps), version=self.config.version,
                 device=x.device, seed=derive_seed(seed, self.name, float(eps)) % (2 ** 31))
        n_t = self.config.n_target_classes
        n_t = min(n_cls - 1, 9) if n_t is None else max(1, min(int(n_t), n_cls - 1))
        aa.apgd_targeted.n_target_classes = n_t
        aa.fab.n_target_classes = n_t
        aa.verbose = False
        if n_cls <= 3:  # targeted DLR needs >= 4 classes
            aa.attacks_to_run = [a for a in aa.attacks_to_run if a != "apgd-t"]
        log = logging.getLogger("auto-attack")
        prev = log.level
        log.setLevel(logging.ERROR)  # its own checks duplicate our flags
        trace = sys.gettrace()  # its dynamic-defence check calls sys.settrace(None)
        try:
            with _forked_rng(x.device, derive_seed(seed, self.name, "rng", float(eps))):
                x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=self.config.batch_size)
        finally:
            log.setLevel(prev)
            sys.settrace(trace)
        ctx.work += int(x.shape[0]) * 100  # nominal (APGD-CE 100 iterations, and more)
        return x_adv.detach()


@dataclass
class TorchAttacksConfig(AttackConfig):
    """attack: the torchattacks class name; norm: 'Linf' or 'L2' (default from the name);
    kwargs: keyword arguments of the torchattacks class except ``eps``; an ``alpha`` of
    ``"auto"`` (default when the class has one and ``steps``) means 2.5*eps/steps."""
    attack: str = "PGD"
    norm: str | None = None
    kwargs: dict = field(default_factory=dict)


def _torchattacks():
    try:
        return importlib.import_module("torchattacks")
    except ImportError:
        raise RBFError("torchattacks is not installed: pip install --no-deps "
                       "torchattacks==3.5.1 (--no-deps: it pins an old requests)") from None


class TorchAttacksAdapter(Attack):
    """Any ``torchattacks`` attack by class name: ``get_attack("torchattacks:PGD", steps=10)``.

    The attack is built once per eps with ``eps=eps`` (when it takes one) and the configured
    keywords, and called on the model (with autocast/channels-last as configured)."""
    name = "torchattacks"
    Config = TorchAttacksConfig
    description = "adapter: any torchattacks attack by name, e.g. torchattacks:PGD"

    def __init__(self, config: TorchAttacksConfig | None = None, **kw: Any):
        # unknown keywords are the torchattacks class's own
        if config is None:
            own = {f for f in TorchAttacksConfig.__dataclass_fields__}
            extra = {k: kw.pop(k) for k in list(kw) if k not in own}
            if extra:
                kw["kwargs"] = {**kw.get("kwargs", {}), **extra}
        super().__init__(config, **kw)

    @property
    def norm(self) -> str:  # type: ignore[override]
        if self.config.norm:
            return self.config.norm
        return "L2" if "L2" in self.config.attack else "Linf"

    @property
    def nominal_steps(self) -> int:  # type: ignore[override]
        return int(self.config.kwargs.get("steps", 1))

    @property
    def display_name(self) -> str:
        return f"torchattacks:{self.config.attack}"

    def _validate_config(self) -> None:
        super()._validate_config()
        self._cls = getattr(_torchattacks(), self.config.attack, None)
        if not isinstance(self._cls, type):
            ta = _torchattacks()
            names = sorted(n for n in dir(ta) if n[:1].isupper())
            raise RBFError(f"torchattacks has no attack {self.config.attack!r}; choose one of "
                           f"{', '.join(names)}")
        self._params = inspect.signature(self._cls.__init__).parameters

    def _attack_eps(self, ctx: Context, x, y, eps, *, seed, sample_ids):
        kw = dict(self.config.kwargs)
        if "eps" in self._params:
            kw["eps"] = float(eps)
        if "alpha" in self._params and kw.get("alpha", "auto") == "auto":
            steps = kw.get("steps", self._params["steps"].default if "steps" in self._params
                           else 1)
            kw["alpha"] = 2.5 * float(eps) / max(int(steps), 1)
        with _forked_rng(x.device, derive_seed(seed, self.display_name, float(eps))):
            atk = self._cls(ModuleFn(ctx), **kw)
            with torch.enable_grad():
                x_adv = atk(x, y)
        ctx.work += int(x.shape[0]) * max(self.nominal_steps, 1)
        return x_adv.detach().to(x.dtype)

    def config_dict(self) -> dict:
        d = super().config_dict()
        d["attack"] = self.config.attack
        return d
