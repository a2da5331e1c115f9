"""Native PGD (Linf, L2) and FGSM on the eps-sweep engine (:mod:`.engine`).

See :func:`robustbench_fundus.attacks.engine.pgd_sweep` for how a sweep reuses work: broken
samples are no longer stepped, a sample broken at eps_k counts at every larger eps at no cost,
survivors get the full step budget at the next eps from a fresh random start keyed by
(seed, norm, sample id, eps), and under bf16 autocast every claimed break is confirmed in
float32 before a sample is frozen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import RBFError
from .base import Attack, AttackConfig
from .engine import LOSSES, attack_loss, pgd_sweep, sanity_pgd, unit_noise  # noqa: F401


@dataclass
class PGDConfig(AttackConfig):
    """steps: gradient steps per eps; step_size: absolute step (None: step_ratio*eps/steps);
    random_start: start from a uniform point of the ball (Linf) / a random point of the ball
    (L2), drawn afresh for each eps; warm_start: survivors of the previous eps continue from
    their perturbation instead (measured weaker at large eps jumps, so off by default);
    loss: "ce" (cross-entropy) or "margin" (max other logit - true logit)."""
    steps: int = 10
    step_size: float | None = None
    step_ratio: float = 2.5
    random_start: bool = True
    warm_start: bool = False
    loss: str = "ce"


@dataclass
class FGSMConfig(AttackConfig):
    """FGSM: one signed-gradient step of size eps from the clean input (no options of its
    own)."""


class PGD(Attack):
    """Projected gradient descent, Linf (Madry et al. 2018), with the eps-sweep engine."""
    name = "pgd"
    norm = "Linf"
    Config = PGDConfig
    description = ("PGD, Linf, random start, any-iterate success, eps sweep reusing broken "
                   "samples")

    def _validate_config(self) -> None:
        super()._validate_config()
        c = self.config
        if not isinstance(c.steps, int) or isinstance(c.steps, bool) or c.steps < 0:
            raise RBFError(f"attack {self.name}: steps must be an integer >= 0, got {c.steps!r}")
        if c.step_size is not None and not (c.step_size > 0 and math.isfinite(c.step_size)):
            raise RBFError(f"attack {self.name}: step_size must be > 0, got {c.step_size!r}")
        if c.loss not in LOSSES:
            raise RBFError(f"attack {self.name}: loss must be one of {LOSSES}, got {c.loss!r}")
        if not (c.step_ratio > 0 and math.isfinite(c.step_ratio)):
            raise RBFError(f"attack {self.name}: step_ratio must be > 0, got {c.step_ratio!r}")

    @property
    def nominal_steps(self) -> int:  # type: ignore[override]
        return self.config.steps

    def _sweep(self, ctx, x, y, eps, *, seed, sample_ids):
        c = self.config
        return pgd_sweep(ctx, x, y, eps, norm=self.norm, steps=c.steps, step_size=c.step_size,
                         step_ratio=c.step_ratio, random_start=c.random_start,
                         warm_start=c.warm_start, seed=seed, sample_ids=sample_ids,
                         loss=c.loss)


class PGDL2(PGD):
    """PGD in the L2 norm (normalised-gradient steps, projection onto the L2 ball)."""
    name = "pgd_l2"
    norm = "L2"
    description = "PGD, L2, random start, any-iterate success, eps sweep reusing broken samples"


class FGSM(Attack):
    """Fast gradient sign method (Goodfellow et al. 2015), Linf, no random start.

    The gradient at the clean input is the same for every eps, so a sweep costs one
    forward+backward per sample plus one forward per surviving sample and eps; a sample broken at
    a smaller eps keeps that perturbation (FGSM alone is not monotone in eps)."""
    name = "fgsm"
    norm = "Linf"
    Config = FGSMConfig
    description = "FGSM, Linf, one signed-gradient step of size eps"
    nominal_steps = 1

    def _sweep(self, ctx, x, y, eps, *, seed, sample_ids):
        B = x.shape[0]
        with torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            loss = ctx.loss(ctx.forward(xg), y)
            (g,) = torch.autograd.grad(loss, xg)
        ctx.work += B
        ctx.record_grad(g)
        sign = g.sign()
        x_adv = x.clone()
        broken = torch.zeros(B, dtype=torch.bool, device=x.device)
        out = []
        for e in eps:
            at = torch.full((B,), -1, dtype=torch.int64, device=x.device)
            at[broken] = 0
            act = (~broken).nonzero().squeeze(1)
            if e > 0 and act.numel():
                xs = (x[act] + e * sign[act]).clamp(0, 1)
                with torch.no_grad():
                    fooled = ctx.confirm(xs, y[act], ctx.predict(ctx.forward(xs)) != y[act])
                x_adv[act] = xs
                idx = act[fooled]
                broken[idx] = True
                at[idx] = 1
            out.append((x_adv.clone(), at))
        return out
