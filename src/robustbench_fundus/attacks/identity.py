"""What ran: the identity of a configured attack (name, norm, steps, the options that change its
result, a hash of them, and a short leaderboard label).

Imports nothing from the rest of the attack stage.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import math
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

#: Options that change how an attack runs but not which samples break (precision with float32
#: confirmation, memory format, whether adversarial batches are kept, the sanity check): they
#: are left out of an identity, so runs that differ only in them share results.
EXECUTION_OPTIONS: tuple[str, ...] = ("amp", "channels_last", "keep_adv", "sanity_eps",
                                      "sanity_samples")


def canonical(value: Any) -> Any:
    """A JSON-able canonical form: dict keys sorted (as strings), tuples as lists, floats as
    floats (non-finite ones as their repr), anything else as its repr."""
    if isinstance(value, dict):
        return {str(k): canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else repr(float(value))
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return canonical(value.item())
        except (TypeError, ValueError):
            pass
    return repr(value)


def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces: equal configurations give equal text."""
    return json.dumps(canonical(obj), sort_keys=True, separators=(",", ":"))


def package_version(dist: str, module: str | None = None) -> str:
    """``"torchattacks==3.5.1"``: the installed version of a distribution (``unknown`` if it
    cannot be read)."""
    try:
        v = metadata.version(dist)
    except metadata.PackageNotFoundError:
        try:
            v = str(getattr(importlib.import_module(module or dist), "__version__", "unknown"))
        except ImportError:
            v = "unknown"
    return f"{dist}=={v}"


def make_label(name: str, norm: str, steps: int | None) -> str:
    """``pgd_linf_10``, ``pgd_l2_10`` (the norm is not repeated when the name ends with it),
    ``fgsm_linf``, ``torchattacks:PGD_linf_10``."""
    norm = norm.lower()
    base = name if name.lower().endswith(norm) else f"{name}_{norm}"
    return base if steps is None else f"{base}_{int(steps)}"


@dataclass(frozen=True)
class AttackIdentity:
    """What ran. ``config`` holds every option that affects the result (canonical, JSON-able;
    without :data:`EXECUTION_OPTIONS`); ``config_hash`` is the first 12 hex digits of the
    sha256 of the canonical JSON of ``{"name", "norm", "config"}``."""
    name: str
    norm: str                      # "linf" | "l2"
    steps: int | None
    config: dict = field(hash=False)
    config_hash: str
    label: str

    @classmethod
    def build(cls, name: str, norm: str, steps: int | None, config: dict) -> "AttackIdentity":
        norm = norm.lower()
        cfg = canonical({k: v for k, v in config.items() if k not in EXECUTION_OPTIONS})
        text = canonical_json({"name": name, "norm": norm, "config": cfg})
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
        return cls(name=name, norm=norm, steps=None if steps is None else int(steps),
                   config=cfg, config_hash=digest, label=make_label(name, norm, steps))

    def to_dict(self) -> dict:
        return {"name": self.name, "norm": self.norm, "steps": self.steps,
                "config": json.loads(canonical_json(self.config)),
                "config_hash": self.config_hash, "label": self.label}
