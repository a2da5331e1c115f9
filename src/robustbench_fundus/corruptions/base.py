"""The corruption base class: one ``__call__`` every corruption goes through.

A corruption is a configured object (its per-severity parameters live in a typed, frozen
dataclass ``config``), callable on a batch of raw (pre-Graham) working-size images::

    y = corruption(x, severity, seed=0, sample_ids=None, geom=None)

``x``: (B,3,H,W) float in [0,1]. ``severity``: an int or a (B,) integer tensor, 0..max_severity,
0 being the identity (the input is returned unchanged, exactly). ``sample_ids``: (B,) dataset
indices (default ``arange(B)``); with ``seed`` and the corruption's name they seed the per-sample
nuisance draws (angles, offsets, colours), never the severity, so an image gets the same draws at
every severity and its deviation from the clean image grows with severity. ``geom``: the
:class:`~robustbench_fundus.preprocessing.Geometry` of the clean images (estimated when omitted).

The base class enforces the output convention of the corruption stage in one place: every
corrupted sample is ``M * clip(y, 0, 1)`` rounded to 8-bit levels (M the fundus mask of the clean
image); shape, dtype and device are those of the input; each sample depends only on
(its pixels, its severity, seed, its sample id), never on the rest of the batch.
"""
from __future__ import annotations

import re

import dataclasses
from typing import Any, ClassVar, Sequence

import torch

from ..preprocessing.geometry import Geometry, estimate_geometry
from ..errors import RBFError
from ..seeding import per_sample_uniform

__all__ = ["Corruption", "masked_rmse", "quantise"]


def quantise(y: torch.Tensor) -> torch.Tensor:
    """Round [0,1] values to the nearest of the 256 8-bit levels (keeps dtype)."""
    return torch.round(y * 255.0) / 255.0


