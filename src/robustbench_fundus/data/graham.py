"""Backward-compatible alias: Graham enhancement lives in :mod:`robustbench_fundus.preprocessing.graham`
(the whole model-input step, with the mask and the resize, is
:meth:`robustbench_fundus.preprocessing.Preprocessing.model_input`)."""
from ..preprocessing.graham import (EDGE_ERODE, RIM_FRACTION, SIGMA_DIVISOR, gaussian_blur,
                                    gaussian_kernels, graham)
from ..preprocessing.geometry import Geometry, estimate_geometry  # noqa: F401 - importable here before

__all__ = ["EDGE_ERODE", "RIM_FRACTION", "SIGMA_DIVISOR", "gaussian_blur", "gaussian_kernels",
           "graham"]
