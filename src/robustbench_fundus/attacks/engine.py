"""The projected-gradient sweep engine shared by the native attacks and the base class's huge-eps
sanity check.

For ascending eps_0 < eps_1 < ... :func:`pgd_sweep`

* attacks only the samples it is given (the base class passes the clean-correct ones);
* counts a sample broken as soon as *any* iterate (the start point included) fools the model;
  that iterate is kept as its adversarial input and the sample is no longer stepped: each step
  index-selects the still-unbroken samples, so forward/backward cost shrinks as samples break;
* counts a sample broken at eps_k as broken at every larger eps (its perturbation lies inside
  the larger ball) at no further cost;
* gives the survivors of eps_k the *full* step budget again at eps_{k+1}, with the step size of
  the new eps (``step_ratio * eps / steps``), from a fresh random start drawn from
  (seed, norm, sample id, eps): a survivor follows exactly the trajectory it would follow in an
  independent run at eps_{k+1}, so the sweep is never weaker than independent runs.
  ``warm_start=True`` continues survivors from their eps_k perturbation instead (measured
  weaker at large eps jumps; see docs/attacks.md);
* under bf16 autocast confirms every claimed break with a float32 forward
  (:meth:`Context.confirm`) before freezing a sample.

Random-start noise is drawn per sample on the CPU, so results depend neither on the batch nor
on the device. This module imports only :mod:`.context` from the attack stage (no attack class).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..seeding import torch_generator
from .context import Context

_NOISE_TAG = "pgd-random-start"

LOSSES = ("ce", "margin")


def attack_loss(logits: torch.Tensor, y: torch.Tensor, loss: str,
                ctx: Context | None = None) -> torch.Tensor:
    """Summed loss to ascend: ``"ce"``, the head's own loss (cross-entropy for a classifier;
    see :meth:`Context.loss`), or ``"margin"``, max_{j != y} v_j - v_y on the class view v
    (CW-style; its gradient does not vanish when the softmax saturates)."""
    if loss == "ce":
        return ctx.loss(logits, y) if ctx is not None else \
            F.cross_entropy(logits, y, reduction="sum")
    if ctx is not None:
        logits = ctx.view(logits)
    zy = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return (other - zy).sum()



def unit_noise(norm: str, shape: tuple[int, ...], seed: int, sample_ids: torch.Tensor,
               device: torch.device, key: float | None = None) -> torch.Tensor:
    """Per-sample random start direction, scaled for eps=1: uniform in [-1,1] (Linf), or a
    uniform direction times a uniform radius in [0,1] (L2, as torchattacks' PGDL2). Row i
    depends only on (seed, norm, sample_ids[i], key) (key: the eps the start is for).
    Drawn on the CPU, so CPU and GPU runs start from the same points."""
    rows = []
    for i in sample_ids.tolist():
        g = torch_generator(seed, _NOISE_TAG, norm, int(i), None if key is None else float(key))
        if norm == "Linf":
            rows.append(torch.rand(shape, generator=g) * 2 - 1)
        else:
            d = torch.randn(shape, generator=g)
            r = torch.rand((), generator=g)
            rows.append(d * (r / (d.norm() + 1e-12)))
    if not rows:
        return torch.zeros((0, *shape), device=device)
    return torch.stack(rows).to(device)


def _step(delta: torch.Tensor, grad: torch.Tensor, x: torch.Tensor, alpha: float, eps: float,
          norm: str) -> torch.Tensor:
    """One ascent step + projection onto the eps ball and [0,1] (x + delta in [0,1])."""
    if norm == "Linf":
        delta = (delta + alpha * grad.sign()).clamp(-eps, eps)
    else:
        gn = grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        delta = delta + alpha * grad / (gn + 1e-12)
        dn = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        delta = delta * torch.clamp(eps / (dn + 1e-12), max=1.0)
    return (x + delta).clamp(0, 1) - x


def _start(norm: str, noise: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    delta = noise * eps
    return (x + delta).clamp(0, 1) - x


def pgd_fixed_steps(ctx: Context, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                    norm: str = "Linf", steps: int, step_size: float | None = None,
                    step_ratio: float = 2.5, random_start: bool = True, seed: int = 0,
                    sample_ids: torch.Tensor) -> torch.Tensor:
    """PGD as Madry et al. train with it: every sample of the batch, all ``steps`` steps of size
    ``step_size`` (else ``step_ratio * eps / steps``) on the head's loss (:meth:`Context.loss`),
    from a random start in the ball drawn per sample from (seed, norm, sample id, eps); returns
    the last iterate. No sample is left out because it is already misclassified and none stops
    early: the training-time counterpart of :func:`pgd_sweep` (which, to measure robustness,
    attacks only clean-correct samples and stops each at its first break)."""
    if steps < 1 or eps <= 0 or x.shape[0] == 0:
        return x.detach().clone()
    alpha = step_size if step_size is not None else step_ratio * eps / steps
    if random_start:
        noise = unit_noise(norm, tuple(x.shape[1:]), seed, sample_ids, x.device, key=eps)
        delta = _start(norm, noise, x, eps)
    else:
        delta = torch.zeros_like(x)
    for _ in range(int(steps)):
        with torch.enable_grad():
            xa = (x + delta).detach().requires_grad_(True)
            (g,) = torch.autograd.grad(ctx.loss(ctx.forward(xa), y), xa)
        ctx.work += int(x.shape[0])
        delta = _step(delta, g.float(), x, alpha, eps, norm)
    return (x + delta).detach()


def pgd_sweep(ctx: Context, x: torch.Tensor, y: torch.Tensor, eps: list[float], *, norm: str,
              steps: int, step_size: float | None, step_ratio: float, random_start: bool,
              warm_start: bool, seed: int, sample_ids: torch.Tensor,
              record_grad: bool = True, loss: str = "ce"
              ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The engine. Returns, per eps, (x_adv (B,C,H,W), broken_at_step (B,) with -1 = survived)."""
    B = x.shape[0]
    dev = x.device
    delta = torch.zeros_like(x)
    x_adv = x.clone()               # kept iterate of broken samples, last iterate of survivors
    broken = torch.zeros(B, dtype=torch.bool, device=dev)
    started = False
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    for e in eps:
        at = torch.full((B,), -1, dtype=torch.int64, device=dev)
        at[broken] = 0
        active = (~broken).nonzero().squeeze(1)
        if e <= 0 or active.numel() == 0:
            out.append((x_adv.clone(), at))
            continue
        alpha = step_size if step_size is not None else step_ratio * e / max(steps, 1)
        if not (warm_start and started):
            if random_start:
                noise = unit_noise(norm, tuple(x.shape[1:]), seed, sample_ids[active], dev, key=e)
                delta[active] = _start(norm, noise, x[active], e)
            else:
                delta[active] = 0
        started = True
        for t in range(steps + 1):
            if active.numel() == 0:
                break
            xs = x[active]
            xa = xs + delta[active]
            want_grad = t < steps
            with torch.enable_grad():
                xa.requires_grad_(want_grad)
                logits = ctx.forward(xa)
                fooled = ctx.confirm(xa, y[active], ctx.predict(logits) != y[active])
                if want_grad:
                    keep = ~fooled
                    obj = attack_loss(logits[keep], y[active][keep], loss, ctx) \
                        if keep.any() else None
                    grad = torch.autograd.grad(obj, xa)[0] if obj is not None else None
            ctx.work += int(active.numel())
            if fooled.any():
                idx = active[fooled]
                broken[idx] = True
                at[idx] = t
                x_adv[idx] = xa[fooled].detach()
            if not want_grad:
                break
            keep = ~fooled
            active = active[keep]
            if active.numel() == 0:
                break
            g = grad[keep]
            if record_grad and not ctx.grad_recorded:
                ctx.record_grad(g)
            delta[active] = _step(delta[active], g.float(), x[active], alpha, e, norm)
        surv = (~broken).nonzero().squeeze(1)
        x_adv[surv] = x[surv] + delta[surv]
        out.append((x_adv.clone(), at))
    return out


def sanity_pgd(ctx: Context, norm: str, x: torch.Tensor, y: torch.Tensor, eps: float, *,
               seed: int, sample_ids: torch.Tensor, steps: int = 20) -> torch.Tensor:
    """(B,) bool: fooled by a PGD-``steps`` at ``eps`` (used for the huge-eps sanity flag).

    Starts at the clean input and ascends the margin loss: at a huge eps a random start drives a
    ReLU network's logits so far that the softmax saturates and cross-entropy gradients vanish."""
    work = ctx.work
    res = pgd_sweep(ctx, x, y, [eps], norm=norm, steps=steps, step_size=None, step_ratio=2.5,
                    random_start=False, warm_start=False, seed=seed, sample_ids=sample_ids,
                    record_grad=False, loss="margin")
    ctx.work = work  # not part of the attack's own cost
    return res[0][1] >= 0


