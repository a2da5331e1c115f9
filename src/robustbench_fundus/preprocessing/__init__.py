"""Preprocessing stage: fundus geometry, the working-size crop, Graham enhancement (or none),
the fundus mask and the resize to the model's input size, in one module.

Flow: ``pre = resolve_preprocessing(model)`` -> ``x_work = pre.working_crop(photo, S)`` ->
``geom = pre.geometry(x_work)`` -> (corruptions on ``x_work`` with ``geom``) ->
``x = pre.model_input(x_work, geom)`` -> (attacks on ``x``) -> ``model(x)``.

This package depends on torch only (never on :mod:`robustbench_fundus.data`, which uses it).
"""
from .geometry import Geometry, crop_boxes, crop_resize, estimate_geometry, foreground
from .graham import (EDGE_ERODE, RIM_FRACTION, SIGMA_DIVISOR, gaussian_blur, gaussian_kernels,
                     graham, graham_direct)
from .stage import (DEFAULT_ENHANCEMENT, ENHANCEMENTS, RESIZE, SOURCES, Preprocessing,
                    enhancement_name, resolve_preprocessing)

__all__ = [
    "Geometry", "crop_boxes", "crop_resize", "estimate_geometry", "foreground",
    "EDGE_ERODE", "RIM_FRACTION", "SIGMA_DIVISOR", "gaussian_blur", "gaussian_kernels", "graham",
    "graham_direct",
    "DEFAULT_ENHANCEMENT", "ENHANCEMENTS", "RESIZE", "SOURCES", "Preprocessing",
    "enhancement_name", "resolve_preprocessing",
]
