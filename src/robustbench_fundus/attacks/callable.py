"""The explicit adapter for a foreign attack function.

The benchmark takes only :class:`~robustbench_fundus.attacks.Attack` instances (or registered
names), so that every attack goes through the contract of the base class. A function
``fn(model, x, y, eps) -> x_adv`` (one eps per call, ``x`` in [0,1]) becomes one with::

    atk = CallableAttack(my_attack, name="my_attack", norm="Linf", steps=20)

It then runs like any ``_attack_eps`` attack: one eps at a time on the samples not broken at a
smaller eps, its output projected onto the eps ball and [0,1], every break confirmed in float32
(under bf16 autocast a rejected one is attacked again in float32). ``fn`` receives the model
wrapped as an ``nn.Module`` that applies the attack's autocast and memory-format settings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..errors import RBFError
from .base import Attack, AttackConfig
from .context import Context, ModuleFn, canonical_norm


@dataclass
class CallableAttackConfig(AttackConfig):
    """A foreign function has no options of its own (only the shared execution options)."""


def _qualified_name(fn: Any) -> str:
    mod = getattr(fn, "__module__", None) or type(fn).__module__
    qual = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{mod}.{qual}"


class CallableAttack(Attack):
    """An :class:`Attack` around ``fn(model, x, y, eps) -> x_adv``.

    name: the display name (results, identity, leaderboard label); norm: "Linf" or "L2", the
    ball its output is projected onto; steps: its step count, if it has one (identity and
    label only: ``fn`` is not told); description: one line for listings. The identity includes
    name, norm, steps and the function's qualified name."""
    name = "callable"
    Config = CallableAttackConfig

    def __init__(self, fn: Callable[..., torch.Tensor], *, name: str, norm: str = "Linf",
                 steps: int | None = None, description: str = "",
                 config: CallableAttackConfig | None = None, **options: Any):
        if not callable(fn):
            raise RBFError(f"CallableAttack: fn must be a function fn(model, x, y, eps) -> x_adv, "
                           f"got {type(fn).__name__}")
        if not isinstance(name, str) or not name.strip():
            raise RBFError("CallableAttack: name must be a non-empty string (it names the "
                           "attack in results and on the leaderboard)")
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool)
                                  or steps < 0):
            raise RBFError(f"CallableAttack {name!r}: steps must be none or an integer >= 0, got "
                           f"{steps!r}")
        self.fn = fn
        self.name = name.strip()  # type: ignore[misc]
        where = f"CallableAttack {name!r}: norm"
        self.norm = canonical_norm(norm, what=where)  # type: ignore[misc]
        self._steps = steps
        self.description = str(description)  # type: ignore[misc]
        super().__init__(config, **options)

    @property
    def steps(self) -> int | None:  # type: ignore[override]
        return self._steps

    @property
    def nominal_steps(self) -> int:  # type: ignore[override]
        return 0 if self._steps is None else int(self._steps)

    def _identity_config(self) -> dict[str, Any]:
        return {"function": _qualified_name(self.fn), "steps": self._steps}

    def __repr__(self) -> str:
        return (f"CallableAttack({_qualified_name(self.fn)}, name={self.name!r}, "
                f"norm={self.norm!r}, steps={self._steps!r})")

    def _attack_eps(self, ctx: Context, x, y, eps, *, seed, sample_ids):
        with torch.enable_grad():
            out = self.fn(ModuleFn(ctx), x, y, float(eps))
        ctx.work += int(x.shape[0]) * max(self.nominal_steps, 1)
        if not isinstance(out, torch.Tensor):
            raise RBFError(f"CallableAttack {self.name!r}: fn returned {type(out).__name__}; it "
                           f"must return the adversarial batch, a tensor of shape "
                           f"{tuple(x.shape)}")
        return out.detach()
