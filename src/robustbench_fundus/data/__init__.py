"""Data stage: readers for common fundus data-set layouts, subject-grouped stratified splits,
fundus geometry, working-size crops (cached), Graham preprocessing and the synthetic generator."""
from .geometry import Geometry, crop_resize, estimate_geometry
from .graham import graham

__all__ = ["Geometry", "crop_resize", "estimate_geometry", "graham"]
