"""The results of an attack sweep: per-sample tensors (:class:`SweepResult`, :class:`EpsResult`)
and integer counts (:class:`SweepCounts`) that add exactly over batches and ranks.

Imports nothing from the rest of the attack stage.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch

SCHEMA_VERSION = 1

# Flag thresholds (fractions of the samples checked).
MASKED_GRAD_FRACTION = 0.10
# Scalar counters kept in SweepCounts (besides n, n_attacked and the per-eps lists).
_SCALAR_COUNTERS = ("batches", "grad_checked", "grad_zero", "grad_nonfinite", "prob_batches",
                    "randomized_batches", "huge_checked", "huge_unbroken", "work")
_LIST_COUNTERS = ("n_success", "n_robust", "n_unverified", "n_projected")



@dataclass
class SweepCounts:
    """Integer counts of one sweep; ``a + b`` sums two of them (batches, ranks).

    n: samples; n_attacked: clean-correct samples (the success-rate denominator);
    n_success[k]: clean-correct samples the attack turned wrong at eps[k];
    n_robust[k]: samples still correct after the attack at eps[k] (robust-accuracy numerator,
    denominator n); n_unverified[k]: samples whose break at eps[k], as claimed by the attack
    when it returned a result, a float32 forward pass rejected. Under bf16 autocast the base
    class re-attacks exactly these samples in float32 and the float32 outcome is what counts;
    a claim rejected without autocast (or rejected again after the float32 re-attack) counts
    as not broken. Engines that confirm every break in float32 before freezing a sample (native
    PGD, FGSM) leave it at 0. n_projected[k]: samples whose returned input left the eps ball or
    [0,1] by more than 1e-6 and had to be projected by the base class.
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
                "message": ("some successes claimed by the attack did not reproduce in a "
                            "float32 forward pass: under mixed precision those samples were "
                            "re-attacked in float32 (that result counts), otherwise they were "
                            "counted as not broken"),
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
    #: float32 (B, width): the model's output at the returned adversarial input (the clean
    #: output for samples that were not attacked: those wrong on clean input)
    adv_out: torch.Tensor | None = None

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
    #: ``Attack.identity().to_dict()`` of the attack that ran (name, norm, steps, config, hash)
    identity: dict = field(default_factory=dict)

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
                "seed": self.seed, "config": self.config, "identity": self.identity,
                **self.counts.to_dict()}


