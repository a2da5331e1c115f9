"""How an attack calls the model, and the small tensor helpers every attack shares.

:class:`Context` carries the device, the autocast and memory-format choices and the counters an
attack adds to (work, input-gradient checks, projections, float32 re-attacks). Its
:meth:`Context.fp32` view calls the same model with autocast off and shares the counters: the
base class uses it to re-attack, in float32, samples whose break claimed under bf16 did not
reproduce in float32.

This module imports nothing from the rest of the attack stage (the bottom layer).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
import torch.nn as nn

from ..errors import RBFError

NORMS = ("Linf", "L2")
AMP_CHOICES = ("auto", "bf16", "off")

ModelFn = Callable[[torch.Tensor], torch.Tensor]


def canonical_norm(norm: Any, *, what: str = "norm") -> str:
    """``"linf"``/``"Linf"``/``"LINF"`` -> ``"Linf"``; ``"l2"`` -> ``"L2"``; else a one-line
    RBFError."""
    if isinstance(norm, str):
        for n in NORMS:
            if norm.strip().lower() == n.lower():
                return n
    raise RBFError(f"{what} must be one of {', '.join(NORMS)} (case does not matter), got "
                   f"{norm!r}")


def resolve_amp(amp: Any, device: torch.device) -> bool:
    """Whether attack forward passes run under bf16 autocast on ``device``."""
    if amp in (False, None, "off", "none", "fp32"):
        return False
    if amp in ("bf16", True):
        return True
    if amp == "auto":
        return device.type == "cuda" and torch.cuda.is_available() and \
            torch.cuda.is_bf16_supported()
    raise RBFError(f"amp must be 'auto', 'bf16' or 'off', got {amp!r}")


def resolve_channels_last(cl: Any, device: torch.device) -> bool:
    """Whether attack inputs are fed in channels-last memory format on ``device``."""
    if cl == "auto":
        return device.type == "cuda"
    if isinstance(cl, bool):
        return cl
    raise RBFError(f"channels_last must be 'auto', True or False, got {cl!r}")


# ------------------------------------------------------------------------------------------------
# tensor helpers
# ------------------------------------------------------------------------------------------------
def _flat_norm(d: torch.Tensor) -> torch.Tensor:
    return d.flatten(1).norm(p=2, dim=1)


def project(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project ``x_adv`` onto {||x_adv - x|| <= eps} and [0,1] (per sample). Inputs already
    inside are returned bit-for-bit unchanged."""
    d = x_adv - x
    if norm == "Linf":
        dc = d.clamp(-eps, eps)
        out = torch.where(d == dc, x_adv, x + dc)
    elif norm == "L2":
        n = _flat_norm(d)
        outside = (n > eps).view(-1, *([1] * (d.dim() - 1)))
        factor = (eps / (n + 1e-12)).view(-1, *([1] * (d.dim() - 1)))
        out = torch.where(outside, x + d * factor, x_adv)
    else:  # pragma: no cover - validated earlier
        raise ValueError(norm)
    # Clamping to [0,1] only moves coordinates towards x, so it never leaves the ball.
    return out.clamp(0.0, 1.0)


def distance(x: torch.Tensor, x_adv: torch.Tensor, norm: str) -> torch.Tensor:
    """(B,) Linf or L2 distance."""
    d = (x_adv - x).flatten(1)
    return d.abs().amax(1) if norm == "Linf" else d.norm(p=2, dim=1)


def predict(logits: torch.Tensor) -> torch.Tensor:
    """argmax, with -1 for rows containing non-finite values (never counted as correct)."""
    pred = logits.argmax(1)
    return torch.where(torch.isfinite(logits).all(1), pred, torch.full_like(pred, -1))


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode; restore each one's own flag afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, t in modes:
            m.training = t


# ------------------------------------------------------------------------------------------------
# the context
# ------------------------------------------------------------------------------------------------
@dataclass
class Counters:
    """What an attack spent and saw; shared by a :class:`Context` and its float32 view.

    work: forward+backward sample-passes; grad_*: the input-gradient check (masked-gradient
    flag); projected: eps index -> samples the default sweep had to project;
    reattacked: eps index -> samples whose break claimed under autocast a float32 forward
    rejected, re-attacked in float32 by the default sweep."""
    work: int = 0
    grad_checked: int = 0
    grad_zero: int = 0
    grad_nonfinite: int = 0
    projected: dict = field(default_factory=dict)
    reattacked: dict = field(default_factory=dict)


def _counter(name: str) -> property:
    def get(self: "Context") -> Any:
        return getattr(self.counters, name)

    def set_(self: "Context", value: Any) -> None:
        setattr(self.counters, name, value)

    return property(get, set_, doc=f"shared counter ``{name}`` (see :class:`Counters`)")