def masked_rmse(y: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) root-mean-square difference of ``y`` and ``x`` over the fundus mask (all channels)."""
    m = mask.to(y.dtype)
    se = ((y - x) ** 2 * m).sum(dim=(1, 2, 3))
    n = (m.sum(dim=(1, 2, 3)) * y.shape[1]).clamp_min(1)
    return (se / n).sqrt()


class Corruption:
    """Base class of all corruptions. Subclasses set the class attributes, a ``Config``
    dataclass whose per-severity parameters are tuples of length ``max_severity``, and implement
    :meth:`_apply` (batched, unclipped output; masking/clipping/quantising is done here)."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = "custom"      # "fundus", "imagenet-c" or a plugin's own
    reference: ClassVar[str] = ""          # where the formula and parameters come from
    n_draws: ClassVar[int] = 0             # uniform draws per sample for the nuisance values
    Config: ClassVar[type] = type(None)
    chunk_pixels: ClassVar[int] = 1 << 25  # CPU: at most this many pixels (x3 channels) at once

    def __init__(self, config: Any = None, **overrides: Any):
        if config is None:
            config = self.Config(**overrides) if dataclasses.is_dataclass(self.Config) else None
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config

    # -- description ---------------------------------------------------------------------------
    @property
    def max_severity(self) -> int:
        """Highest severity level (levels are 1..max_severity; 0 is the identity)."""
        cfg = self.config
        for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(cfg) else ():
            v = getattr(cfg, f.name)
            if f.metadata.get("per_severity"):
                return len(v)
        raise NotImplementedError(f"{type(self).__name__} must define max_severity")

    @property
    def severities(self) -> tuple[int, ...]:
        return tuple(range(1, self.max_severity + 1))

    def params(self, severity: int) -> dict[str, Any]:
        """The configured parameter values at one severity (for docs and `rbf list`)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self.config):
            v = getattr(self.config, f.name)
            out[f.name] = v[severity - 1] if f.metadata.get("per_severity") else v
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family,
                "severities": f"1-{self.max_severity}", "reference": self.reference}

    #: Third-party package whose code computes the corruption (``"name==version"`` is added to
    #: the identity), or None for the library's own.
    package: ClassVar[str | None] = None

    def identity(self) -> dict[str, Any]:
        """What produced a corrupted image, for results to carry: ``name``, ``config`` (the
        class and every config field, per-severity tuples as lists, plus the third-party
        package and its version when there is one) and ``config_hash`` (the first 12 hex
        digits of the sha256 of the canonical JSON of name and config)."""
        import hashlib
        import json
        cfg: dict[str, Any] = {"class": type(self).__qualname__}
        if dataclasses.is_dataclass(self.config):
            cfg.update(_jsonable(dataclasses.asdict(self.config)))
        if self.package:
            from importlib import metadata
            try:
                cfg["package"] = f"{self.package}=={metadata.version(self.package)}"
            except metadata.PackageNotFoundError:
                cfg["package"] = f"{self.package} (not installed)"
        text = json.dumps({"name": self.name, "config": cfg}, sort_keys=True,
                          separators=(",", ":"), default=str)
        return {"name": self.name, "config": cfg,
                "config_hash": hashlib.sha256(text.encode()).hexdigest()[:12]}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, config={self.config!r})"

    # -- the one entry point ------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, severity: int | torch.Tensor, *, seed: int = 0,
                 sample_ids: torch.Tensor | None = None,
                 geom: Geometry | None = None) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise RBFError(f"{self.name}: expected images of shape (B,3,H,W), got {shape}")
        if not x.is_floating_point():
            raise RBFError(f"{self.name}: expected float images in [0,1], got dtype {x.dtype}; "
                           f"divide uint8 images by 255 first")
        B = x.shape[0]
        sev = self._severity_tensor(severity, B)
        if sample_ids is None:
            ids = torch.arange(B)
        else:
            ids = torch.as_tensor(sample_ids).reshape(-1).long().cpu()
            if ids.numel() != B:
                raise RBFError(f"{self.name}: sample_ids has {ids.numel()} entries for a batch "
                               f"of {B}")
        active = (sev > 0).nonzero().flatten()
        if active.numel() == 0:
            return x.clone()
        everyone = active.numel() == B
        dact = active.to(x.device)
        xa = x if everyone else x[dact]
        if geom is None:
            ga = estimate_geometry(xa)
        else:
            if len(geom) != B:
                raise RBFError(f"{self.name}: geometry for {len(geom)} images, batch of {B}")
            ga = (geom if everyone else geom[active.to(geom.mask.device)]).to(x.device)
        draws = per_sample_uniform(seed, self.name, ids[active], max(self.n_draws, 1),
                                   device=x.device).to(x.dtype)
        sa = sev[active].to(x.device)
        # Very large CPU batches run in chunks (bounded temporaries); every step is per sample,
        # so chunking never changes a result.
        n = xa.shape[0]
        step = n if x.device.type != "cpu" else max(1, self.chunk_pixels // max(1, xa[0, 0].numel()))
        out = x.clone() if not everyone else (torch.empty_like(x) if step < n else None)
        for i in range(0, n, step):
            j = min(n, i + step)
            y = self._apply(xa[i:j], sa[i:j], ga[i:j], draws[i:j])
            if y.data_ptr() == x.data_ptr():
                y = y.clone()
            # M * clip(y, 0, 1) at 8-bit levels, in place (y is a fresh tensor)
            y = y.to(x.dtype).clamp_(0.0, 1.0).mul_(255.0).round_().div_(255.0)
            y.mul_(ga.mask[i:j].to(device=x.device, dtype=x.dtype))
            if everyone and step >= n:
                return y
            if everyone:
                out[i:j] = y
            else:
                out[dact[i:j]] = y
        return out

    def _severity_tensor(self, severity: int | torch.Tensor, B: int) -> torch.Tensor:
        if isinstance(severity, torch.Tensor):
            if severity.is_floating_point() and not torch.equal(severity, severity.round()):
                raise RBFError(f"{self.name}: severities must be integers, got {severity}")
            sev = severity.detach().reshape(-1).long().cpu()
            if sev.numel() == 1 and B != 1:
                sev = sev.expand(B)
            if sev.numel() != B:
                raise RBFError(f"{self.name}: {sev.numel()} severities for a batch of {B}")
        else:
            if isinstance(severity, bool) or int(severity) != severity:
                raise RBFError(f"{self.name}: severity must be an integer, got {severity!r}")
            sev = torch.full((B,), int(severity), dtype=torch.long)
        if B and (int(sev.min()) < 0 or int(sev.max()) > self.max_severity):
            raise RBFError(f"{self.name}: severity must be in 0..{self.max_severity}, got "
                           f"{sorted(set(sev.tolist()))}")
        return sev

    def _apply(self, x: torch.Tensor, severity: torch.Tensor, geom: Geometry,
               draws: torch.Tensor) -> torch.Tensor:
        """Corrupt ``x`` (b,3,H,W) at per-sample ``severity`` (b,) in 1..max (long, x's device).

        ``draws``: (b, n_draws) uniforms in [0,1) for the nuisance values. Return the
        unclipped result; the caller masks, clips and quantises."""
        raise NotImplementedError

    # helpers for subclasses
    def _per_severity(self, values, severity: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """Look up a per-severity tuple at each sample's severity: (b,) tensor."""
        table = torch.as_tensor(values, dtype=dtype, device=severity.device)
        return table[severity - 1]


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    return repr(v)


def per_severity(default: tuple, help: str = "") -> Any:
    """A dataclass field holding one value per severity level 1..max."""
    return dataclasses.field(default=default, metadata={"per_severity": True, "help": help})


def fixed(default: Any, help: str = "") -> Any:
    """A dataclass field holding one value for all severities."""
    return dataclasses.field(default=default, metadata={"per_severity": False, "help": help})


def parse_severities(value: str | int | Sequence[int], max_severity: int = 5) -> list[int]:
    """'1-4' | '2,4' | 3 | [1,2] -> sorted unique severities in 1..max_severity (the one
    severity parser of the library: bench and train CLIs use it)."""
    if isinstance(value, int):
        vals = [value]
    elif isinstance(value, str):
        vals = []
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
            try:
                if m:
                    a, b = int(m.group(1)), int(m.group(2))
                    if a > b:
                        raise ValueError
                    vals.extend(range(a, b + 1))
                else:
                    vals.append(int(part))
            except ValueError:
                raise RBFError(f"--severities: cannot read {part!r}; use e.g. 1-4 or 2,4") from None
    else:
        vals = [int(v) for v in value]
    if not vals:
        raise RBFError("--severities: no severities given")
    bad = [v for v in vals if not 1 <= v <= max_severity]
    if bad:
        raise RBFError(f"--severities: {bad} out of range 1-{max_severity}")
    return sorted(set(vals))
