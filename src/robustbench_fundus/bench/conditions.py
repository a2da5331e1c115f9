"""Benchmark conditions and their string keys.

A *condition* is one thing measured on the whole data set: the clean images, one corruption at
one severity, or one attack at one eps. Each has a stable string key used in the results store::

    clean
    corruption/motion_blur/4
    corruption/imagenet_c/fog/2
    attack/pgd/linf/steps=10/eps=0.0078431
    saliency/ig/baseline=grey/steps=32/n=64

The key is for identity only; every number (severity, eps, steps) is also kept as its own typed
column in the store, eps as a float in [0,1] pixel units.

What is accumulated per condition is a short vector of *integer counts*, so partial results from
batches, chunks and processes are summed exactly:

* clean / corruption: the flattened K x K confusion matrix (rows = true grade);
* attack: ``[n, n_attacked, n_broken]`` (n_attacked = correct on clean input; n_broken = of
  those, turned wrong by the attack at this eps), then the attack's sanity counters
  (:data:`ATTACK_SANITY`: input-gradient checks, probability outputs, randomised model, huge-eps
  check, unverified and projected successes) of the sweeps that computed this eps.

A saliency condition (``--saliency N``) is not a sum of counts: its per-sample scores are kept
per part of the N images and combined when all parts are in (see ``evaluate``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import RBFError

NUM_CLASSES = 5

#: The benchmark's default eps list (pixel units in [0,1]).
DEFAULT_EPS: tuple[float, ...] = (0.5 / 255, 1 / 255, 2 / 255, 2.5 / 255, 4 / 255, 8 / 255)
DEFAULT_SEVERITIES: tuple[int, ...] = (1, 2, 3, 4)


def eps_key(eps: float) -> str:
    """eps written with 7 decimals (enough to tell 1/255 steps apart, stable as a key)."""
    return f"{float(eps):.7f}"


def format_eps_255(eps: float) -> str:
    """eps in /255 units for people: 0.0078431 -> '2/255', 0.0098039 -> '2.5/255'."""
    v = float(eps) * 255.0
    r = round(v, 2)
    s = f"{r:g}"
    return f"{s}/255"


@dataclass(frozen=True)
class Condition:
    kind: str                 # "clean" | "corruption" | "attack" | "saliency"
    name: str = "clean"       # corruption, attack or attribution-method name
    severity: int | None = None
    eps: float | None = None
    steps: int | None = None
    norm: str | None = None
    baseline: str | None = None   # saliency: the IG baseline
    n_images: int | None = None   # saliency: images scored (spread evenly over the set)

    @property
    def key(self) -> str:
        if self.kind == "clean":
            return "clean"
        if self.kind == "corruption":
            return f"corruption/{self.name}/{self.severity}"
        if self.kind == "saliency":
            return (f"saliency/{self.name}/baseline={self.baseline}/steps={self.steps}/"
                    f"n={self.n_images}")
        return f"attack/{self.name}/{self.norm}/steps={self.steps}/eps={eps_key(self.eps)}"

    @property
    def n_counts(self) -> int:
        if self.kind == "attack":
            return 3 + len(ATTACK_SANITY)
        return NUM_CLASSES * NUM_CLASSES

    @property
    def label(self) -> str:
        if self.kind == "clean":
            return "clean"
        if self.kind == "corruption":
            return f"{self.name} s{self.severity}"
        if self.kind == "saliency":
            return f"saliency {self.name} n={self.n_images}"
        return f"{self.name} eps={format_eps_255(self.eps)}"


CLEAN = Condition("clean")

#: Sanity counters of an attack sweep kept per attack condition (after n, n_attacked, n_broken):
#: the scalar counters of the attack stage's ``SweepCounts`` (summed over the batches of the
#: sweeps that computed the condition), then its per-eps ``n_unverified`` and ``n_projected``.
ATTACK_SANITY: tuple[str, ...] = ("batches", "grad_checked", "grad_zero", "grad_nonfinite",
                                  "prob_batches", "randomized_batches", "huge_checked",
                                  "huge_unbroken", "n_unverified", "n_projected")


def corruption_condition(name: str, severity: int) -> Condition:
    return Condition("corruption", name, severity=int(severity))


def attack_condition(name: str, eps: float, steps: int, norm: str = "linf") -> Condition:
    return Condition("attack", name, eps=float(eps), steps=int(steps), norm=norm)


def saliency_condition(n_images: int, steps: int, baseline: str, method: str = "ig"
                       ) -> Condition:
    return Condition("saliency", method, steps=int(steps), baseline=str(baseline),
                     n_images=int(n_images))


# -- parsing ---------------------------------------------------------------------------------
def parse_eps(value: str | float | Sequence[str | float] | None) -> list[float]:
    """'0.5/255,1/255,0.01' (or a list of numbers/strings) -> sorted unique eps in (0,1];
    None -> the default sweep. Values are read by :func:`robustbench_fundus.attacks.parse_eps`."""
    if value is None:
        return list(DEFAULT_EPS)
    from ..attacks.base import parse_eps as _parse_eps
    out = _parse_eps(value, what="--eps")
    uniq = {eps_key(v): v for v in out}  # unique by key, ascending
    return sorted(uniq.values())


def parse_severities(value: str | int | Sequence[int] | None, max_severity: int = 5) -> list[int]:
    """'1-4' | '2,4' | 3 | [1,2] -> sorted unique severities; None -> the default 1-4.
    See :func:`robustbench_fundus.corruptions.parse_severities`."""
    if value is None:
        return list(DEFAULT_SEVERITIES)
    from ..corruptions.base import parse_severities as _parse_severities
    return _parse_severities(value, max_severity=max_severity)


def resolve_corruptions(spec: str | Sequence[str] | None) -> list[str]:
    """'all' (the four fundus corruptions), 'imagenet-c' (the 19 ImageNet-C ones), 'none', or
    comma-separated names (mixable: 'all,imagenet_c/fog'); names are checked in the registry."""
    from .. import corruptions as C

    if spec is None:
        return []
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for it in items:
        if not it:
            continue
        low = it.lower()
        if low == "none":
            continue
        if low in ("all", "fundus"):
            names = list(C.FUNDUS_CORRUPTIONS)
        elif low in ("imagenet-c", "imagenet_c", "imagenetc"):
            names = list(C.IMAGENET_C_CORRUPTIONS)
        elif any(ch in it for ch in "*?["):
            names = C.REGISTRY.names(it)
            if not names:
                raise RBFError(f"--corruptions: pattern {it!r} matches no corruption "
                               "(see `rbf list corruptions`)")
        else:
            C.REGISTRY.get(it)  # unknown -> RBFError with close matches
            names = [it]
        for n in names:
            if n not in out:
                out.append(n)
    return out
