"""Backward-compatible alias: fundus geometry lives in :mod:`robustbench_fundus.preprocessing.geometry`."""
from ..preprocessing.geometry import (Geometry, crop_boxes, crop_resize, estimate_geometry,
                                      foreground)

__all__ = ["Geometry", "crop_boxes", "crop_resize", "estimate_geometry", "foreground"]
