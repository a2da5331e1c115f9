"""Benchmark conditions: what is measured, with the full identity of what produced it.

A *condition* is one thing measured on the whole data set: the clean images, one corruption at
one severity, one attack at one eps, or a saliency score. Its string key is its identity in the
results store, and it names the configuration that produced it::

    clean
    corruption/motion_blur/4/config=3f9a0c1d2e4b
    corruption/imagenet_c/fog/2/config=0b7d...
    attack/pgd/linf/steps=10/config=8e21c4a9f0d3/eps=0.0078431
    saliency/ig/baseline=grey/steps=32/n=64

``config`` is the first 12 hex digits of the sha256 of the canonical JSON of the corruption's or
attack's whole configuration (for an attack: steps, step rule, restarts, random start, loss, the
third-party package and version, ...; see :meth:`robustbench_fundus.attacks.Attack.identity`),
so two runs with different settings can never share or shadow a row. The key is for identity
only: every number (severity, eps, steps, norm) is also its own typed column in the store, eps
as a float (for L-inf in [0,1] pixel units; for L2 the L2 norm of the perturbation in those
units), and the configuration itself is stored as JSON beside the row.

What is accumulated per condition is a short vector of *integer counts*, so partial results from
batches, chunks and processes are summed exactly:

* clean / corruption: the flattened K x K confusion matrix (rows = true grade);
* attack: ``[n, n_attacked, n_broken]`` (n_attacked = correct on clean input; n_broken = of
  those, turned wrong by the attack at this eps), then the attack's sanity counters
  (:data:`ATTACK_SANITY`) of the sweeps that computed this eps.

A saliency condition is not a sum of counts: its per-sample scores are kept per part of the N
images and combined when all parts are in (see :mod:`robustbench_fundus.bench.saliency`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import RBFError
from ..grades import NUM_GRADES

#: The benchmark's default eps list for L-inf attacks (pixel units in [0,1]); an attack's own
#: ``default_eps`` is used when no eps is given (L2 attacks have an L2 sweep).
DEFAULT_EPS: tuple[float, ...] = (0.5 / 255, 1 / 255, 2 / 255, 2.5 / 255, 4 / 255, 8 / 255)
DEFAULT_SEVERITIES: tuple[int, ...] = (1, 2, 3, 4)


def eps_key(eps: float) -> str:
    """eps written with 7 decimals (enough to tell 1/255 steps apart, stable as a key)."""
    return f"{float(eps):.7f}"


def format_eps_255(eps: float) -> str:
    """eps in /255 units for people: 0.0078431 -> '2/255', 0.0098039 -> '2.5/255'."""
    v = float(eps) * 255.0
    r = round(v, 2)
    return f"{r:g}/255"


def format_eps(eps: float, norm: str | None = "linf") -> str:
    """eps as people read it: L-inf in /255 (``2/255``), L2 as the plain norm (``0.5``)."""
    if str(norm or "linf").lower() == "l2":
        return f"{float(eps):g}"
    return format_eps_255(eps)


@dataclass(frozen=True)
class Condition:
    kind: str                 # "clean" | "corruption" | "attack" | "referral" | "saliency"
    name: str = "clean"       # corruption, attack (display name) or attribution-method name
    severity: int | None = None
    eps: float | None = None
    steps: int | None = None
    norm: str | None = None       # attack: "linf" | "l2"
    config_hash: str | None = None  # corruption/attack: hash of the whole configuration
    config: str | None = None     # corruption/attack: canonical JSON of that configuration
    label: str | None = None      # attack: short label saying norm and steps, e.g. pgd_linf_10
    baseline: str | None = None   # saliency: the IG baseline
    n_images: int | None = None   # saliency: images scored (spread evenly over the set)
    #: labels of the model's decision: 5 grades, or 2 for a binary (referable) head; the size
    #: of the confusion matrix kept (not part of the key: the head is part of the model's
    #: identity)
    n_labels: int = NUM_GRADES
    threshold: int | None = None  # referral-flip: the lowest referable grade

    @property
    def key(self) -> str:
        if self.kind == "clean":
            return "clean"
        if self.kind == "corruption":
            return f"corruption/{self.name}/{self.severity}/config={self.config_hash}"
        if self.kind == "saliency":
            return (f"saliency/{self.name}/baseline={self.baseline}/steps={self.steps}/"
                    f"n={self.n_images}")
        steps = "-" if self.steps is None else self.steps
        base = (f"{self.name}/{self.norm}/steps={steps}/config={self.config_hash}/"
                f"eps={eps_key(self.eps)}")
        if self.kind == "referral":
            return f"referral/{base}/threshold={self.threshold}"
        return f"attack/{base}"

    @property
    def n_counts(self) -> int:
        from .screening import Layout
        k = self.n_labels
        if self.kind == "attack":
            return 3 + len(ATTACK_SANITY) + k * k + Layout(k).size
        if self.kind == "referral":
            return len(REFERRAL_COUNTS)
        return k * k + Layout(k).size

    @property
    def attack_id(self) -> tuple[str, str, str] | None:
        """(name, norm, config hash): the attack configuration, shared by its eps conditions
        (a referral-flip condition's also carries its referral threshold)."""
        if self.kind == "attack":
            return (self.name, str(self.norm), str(self.config_hash))
        if self.kind == "referral":
            return (self.name, str(self.norm), str(self.config_hash), f"ref>={self.threshold}")
        return None

    @property
    def config_dict(self) -> dict[str, Any]:
        return json.loads(self.config) if self.config else {}

    @property
    def display(self) -> str:
        """How people read the condition: ``clean``, ``motion_blur s4``,
        ``pgd_linf_10 eps=2/255``."""
        if self.kind == "clean":
            return "clean"
        if self.kind == "corruption":
            return f"{self.name} s{self.severity}"
        if self.kind == "saliency":
            return f"saliency {self.name} n={self.n_images}"
        if self.kind == "referral":
            return f"{self.label or self.name} referral eps={format_eps(self.eps, self.norm)}"
        return f"{self.label or self.name} eps={format_eps(self.eps, self.norm)}"


CLEAN = Condition("clean")

#: Counts of a referral-flip condition: referable eyes, those referred on clean input (the
#: attacked ones), those the attack turned to "not referable" (missed referrals); then the same
#: for non-referable eyes (over-referrals).
REFERRAL_COUNTS: tuple[str, ...] = ("n_referable", "n_referable_attacked", "n_missed",
                                    "n_nonreferable", "n_nonreferable_attacked",
                                    "n_over_referred")

#: Sanity counters of an attack sweep kept per attack condition (after n, n_attacked, n_broken):
#: the scalar counters of the attack stage's ``SweepCounts`` (summed over the batches of the
#: sweeps that computed the condition), then its per-eps ``n_unverified`` and ``n_projected``.
ATTACK_SANITY: tuple[str, ...] = ("batches", "grad_checked", "grad_zero", "grad_nonfinite",
                                  "prob_batches", "randomized_batches", "huge_checked",
                                  "huge_unbroken", "n_unverified", "n_projected")


def canonical_json(obj: Any) -> str:
    """The canonical JSON of a configuration (sorted keys, no spaces): equal configs, equal
    text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def clean_condition(n_labels: int = NUM_GRADES) -> Condition:
    return Condition("clean", n_labels=int(n_labels))


def corruption_condition(corruption: Any, severity: int, n_labels: int = NUM_GRADES
                         ) -> Condition:
    """The condition of one registered corruption object at one severity."""
    ident = corruption.identity()
    return Condition("corruption", ident["name"], severity=int(severity),
                     config_hash=ident["config_hash"], config=canonical_json(ident["config"]),
                     n_labels=int(n_labels))


def attack_conditions(attack: Any, eps: Sequence[float], n_labels: int = NUM_GRADES,
                      kind: str = "attack", threshold: int | None = None) -> list[Condition]:
    """The conditions of one configured attack at each eps (ascending); ``kind="referral"``:
    its referral-flip conditions at referral threshold ``threshold``."""
    ident = attack.identity()
    cfg = canonical_json(ident.config)
    return [Condition(kind, ident.name, eps=float(e), steps=ident.steps, norm=ident.norm,
                      config_hash=ident.config_hash, config=cfg, label=ident.label,
                      n_labels=int(n_labels),
                      threshold=None if threshold is None else int(threshold))
            for e in eps]


def saliency_condition(n_images: int, steps: int, baseline: str, method: str = "ig"
                       ) -> Condition:
    return Condition("saliency", method, steps=int(steps), baseline=str(baseline),
                     n_images=int(n_images))


# -- the sweep and the corruption list ---------------------------------------------------------
def eps_sweep(value: Any, norm: str = "Linf", default: Sequence[float] | None = None
              ) -> list[float]:
    """The eps of a sweep: ``value`` read by the one eps parser
    (:func:`robustbench_fundus.attacks.parse_eps`, for ``norm``), sorted, duplicates dropped;
    None -> ``default`` (the attack's own default sweep; :data:`DEFAULT_EPS` if not given)."""
    from ..attacks import parse_eps
    vals = list(default if default is not None else DEFAULT_EPS) if value is None else \
        parse_eps(value, what="--eps", norm=norm)
    uniq = {eps_key(v): float(v) for v in vals}
    return sorted(uniq.values())


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
