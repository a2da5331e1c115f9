"""The preprocessing stage: the one path from a decoded photograph to a model input.

::

    decoded photo -> working_crop(photo, S)      geometry of the photo, square crop around the
                                                 disc (side 2*margin*R), resize to S x S
                  -> [corruption at severity s]   (raw working crop, with the clean geometry)
                  -> model_input(x_work, geom)    Graham enhancement (or none) with the CLEAN
                                                 crop's geometry, fundus mask, resize to the
                                                 model's input size

:class:`Preprocessing` holds the few facts that change the numbers (enhancement, input size,
crop margin) and says where they came from (``source``). :func:`resolve_preprocessing` is the
one resolver every caller (benchmark, training, saliency, corruption grids) uses to decide a
model's preprocessing, so a bare ``nn.Module`` is fed the same way everywhere.

Masking: outside the fundus mask the model input is grey 0.5 for ``"graham"`` (Graham's
surround, unchanged) and black 0 for ``"none"``. The ``"none"`` mask is a behaviour change of
this stage: before it, the clean image of a ``"none"`` model was fed unmasked while its
corrupted images (masked by the corruption stage) were not, so clean and corrupted inputs
differed outside the disc for reasons that had nothing to do with the corruption.
"""
from __future__ import annotations

import dataclasses
import math
import operator
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import RBFError
from .geometry import Geometry, crop_resize, estimate_geometry
from .graham import graham

# the module (the package attribute ``graham`` is the function); its constants are read at call
# time, so provenance always states what was run
_graham_mod = sys.modules[graham.__module__]

__all__ = ["ENHANCEMENTS", "DEFAULT_ENHANCEMENT", "SOURCES", "RESIZE", "Preprocessing",
           "enhancement_name", "resolve_preprocessing"]

#: Enhancements the stage knows.
ENHANCEMENTS = ("graham", "none")
#: The library-wide default for a model that declares nothing.
DEFAULT_ENHANCEMENT = "graham"
#: Where a :class:`Preprocessing` came from: declared by the model, the library default, or
#: given explicitly by the caller.
SOURCES = ("model", "default", "caller")
#: How model inputs are resized to the model's input size when it differs from the working size.
RESIZE = {"mode": "bilinear", "antialias": True, "align_corners": False, "clamp": [0.0, 1.0]}


def enhancement_name(name: Any, argument: str = "enhancement", hint: str = "") -> str:
    """``name`` checked and normalised (case, spaces) to one of :data:`ENHANCEMENTS`; a
    one-line :class:`~robustbench_fundus.errors.RBFError` naming ``argument`` otherwise."""
    known = " or ".join(repr(e) for e in ENHANCEMENTS)
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in ENHANCEMENTS:
        raise RBFError(f"{argument}={name!r}: unknown preprocessing; use {known}{hint}")
    return key


def _size_pair(size: Any, what: str) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, bool):
        raise RBFError(f"{what} {size!r}: give an int or (H, W) of positive ints")
    if isinstance(size, int):
        size = (size, size)
    try:
        pair = tuple(int(v) for v in size)
        ok = len(pair) == 2 and all(int(v) == v for v in size)
    except (TypeError, ValueError):
        ok = False
    if not ok or min(pair) < 1:
        raise RBFError(f"{what} {size!r}: give an int or (H, W) of positive ints")
    return pair


