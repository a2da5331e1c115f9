"""The attack contract: one final ``__call__`` that every attack goes through.

``attack(model, x, y, eps=[...], seed=0, sample_ids=None) -> SweepResult``

* ``x``: float (B,3,H,W) in [0,1] *model-input space* (normalisation lives inside the model);
  ``y``: (B,) integer labels; ``eps``: ascending list of radii in [0,1] pixel units.
* The base class (not the attack) validates the inputs, puts the model in eval mode and gives it
  back in the mode it came in (every submodule's ``training`` flag), evaluates the clean batch,
  attacks only the clean-correct samples, projects every adversarial batch onto the eps ball of
  the attack's norm and onto [0,1], re-checks every claimed success with a float32 forward pass,
  enforces monotonicity in eps (a sample broken at eps_k keeps its perturbation at every larger
  eps) and computes the sanity flags.
* Subclasses implement :meth:`Attack._sweep` (the whole sweep, e.g. PGD's warm-started engine) or
  only :meth:`Attack._attack_eps` (one eps at a time; the base class then attacks only the
  survivors of the previous eps).

Counts are plain integers (:class:`SweepCounts`) so they can be summed over batches and ranks
(``counts.to_tensor()`` -> ``dist.all_reduce`` -> ``SweepCounts.from_tensor``) and the flags are
derived from the summed counts.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import RBFError

SCHEMA_VERSION = 1
NORMS = ("Linf", "L2")

ModelFn = Callable[[torch.Tensor], torch.Tensor]

# Flag thresholds (fractions of the samples checked).
MASKED_GRAD_FRACTION = 0.10
# Scalar counters kept in SweepCounts (besides n, n_attacked and the per-eps lists).
_SCALAR_COUNTERS = ("batches", "grad_checked", "grad_zero", "grad_nonfinite", "prob_batches",
                    "randomized_batches", "huge_checked", "huge_unbroken", "work")
_LIST_COUNTERS = ("n_success", "n_robust", "n_unverified", "n_projected")


# ------------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------------
@dataclass
class AttackConfig:
    """Options shared by every attack.

    amp: ``"auto"`` (bf16 autocast on CUDA, off on CPU), ``"bf16"`` or ``"off"``; input
        gradients and losses are always float32, and clean/verification passes run in float32.
    channels_last: ``"auto"`` (on CUDA), ``True`` or ``False``: feed inputs in channels-last
        memory format (the model's weights are not touched).
    sanity_eps: radius of the "huge eps" check (None: 0.5 for Linf, 0.25*sqrt(C*H*W) for L2;
        0 disables it); sanity_samples: how many survivors of the largest eps it attacks.
    keep_adv: keep the adversarial batch of every eps in the result (memory: len(eps) x batch).
    """
    amp: str = "auto"
    channels_last: Any = "auto"
    sanity_eps: float | None = None
    sanity_samples: int = 8
    keep_adv: bool = True


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------
@dataclass
class SweepCounts:
    """Integer counts of one sweep; ``a + b`` sums two of them (batches, ranks).

    n: samples; n_attacked: clean-correct samples (the success-rate denominator);
    n_success[k]: clean-correct samples the attack turned wrong at eps[k];
    n_robust[k]: samples still correct after the attack at eps[k] (robust-accuracy numerator,
    denominator n); n_unverified[k]: samples the attack claimed broken that a float32 forward
    pass did not confirm (counted as not broken); n_projected[k]: samples whose returned input
    left the eps ball or [0,1] by more than 1e-6 and had to be projected by the base class.
    Sanity counters: see :meth:`flags`. work: forward+backward sample-passes spent.
    """
    eps: list[float]
    n: int = 0
    n_attacked: int = 0
    n_success: list[int] = field(default_factory=list)
    n_robust: list[int] = field(default_factory=list)
    n_unverified: list[int] = field(default_factory=list)
    n_projected: list[int] = field(default_factory=list)
    batches: int = 0
    grad_checked: int = 0
    grad_zero: int = 0
    grad_nonfinite: int = 0
    prob_batches: int = 0
    randomized_batches: int = 0
    huge_checked: int = 0
    huge_unbroken: int = 0
    work: int = 0

    def __post_init__(self) -> None:
        self.eps = [float(e) for e in self.eps]
        for name in _LIST_COUNTERS:
            v = getattr(self, name)
            if not v:
                setattr(self, name, [0] * len(self.eps))
            elif len(v) != len(self.eps):
                raise ValueError(f"{name} has {len(v)} entries for {len(self.eps)} eps")

    # -- reduction ------------------------------------------------------------------------------
    def __add__(self, other: "SweepCounts") -> "SweepCounts":
        if not isinstance(other, SweepCounts):
            return NotImplemented
        if len(self.eps) != len(other.eps) or any(
                not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
                for a, b in zip(self.eps, other.eps)):
            raise ValueError(f"cannot add counts of different eps lists {self.eps} and {other.eps}")
        kw: dict[str, Any] = {"eps": list(self.eps)}
        for name in ("n", "n_attacked", *_SCALAR_COUNTERS):
            kw[name] = getattr(self, name) + getattr(other, name)
        for name in _LIST_COUNTERS:
            kw[name] = [a + b for a, b in zip(getattr(self, name), getattr(other, name))]
        return SweepCounts(**kw)

    def __radd__(self, other: Any) -> "SweepCounts":
        if other == 0:  # sum([...])
            return self
        return self.__add__(other)

    def to_tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        """All counts as one int64 vector (for ``torch.distributed.all_reduce``)."""
        vals = [self.n, self.n_attacked, *(getattr(self, k) for k in _SCALAR_COUNTERS)]
        for name in _LIST_COUNTERS:
            vals += list(getattr(self, name))
        return torch.tensor(vals, dtype=torch.int64, device=device)

    @classmethod
    def from_tensor(cls, t: torch.Tensor, eps: Sequence[float]) -> "SweepCounts":
        v = [int(a) for a in t.detach().cpu().tolist()]
        k = len(eps)
        ns = 2 + len(_SCALAR_COUNTERS)
        if len(v) != ns + k * len(_LIST_COUNTERS):
            raise ValueError(f"count vector of length {len(v)} does not match {k} eps")
        kw: dict[str, Any] = {"eps": list(eps), "n": v[0], "n_attacked": v[1]}
        kw.update(zip(_SCALAR_COUNTERS, v[2:ns]))
        for j, name in enumerate(_LIST_COUNTERS):
            kw[name] = v[ns + j * k: ns + (j + 1) * k]
        return cls(**kw)

    # -- derived numbers ------------------------------------------------------------------------
    @property
    def success_rate(self) -> list[float]:
        """Broken among clean-correct, per eps (denominator ``n_attacked``; NaN if 0)."""
        d = self.n_attacked
        return [s / d if d else float("nan") for s in self.n_success]

    @property
    def robust_accuracy(self) -> list[float]:
        """Correct after the attack over all samples, per eps (denominator ``n``)."""
        return [r / self.n if self.n else float("nan") for r in self.n_robust]

    @property
    def clean_accuracy(self) -> float:
        return self.n_attacked / self.n if self.n else float("nan")

    def flags(self) -> list[dict]:
        """Sanity flags derived from the counts (so they stay right after a reduction)."""
        out: list[dict] = []
        bad = self.grad_zero + self.grad_nonfinite
        if self.grad_checked and (self.grad_nonfinite > 0
                                  or bad > MASKED_GRAD_FRACTION * self.grad_checked):
            out.append({
                "name": "masked_gradients",
                "message": (f"{self.grad_zero} zero and {self.grad_nonfinite} non-finite input "
                            f"gradients out of {self.grad_checked} samples: gradient-based attacks "
                            "may be unreliable (gradient masking); try a black-box attack"),
                "n_zero": self.grad_zero, "n_nonfinite": self.grad_nonfinite,
                "n_checked": self.grad_checked})
        if self.prob_batches:
            out.append({
                "name": "probability_outputs",
                "message": ("the model's outputs are non-negative and sum to 1: it seems to "
                            "return probabilities; attacks need logits (remove the softmax)"),
                "n_batches": self.prob_batches, "n_batches_checked": self.batches})
        if self.randomized_batches:
            out.append({
                "name": "randomized_model",
                "message": ("two forward passes on the same input differ: the model is "
                            "randomised (dropout in eval mode, noise); use an EOT attack"),
                "n_batches": self.randomized_batches, "n_batches_checked": self.batches})
        if self.huge_unbroken:
            out.append({
                "name": "huge_eps_not_broken",
                "message": (f"{self.huge_unbroken} of {self.huge_checked} samples checked were "
                            "not broken at a huge eps: the attack is failing (masked gradients, "
                            "too few steps) rather than the model being robust"),
                "n_unbroken": self.huge_unbroken, "n_checked": self.huge_checked})
        if any(self.n_unverified):
            out.append({
                "name": "unverified_success",
                "message": ("some successes found by the attack (under mixed precision or a "
                            "different batch) did not reproduce in a float32 forward pass and "
                            "were counted as not broken"),
                "n_unverified": list(self.n_unverified)})
        if any(self.n_projected):
            out.append({
                "name": "projected",
                "message": ("the attack returned inputs outside the eps ball or [0,1]; the base "
                            "class projected them back"),
                "n_projected": list(self.n_projected)})
        return out

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["success_rate"] = self.success_rate
        d["robust_accuracy"] = self.robust_accuracy
        d["flags"] = self.flags()
        return d


@dataclass
class EpsResult:
    """Per-sample result of one eps. Tensors are (B,) on the input's device."""
    eps: float
    success: torch.Tensor          # bool: clean-correct and wrong after the attack
    broken_at_step: torch.Tensor   # int64: step at this eps at which it broke (0: start point /
    #                                carried from a smaller eps), -1 if not broken
    adv_correct: torch.Tensor      # bool: correct after the attack
    x_adv: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return int(self.success.numel())

    @property
    def n_success(self) -> int:
        return int(self.success.sum())

    @property
    def n_robust(self) -> int:
        return int(self.adv_correct.sum())


@dataclass
class SweepResult:
    """Result of one attack call on one batch: per-eps per-sample tensors plus integer counts.

    ``result.success_rate[k]`` = n_success[k] / n_attacked (broken among clean-correct);
    ``result.robust_accuracy[k]`` = n_robust[k] / n (correct after attack among all).
    """
    attack: str
    norm: str
    eps: list[float]
    clean_correct: torch.Tensor            # (B,) bool
    sample_ids: torch.Tensor               # (B,) int64
    per_eps: list[EpsResult]
    counts: SweepCounts
    first_broken: torch.Tensor             # (B,) int64 index into eps of the first success, -1
    seed: int = 0
    config: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    # convenience views -----------------------------------------------------------------------
    @property
    def n(self) -> int:
        return self.counts.n

    @property
    def n_attacked(self) -> int:
        return self.counts.n_attacked

    @property
    def success_rate(self) -> list[float]:
        return self.counts.success_rate

    @property
    def robust_accuracy(self) -> list[float]:
        return self.counts.robust_accuracy

    @property
    def flags(self) -> list[dict]:
        return self.counts.flags()

    @property
    def success(self) -> torch.Tensor:
        """(len(eps), B) bool."""
        return torch.stack([r.success for r in self.per_eps]) if self.per_eps else \
            torch.zeros(0, self.n, dtype=torch.bool)

    @property
    def broken_at_step(self) -> torch.Tensor:
        """(len(eps), B) int64."""
        return torch.stack([r.broken_at_step for r in self.per_eps]) if self.per_eps else \
            torch.zeros(0, self.n, dtype=torch.int64)

    def __getitem__(self, k: int) -> EpsResult:
        return self.per_eps[k]

    def __len__(self) -> int:
        return len(self.per_eps)

    def __iter__(self) -> Iterator[EpsResult]:
        return iter(self.per_eps)

    def to_dict(self) -> dict:
        """JSON-able summary (counts, rates, flags; no tensors)."""
        return {"schema_version": self.schema_version, "attack": self.attack, "norm": self.norm,
                "seed": self.seed, "config": self.config, **self.counts.to_dict()}


# ------------------------------------------------------------------------------------------------
# helpers
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


@dataclass
class Context:
    """How the model is called during an attack (device, autocast, memory format) and the
    counters the attack may add to."""
    device: torch.device
    amp: bool
    channels_last: bool
    model: nn.Module
    grad_checked: int = 0
    grad_zero: int = 0
    grad_nonfinite: int = 0
    work: int = 0
    projected: dict = field(default_factory=dict)  # eps index -> samples projected in _sweep

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

    def confirm(self, x: torch.Tensor, y: torch.Tensor, fooled: torch.Tensor) -> torch.Tensor:
        """Under mixed precision, re-check claimed breaks with a float32 forward.

        A bf16 forward can call a sample fooled when its top two logits differ by ~1e-3; the
        engine would then stop stepping it and the float32 verification would reject the break at
        every eps, leaving a false plateau in the success curve. Rejected claims stay active.
        Without autocast this is the identity (no extra work)."""
        if not self.amp or not bool(fooled.any()):
            return fooled
        idx = fooled.nonzero().squeeze(1)
        with torch.no_grad():
            ok = predict(self.forward_fp32(x[idx].detach())) != y[idx]
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
        return self._ctx.forward(x)


def parse_eps(spec: str | float | Sequence[str | float], *, what: str = "eps") -> list[float]:
    """``"0.5/255,1/255,2/255"`` (or a list of such items or numbers) -> floats, in the given order.

    The one eps parser of the library (the bench and train CLIs use it too). Each value must lie in
    (0, 1]: eps is in [0,1] pixel units. ``what`` names the argument in error messages.
    """
    items: Sequence[str | float]
    if isinstance(spec, str):
        items = [s for s in spec.replace(" ", "").split(",") if s]
    elif isinstance(spec, (int, float)):
        items = [spec]
    else:
        items = list(spec)
    out = []
    for it in items:
        if isinstance(it, str):
            try:
                if "/" in it:
                    a, b = it.split("/", 1)
                    v = float(a) / float(b)
                else:
                    v = float(it)
            except (ValueError, ZeroDivisionError):
                raise RBFError(f"{what}: bad eps {it!r}: write a number such as 0.0078 or 2/255"
                               ) from None
        else:
            v = float(it)
        if not (math.isfinite(v) and 0 < v <= 1):
            raise RBFError(f"{what}: eps {it!r} is outside (0, 1]; eps is in [0,1] pixel units "
                           "(write 2/255, not 2)")
        out.append(v)
    if not out:
        raise RBFError(f"{what}: no eps given; write e.g. 2/255 or 0.5/255,1/255")
    return out


def _check_eps(eps: float | Sequence[float]) -> list[float]:
    vals = [float(eps)] if isinstance(eps, (int, float)) else [float(e) for e in eps]
    if not vals:
        raise RBFError("eps is empty: give at least one radius, e.g. eps=[2/255]")
    for e in vals:
        if not math.isfinite(e) or e < 0:
            raise RBFError(f"eps must be finite and >= 0 (in [0,1] pixel units), got {e}")
    if any(b <= a for a, b in zip(vals, vals[1:])):
        raise RBFError(f"eps must be strictly ascending, got {vals}")
    return vals


def _resolve_amp(amp: Any, device: torch.device) -> bool:
    if amp in (False, None, "off", "none", "fp32"):
        return False
    if amp in ("bf16", True):
        return True
    if amp == "auto":
        return device.type == "cuda" and torch.cuda.is_available() and \
            torch.cuda.is_bf16_supported()
    raise RBFError(f"amp must be 'auto', 'bf16' or 'off', got {amp!r}")


def _resolve_cl(cl: Any, device: torch.device) -> bool:
    if cl == "auto":
        return device.type == "cuda"
    if isinstance(cl, bool):
        return cl
    raise RBFError(f"channels_last must be 'auto', True or False, got {cl!r}")


# ------------------------------------------------------------------------------------------------
# the base class
# ------------------------------------------------------------------------------------------------
class Attack:
    """Base class of every attack. Call it; do not override ``__call__``.

    Subclasses set ``name``, ``norm`` (``"Linf"`` or ``"L2"``), ``Config`` (a dataclass derived
    from :class:`AttackConfig`) and implement :meth:`_sweep` or :meth:`_attack_eps`.
    """
    name: ClassVar[str] = "attack"
    norm: ClassVar[str] = "Linf"
    Config: ClassVar[type] = AttackConfig
    description: ClassVar[str] = ""
    #: steps reported as ``broken_at_step`` for attacks that do not report steps themselves
    nominal_steps: int = 0

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "__call__" in cls.__dict__:
            raise TypeError(f"{cls.__name__} must not override Attack.__call__ (it is final); "
                            "implement _sweep or _attack_eps")

    def __init__(self, config: AttackConfig | None = None, **kw: Any):
        if config is None:
            try:
                config = self.Config(**kw)
            except TypeError as exc:
                fields = ", ".join(f.name for f in dataclasses.fields(self.Config))
                raise RBFError(f"bad option for attack {self.name!r}: {exc}; "
                               f"options are {fields}") from None
        elif kw:
            config = dataclasses.replace(config, **kw)
        self.config = config
        self._validate_config()

    def _validate_config(self) -> None:
        if self.norm not in NORMS:
            raise RBFError(f"attack {self.name!r}: norm must be one of {NORMS}, got {self.norm!r}")

    @property
    def display_name(self) -> str:
        """The name results carry (e.g. ``torchattacks:PGD`` for the adapter)."""
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    # -- the final entry point --------------------------------------------------------------------
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 eps: float | Sequence[float], *, seed: int = 0,
                 sample_ids: torch.Tensor | Sequence[int] | None = None,
                 keep_adv: bool | None = None) -> SweepResult:
        """Attack ``model`` on ``(x, y)`` at every radius of ``eps`` (ascending)."""
        eps_list = _check_eps(eps)
        x, y, ids = self._check_inputs(x, y, sample_ids)
        keep = self.config.keep_adv if keep_adv is None else bool(keep_adv)
        device = x.device
        ctx = Context(device=device, amp=_resolve_amp(self.config.amp, device),
                      channels_last=_resolve_cl(self.config.channels_last, device), model=model)
        B = x.shape[0]
        counts = SweepCounts(eps=eps_list, n=B)
        with eval_mode(model):
            if B == 0:
                return self._empty_result(x, y, ids, eps_list, counts, keep, seed)
            with torch.no_grad():
                logits = ctx.forward_fp32(x)
            if logits.dim() != 2 or logits.shape[0] != B:
                raise RBFError(f"the model must return logits of shape (B, classes); got "
                               f"{tuple(logits.shape)}")
            clean_correct = predict(logits) == y
            counts.batches = 1
            counts.n_attacked = int(clean_correct.sum())
            counts.prob_batches = int(self._looks_like_probabilities(logits))
            counts.randomized_batches = int(self._looks_randomized(ctx, x, logits))

            att = clean_correct.nonzero().squeeze(1)
            xa, ya, ida = x[att], y[att], ids[att]
            if att.numel():
                raw = self._sweep(ctx, xa, ya, eps_list, seed=seed, sample_ids=ida)
                if len(raw) != len(eps_list):
                    raise RuntimeError(f"{self.name}: _sweep returned {len(raw)} results for "
                                       f"{len(eps_list)} eps")
                if not ctx.grad_recorded:
                    self._grad_check(ctx, xa, ya)
            else:
                raw = [(xa, torch.full((0,), -1, dtype=torch.int64, device=device))
                       for _ in eps_list]

            per_eps: list[EpsResult] = []
            first_broken = torch.full((B,), -1, dtype=torch.int64, device=device)
            prev_x: torch.Tensor | None = None
            prev_s = torch.zeros(att.numel(), dtype=torch.bool, device=device)
            for k, (e, (xk_raw, steps_k)) in enumerate(zip(eps_list, raw)):
                xk = project(xa, xk_raw.detach().to(xa.dtype), e, self.norm)
                moved = (xk - xk_raw).flatten(1).abs().amax(1) > 1e-6 if xk.numel() else \
                    torch.zeros(0, dtype=torch.bool, device=device)
                counts.n_projected[k] = int(moved.sum()) + ctx.projected.get(k, 0)
                steps_k = steps_k.to(device=device, dtype=torch.int64)
                claimed = steps_k >= 0
                same = prev_s & (xk == prev_x).flatten(1).all(1) if prev_x is not None else \
                    torch.zeros_like(prev_s)
                need = ~same
                ok = torch.zeros_like(prev_s)
                if need.any():
                    with torch.no_grad():
                        ok[need] = predict(ctx.forward_fp32(xk[need])) == ya[need]
                succ = same | (need & ~ok)
                counts.n_unverified[k] = int((claimed & ~succ).sum())
                lost = prev_s & ~succ  # broken before: keep the smaller-eps perturbation
                if lost.any():
                    xk = torch.where(lost.view(-1, 1, 1, 1), prev_x, xk)
                    succ = succ | lost
                steps_out = torch.where(succ, steps_k.clamp(min=0), torch.full_like(steps_k, -1))
                steps_out = torch.where(same | lost, torch.zeros_like(steps_out), steps_out)
                new = succ & ~prev_s
                # scatter back to the full batch
                s_full = torch.zeros(B, dtype=torch.bool, device=device)
                s_full[att] = succ
                st_full = torch.full((B,), -1, dtype=torch.int64, device=device)
                st_full[att] = steps_out
                fb = first_broken[att]
                fb[new] = k
                first_broken[att] = fb
                x_full = None
                if keep:
                    x_full = x.clone()
                    x_full[att] = xk
                adv_correct = clean_correct & ~s_full
                counts.n_success[k] = int(s_full.sum())
                counts.n_robust[k] = int(adv_correct.sum())
                per_eps.append(EpsResult(e, s_full, st_full, adv_correct, x_full))
                prev_x, prev_s = xk, succ

            self._huge_eps_check(ctx, xa, ya, ida, prev_s, eps_list, counts, seed)
        counts.grad_checked, counts.grad_zero = ctx.grad_checked, ctx.grad_zero
        counts.grad_nonfinite, counts.work = ctx.grad_nonfinite, ctx.work
        return SweepResult(attack=self.display_name, norm=self.norm, eps=eps_list,
                           clean_correct=clean_correct, sample_ids=ids, per_eps=per_eps,
                           counts=counts, first_broken=first_broken, seed=int(seed),
                           config=self.config_dict())

    run = __call__

    # -- hooks for subclasses ---------------------------------------------------------------------
    def _sweep(self, ctx: Context, x: torch.Tensor, y: torch.Tensor, eps: list[float], *,
               seed: int, sample_ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Default sweep: attack each eps separately, only the samples not yet broken (checked
        by a forward pass), carrying broken samples forward. Returns, per eps, the adversarial
        batch and ``broken_at_step`` (-1 where the attack does not claim success)."""
        B = x.shape[0]
        x_adv = x.clone()
        broken = torch.zeros(B, dtype=torch.bool, device=x.device)
        out = []
        for k, e in enumerate(eps):
            steps = torch.full((B,), -1, dtype=torch.int64, device=x.device)
            steps[broken] = 0
            act = (~broken).nonzero().squeeze(1)
            if e > 0 and act.numel():
                raw = self._attack_eps(ctx, x[act], y[act], e, seed=seed,
                                       sample_ids=sample_ids[act]).detach().to(x.dtype)
                xs = project(x[act], raw, e, self.norm)
                ctx.projected[k] = int(((xs - raw).flatten(1).abs().amax(1) > 1e-6).sum())
                with torch.no_grad():
                    fooled = predict(ctx.forward(xs)) != y[act]
                ctx.work += int(act.numel())
                x_adv[act] = xs
                idx = act[fooled]
                broken[idx] = True
                steps[idx] = self.nominal_steps
            out.append((x_adv.clone(), steps))
        return out

    def _attack_eps(self, ctx: Context, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                    seed: int, sample_ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} implements neither _sweep nor "
                                  "_attack_eps")

    # -- pieces -----------------------------------------------------------------------------------
    def config_dict(self) -> dict:
        return {k: (v if isinstance(v, (int, float, str, bool, type(None))) else repr(v))
                for k, v in dataclasses.asdict(self.config).items()}

    def _check_inputs(self, x: Any, y: Any, sample_ids: Any):
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            raise RBFError("attack input x must be a float tensor (B, C, H, W) in [0,1], got "
                           f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
        if x.numel() and (not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1):
            raise RBFError("attack input x must lie in [0,1] (model-input space; normalisation "
                           f"belongs inside the model), got range [{float(x.min()):.3g}, "
                           f"{float(x.max()):.3g}]")
        y = torch.as_tensor(y, device=x.device)
        if y.dim() != 1 or y.shape[0] != x.shape[0] or y.is_floating_point():
            raise RBFError(f"labels y must be an integer tensor of shape ({x.shape[0]},), got "
                           f"{y.dtype} {tuple(y.shape)}")
        y = y.long()
        if sample_ids is None:
            ids = torch.arange(x.shape[0], device=x.device)
        else:
            ids = torch.as_tensor(sample_ids, device=x.device)
            if ids.shape != (x.shape[0],) or ids.is_floating_point():
                raise RBFError(f"sample_ids must be integers of shape ({x.shape[0]},), got "
                               f"{tuple(ids.shape)}")
            ids = ids.long()
        return x.detach(), y, ids

    @staticmethod
    def _looks_like_probabilities(logits: torch.Tensor) -> bool:
        lo = logits.detach()
        if not torch.isfinite(lo).all():
            return False
        return bool(lo.min() > -1e-5 and lo.max() < 1 + 1e-5
                    and ((lo.sum(1) - 1).abs() < 1e-4).all())

    @staticmethod
    def _looks_randomized(ctx: Context, x: torch.Tensor, logits: torch.Tensor, n: int = 32
                          ) -> bool:
        k = min(n, x.shape[0])
        with torch.no_grad():
            again = ctx.forward_fp32(x[:k])
        a = logits[:k] / (logits[:k].norm(dim=1, keepdim=True) + 1e-10)
        b = again / (again.norm(dim=1, keepdim=True) + 1e-10)
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            return False
        return bool((a - b).norm(dim=1).max() > 1e-4
                    or (logits[:k].argmax(1) != again.argmax(1)).any())

    @staticmethod
    def _grad_check(ctx: Context, x: torch.Tensor, y: torch.Tensor, n: int = 64) -> None:
        """Input-gradient check at the clean point (for attacks that did not record one)."""
        k = min(n, x.shape[0])
        with torch.enable_grad():
            xg = x[:k].clone().requires_grad_(True)
            loss = F.cross_entropy(ctx.forward(xg), y[:k], reduction="sum")
            (g,) = torch.autograd.grad(loss, xg)
        ctx.record_grad(g)

    def _default_sanity_eps(self, x: torch.Tensor) -> float:
        if self.config.sanity_eps is not None:
            return float(self.config.sanity_eps)
        if self.norm == "Linf":
            return 0.5
        return 0.25 * math.sqrt(x[0].numel())

    def _huge_eps_check(self, ctx: Context, x: torch.Tensor, y: torch.Tensor,
                        ids: torch.Tensor, broken_last: torch.Tensor, eps: list[float],
                        counts: SweepCounts, seed: int) -> None:
        """Attack up to ``sanity_samples`` survivors of the largest eps at a huge eps with PGD
        (same norm); every one of them should break."""
        if x.shape[0] == 0 or self.config.sanity_samples <= 0:
            return
        huge = self._default_sanity_eps(x)
        if huge <= 0:
            return
        surv = (~broken_last).nonzero().squeeze(1)[: self.config.sanity_samples]
        if surv.numel() == 0:
            return
        if eps[-1] >= huge:  # the sweep itself went that far
            counts.huge_checked += int(surv.numel())
            counts.huge_unbroken += int(surv.numel())
            return
        from .pgd import sanity_pgd  # local import: pgd imports this module
        fooled = sanity_pgd(ctx, self.norm, x[surv], y[surv], huge, seed=seed,
                            sample_ids=ids[surv])
        counts.huge_checked += int(surv.numel())
        counts.huge_unbroken += int((~fooled).sum())

    def _empty_result(self, x, y, ids, eps_list, counts, keep, seed) -> SweepResult:
        z = torch.zeros(0, dtype=torch.bool, device=x.device)
        zi = torch.zeros(0, dtype=torch.int64, device=x.device)
        per = [EpsResult(e, z, zi, z, x.clone() if keep else None) for e in eps_list]
        return SweepResult(self.display_name, self.norm, eps_list, z, ids, per, counts, zi, int(seed),
                           self.config_dict())