class Context:
    """How the model is called during an attack (device, autocast, memory format), the number of
    classes it outputs, and the counters the attack adds to.

    ``Context(device=..., amp=..., channels_last=..., model=...)``; ``ctx.forward(x)`` is the
    attack-step forward (bf16 autocast when ``amp``), ``ctx.forward_fp32(x)`` the float32 one,
    ``ctx.fp32()`` a view with autocast off that shares the counters."""

    def __init__(self, device: torch.device | str, amp: bool, channels_last: bool,
                 model: nn.Module, *, n_classes: int | None = None,
                 counters: Counters | None = None, head: Any = None):
        self.device = torch.device(device)
        self.amp = bool(amp)
        self.channels_last = bool(channels_last)
        self.model = model
        self.n_classes = n_classes
        self.counters = counters if counters is not None else Counters()
        #: the model's head (:class:`robustbench_fundus.heads.Head`): how outputs become
        #: decisions and which loss an attack ascends; None: a classifier read by argmax and
        #: cross-entropy over however many logits it returns
        self.head = head

    work = _counter("work")
    grad_checked = _counter("grad_checked")
    grad_zero = _counter("grad_zero")
    grad_nonfinite = _counter("grad_nonfinite")
    projected = _counter("projected")

    def __repr__(self) -> str:
        return (f"Context(device={str(self.device)!r}, amp={self.amp}, "
                f"channels_last={self.channels_last}, n_classes={self.n_classes})")

    def fp32(self) -> "Context":
        """The same model, memory format and counters with autocast off."""
        if not self.amp:
            return self
        return Context(self.device, False, self.channels_last, self.model,
                       n_classes=self.n_classes, counters=self.counters, head=self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (float32) for an attack step (autocast/channels-last as configured)."""
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.amp:
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
                out = self.model(x)
        else:
            out = self.model(x)
        return out.float()

    __call__ = forward

    def forward_fp32(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=self.device.type, enabled=False):
            return self.model(x).float()

    def classes(self, x: torch.Tensor) -> int:
        """The number of labels the attack distinguishes: the head's (5 grades, 2 for a
        referral decision); without a head the model's output width (known from the clean pass;
        else one forward on ``x[:1]``)."""
        if self.head is not None:
            return int(self.head.n_labels)
        if self.n_classes is None:
            with torch.no_grad():
                self.n_classes = int(self.forward_fp32(x[:1]).shape[1])
        return int(self.n_classes)

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        """The decision for each row of the model's output (the head's; argmax without one),
        -1 for rows with non-finite values (never counted as correct)."""
        return self.head.decode(out) if self.head is not None else predict(out)

    def view(self, out: torch.Tensor) -> torch.Tensor:
        """(B, labels) scores whose argmax is the decision: what attacks written for
        classifiers see (the head's class view)."""
        return self.head.class_view(out) if self.head is not None else out

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The summed loss an attack ascends: the head's (cross-entropy for classification,
        the threshold margin for regression, binary cross-entropies for ordinal and binary)."""
        if self.head is not None:
            return self.head.attack_loss(out, y)
        return F.cross_entropy(out.float(), y, reduction="sum")

    def confirm(self, x: torch.Tensor, y: torch.Tensor, fooled: torch.Tensor) -> torch.Tensor:
        """Under mixed precision, re-check claimed breaks with a float32 forward.

        A bf16 forward can call a sample fooled when its top two logits differ by ~1e-3; an
        engine would then stop stepping it and the float32 verification would reject the break
        at every eps, leaving a false plateau in the success curve. Rejected claims come back
        False (the engine keeps stepping them). Without autocast this is the identity (no extra
        work)."""
        if not self.amp or not bool(fooled.any()):
            return fooled
        idx = fooled.nonzero().squeeze(1)
        with torch.no_grad():
            ok = self.predict(self.forward_fp32(x[idx].detach())) != y[idx]
        out = fooled.clone()
        out[idx] = ok
        return out

    def record_grad(self, grad: torch.Tensor) -> None:
        """Count zero / non-finite input gradients (masked-gradient flag)."""
        g = grad.detach().flatten(1)
        nonfinite = ~torch.isfinite(g).all(1)
        zero = (g == 0).all(1)
        self.grad_checked += int(g.shape[0])
        self.grad_nonfinite += int(nonfinite.sum())
        self.grad_zero += int((zero & ~nonfinite).sum())

    @property
    def grad_recorded(self) -> bool:
        return self.grad_checked > 0


class ModuleFn(nn.Module):
    """An nn.Module view of a Context (for third-party attacks that want an nn.Module): keeps
    the wrapped model as a submodule so ``.parameters()`` and ``.training`` work."""

    def __init__(self, ctx: Context):
        super().__init__()
        self.inner = ctx.model
        self._ctx = ctx
        # in eval mode like the model: third-party attacks restore the mode they find, and a
        # fresh module's training=True would switch the model (batch norm, dropout) to train
        self.training = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._ctx.view(self._ctx.forward(x))