def _batch(x: Any, what: str) -> torch.Tensor:
    """(3,H,W) or (B,3,H,W), uint8 or float -> float32 (B,3,H,W) in [0,1] units."""
    if not isinstance(x, torch.Tensor):
        raise RBFError(f"{what}: expected an image tensor (3,H,W) or (B,3,H,W), got "
                       f"{type(x).__name__}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != 3:
        raise RBFError(f"{what}: expected RGB images (3,H,W) or (B,3,H,W), got shape "
                       f"{tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if not x.is_floating_point():
        raise RBFError(f"{what}: expected uint8 or float images, got dtype {x.dtype}")
    return x.float()


def _check_geometry(geom: Any, x: torch.Tensor, what: str) -> Geometry:
    if not isinstance(geom, Geometry):
        raise RBFError(f"{what}: expected a Geometry (from Preprocessing.geometry of the clean "
                       f"working crop), got {type(geom).__name__}")
    if len(geom) != x.shape[0] or tuple(geom.mask.shape[-2:]) != tuple(x.shape[-2:]):
        raise RBFError(f"{what}: geometry of {len(geom)} images of "
                       f"{tuple(geom.mask.shape[-2:])} px for {x.shape[0]} images of "
                       f"{tuple(x.shape[-2:])} px; estimate it on the same clean working crops")
    return geom


@dataclass(frozen=True)
class Preprocessing:
    """How a model's input is made from a photograph (see the module docstring).

    ``enhancement``: ``"graham"`` or ``"none"``. ``input_size``: the model's input size (H, W)
    (an int means square); ``None``: no resize, the working crop's size is the input size.
    ``margin``: the crop is the square of side ``2*margin*R`` around the disc. ``source``:
    ``"model"``, ``"default"`` or ``"caller"``; provenance only, not part of :meth:`identity`
    nor of equality.
    """

    enhancement: str = DEFAULT_ENHANCEMENT
    input_size: tuple[int, int] | None = None
    margin: float = 1.0
    source: str = field(default="default", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "enhancement", enhancement_name(self.enhancement))
        object.__setattr__(self, "input_size", _size_pair(self.input_size, "input_size"))
        try:
            margin = float(self.margin)
        except (TypeError, ValueError):
            margin = float("nan")
        if not (math.isfinite(margin) and margin > 0):
            raise RBFError(f"margin {self.margin!r}: give a positive number (1.0: the square "
                           "of side 2R around the disc)")
        object.__setattr__(self, "margin", margin)
        if self.source not in SOURCES:
            raise RBFError(f"source {self.source!r}: use one of {', '.join(SOURCES)}")

    # -- the three steps -------------------------------------------------------------------------
    def working_crop(self, photo: torch.Tensor, size: int, *,
                     geom: Geometry | None = None) -> torch.Tensor:
        """Decoded photograph(s), uint8 or float, (3,H,W) or (B,3,H,W) -> float [0,1]
        (B,3,S,S): the photo's geometry, the square crop around the disc (black outside the
        photo), resized to ``size x size`` with averaging (anti-aliased), so R becomes
        ``size/2/margin``.

        ``geom``: the photo's geometry when already known (estimated when omitted); pass it to
        crop other planes of the same photograph (e.g. lesion masks) exactly like the photo.
        """
        x = _batch(photo, "photo")
        try:
            n = operator.index(size) if not isinstance(size, bool) else 0
        except TypeError:
            n = 0
        if n < 1:
            raise RBFError(f"size {size!r}: give the working size in pixels, a positive int")
        size = n
        geom = estimate_geometry(x) if geom is None else _check_geometry(geom, x, "geom")
        return crop_resize(x, geom, size, margin=self.margin)

    def photo_geometry(self, photo: torch.Tensor) -> Geometry:
        """Geometry of decoded photograph(s), uint8 or float, (3,H,W) or (B,3,H,W): what
        :meth:`working_crop` crops around (pass it back as ``geom=``)."""
        return estimate_geometry(_batch(photo, "photo"))

    def geometry(self, x_work: torch.Tensor) -> Geometry:
        """Geometry (mask, centre, radius) of the CLEAN working crop(s), batched."""
        return estimate_geometry(_batch(x_work, "x_work"))

    def model_input(self, x_work: torch.Tensor, geom: Geometry) -> torch.Tensor:
        """(Clean or corrupted) working crop(s) + the clean crop's geometry -> model input,
        float (B,3,H,W) in [0,1].

        ``"graham"``: Graham enhancement with that geometry, grey 0.5 outside 0.9 R and the
        (2 px eroded) fundus mask. ``"none"``: the crop, black 0 outside the fundus mask (a
        behaviour change: the clean image used to be fed unmasked). Then, when ``input_size``
        differs from the crop's size, a bilinear, anti-aliased resize clamped to [0,1].
        Batched on the input's device; each sample depends only on itself.
        """
        x = _batch(x_work, "x_work")
        geom = _check_geometry(geom, x, "geom")
        if self.enhancement == "graham":
            out = graham(x, geom)
        else:
            inside = geom.mask.to(x.device) > 0.5
            out = torch.where(inside, x, torch.zeros((), dtype=x.dtype, device=x.device))
        if self.input_size is not None and tuple(out.shape[-2:]) != self.input_size:
            out = F.interpolate(out, size=self.input_size, mode=RESIZE["mode"],
                                align_corners=RESIZE["align_corners"],
                                antialias=RESIZE["antialias"]).clamp_(*RESIZE["clamp"])
        return out

    # -- provenance ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able description for a report's provenance (includes ``source``)."""
        g = self.enhancement == "graham"
        if g:
            mask = (f"grey 0.5 outside {_graham_mod.RIM_FRACTION} R and outside the fundus mask "
                    f"eroded by {_graham_mod.EDGE_ERODE} px")
        else:
            mask = "black 0 outside the fundus mask"
        return {
            "enhancement": self.enhancement,
            "input_size": list(self.input_size) if self.input_size is not None else None,
            "margin": self.margin,
            "rim_fraction": _graham_mod.RIM_FRACTION if g else None,
            "sigma_divisor": _graham_mod.SIGMA_DIVISOR if g else None,
            "edge_erode": _graham_mod.EDGE_ERODE if g else None,
            "mask": mask,
            "resize": dict(RESIZE),
            "source": self.source,
        }

    def identity(self) -> dict[str, Any]:
        """:meth:`to_dict` without ``source``: exactly what changes the numbers."""
        d = self.to_dict()
        d.pop("source")
        return d


def _unwrap(model: Any) -> Any:
    from torch import nn
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def resolve_preprocessing(model: Any,
                          override: str | Preprocessing | None = None) -> Preprocessing:
    """The preprocessing ``model`` is fed with; the one resolver every caller uses.

    ``override`` (an enhancement name or a :class:`Preprocessing`) wins, with source
    ``"caller"``; else a model declaring ``preprocessing`` (a
    :class:`~robustbench_fundus.models.FundusClassifier` does) gets that, source ``"model"``;
    else :data:`DEFAULT_ENHANCEMENT`, source ``"default"``. ``input_size`` comes from
    ``model.input_size`` (an int or (H, W)) when the model has it, unless a given
    :class:`Preprocessing` sets its own. ``DataParallel``/``DistributedDataParallel`` wrappers
    are looked through. Unknown names raise a one-line :class:`~robustbench_fundus.errors.RBFError`.
    """
    m = _unwrap(model)
    size = _size_pair(getattr(m, "input_size", None), "model.input_size")
    if override is not None:
        if isinstance(override, Preprocessing):
            return dataclasses.replace(override, input_size=override.input_size or size,
                                       source="caller")
        if isinstance(override, str):
            return Preprocessing(enhancement_name(override, "preprocessing"), size,
                                 source="caller")
        raise RBFError(f"preprocessing={override!r}: give "
                       f"{' or '.join(repr(e) for e in ENHANCEMENTS)} or a Preprocessing")
    declared = getattr(m, "preprocessing", None)
    if declared is None:
        return Preprocessing(DEFAULT_ENHANCEMENT, size, source="default")
    if isinstance(declared, Preprocessing):
        return dataclasses.replace(declared, input_size=declared.input_size or size,
                                   source="model")
    name = enhancement_name(declared, "model.preprocessing",
                            " (fix the model's attribute or pass preprocessing= explicitly)")
    return Preprocessing(name, size, source="model")
