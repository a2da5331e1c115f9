"""Corruptions of fundus photographs: four acquisition artefacts at severities 1-4, the 19
ImageNet-C corruptions for comparison, a plugin registry and a training augmentation.

::

    from robustbench_fundus.corruptions import get_corruption, RandomCorruption
    blur = get_corruption("motion_blur")
    y = blur(x, severity=3, seed=0, sample_ids=ids)        # x: (B,3,H,W) float [0,1], raw photo
    aug = RandomCorruption(["light_leakage", "motion_blur"], severities=(1, 4))
    x_aug = aug(x, seed=0, step=epoch, sample_ids=ids)

Names: ``light_leakage``, ``motion_blur``, ``under_exposure``, ``over_exposure`` (family
"fundus") and ``imagenet_c/<name>`` for the 19 ImageNet-C ones (family "imagenet-c", severities
1-5). Third-party corruptions plug in through the entry-point group
``robustbench_fundus.corruptions`` (a module that calls ``REGISTRY.register(obj)``, or a
:class:`Corruption` subclass/instance registered under the entry point's name).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from ..registry import Registry
from .augment import RandomCorruption
from .base import Corruption, masked_rmse, parse_severities, quantise
from .fundus import (ExposureConfig, LightLeakage, LightLeakageConfig, MotionBlur,
                     MotionBlurConfig, OverExposure, UnderExposure)
from .imagenet_c import IMAGENET_C_CORRUPTIONS as _IC_BASE
from .imagenet_c import PREFIX as IMAGENET_C_PREFIX
from .imagenet_c import ImageNetCConfig, ImageNetCCorruption, make_all

__all__ = [
    "REGISTRY", "get_corruption", "describe", "FUNDUS_CORRUPTIONS", "IMAGENET_C_CORRUPTIONS",
    "IMAGENET_C_PREFIX", "Corruption", "RandomCorruption", "LightLeakage", "MotionBlur",
    "UnderExposure", "OverExposure", "LightLeakageConfig", "MotionBlurConfig", "ExposureConfig",
    "ImageNetCCorruption", "ImageNetCConfig", "masked_rmse", "quantise", "parse_severities",
]

REGISTRY: Registry = Registry("corruption", "robustbench_fundus.corruptions")

FUNDUS_CORRUPTIONS = ("light_leakage", "motion_blur", "under_exposure", "over_exposure")
IMAGENET_C_CORRUPTIONS = tuple(IMAGENET_C_PREFIX + n for n in _IC_BASE)

for _c in (LightLeakage(), MotionBlur(), UnderExposure(), OverExposure(), *make_all()):
    REGISTRY.register(_c)
del _c


def get_corruption(name: str, **config: Any) -> Corruption:
    """The registered corruption ``name`` (a configured object); keyword arguments replace
    fields of its config, e.g. ``get_corruption("motion_blur", angle_range=(0, 0))``."""
    obj = REGISTRY.get(name)
    if isinstance(obj, type):
        obj = obj()
    if config:
        obj = type(obj)(dataclasses.replace(obj.config, **config))
    return obj


def describe(pattern: str = "*", full: bool = False) -> list[dict]:
    """One JSON-able row per registered corruption matching ``pattern`` (for `rbf list`; the
    rows are the same for the table and ``--json``, ``full`` is accepted for a uniform
    interface)."""
    rows = []
    for name in REGISTRY.names(pattern):
        entry = REGISTRY.entry(name)
        obj = entry.obj() if isinstance(entry.obj, type) else entry.obj
        rows.append({
            "name": name,
            "family": getattr(obj, "family", "custom"),
            "severities": f"1-{obj.max_severity}",
            "source": entry.source,
        })
    return rows
