"""Geometry, crop and Graham moved to the preprocessing stage (their tests are in
tests/preprocessing); the data package and its old modules still export the same objects."""
from __future__ import annotations

import importlib

import torch

from _datastage_helpers import disc_image


def test_data_names_are_the_preprocessing_stage():
    import robustbench_fundus.data as data
    import robustbench_fundus.preprocessing as pre

    for name in ("Geometry", "crop_resize", "estimate_geometry", "graham"):
        assert getattr(data, name) is getattr(pre, name), name
    old_geom = importlib.import_module("robustbench_fundus.data.geometry")
    old_graham = importlib.import_module("robustbench_fundus.data.graham")
    for name in ("Geometry", "estimate_geometry", "crop_resize", "crop_boxes", "foreground"):
        assert getattr(old_geom, name) is getattr(pre, name), name
    for name in ("graham", "gaussian_blur", "gaussian_kernels", "RIM_FRACTION", "SIGMA_DIVISOR",
                 "EDGE_ERODE", "Geometry", "estimate_geometry"):
        assert getattr(old_graham, name) is getattr(pre, name), name
    # importing the old modules never replaces the package's function by a module
    from robustbench_fundus.data import graham
    assert graham is pre.graham and callable(graham)


def test_preprocessing_does_not_import_data():
    """preprocessing is below data: importing it alone loads no data module."""
    import subprocess
    import sys

    code = ("import sys, robustbench_fundus.preprocessing; "
            "print(sorted(m for m in sys.modules if m.startswith('robustbench_fundus.data')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_data_working_crop_is_the_stage_at_8_bits():
    from robustbench_fundus.data import working_crop
    from robustbench_fundus.preprocessing import Preprocessing

    u = disc_image(72, 120, 52.0, 36.0, 50.0, seed=2)
    for margin in (1.0, 1.15):
        ref = Preprocessing(margin=margin).working_crop(u, 40)[0]
        got = working_crop(u, 40, margin=margin)
        assert got.dtype == torch.uint8 and got.shape == (3, 40, 40)
        assert torch.equal(got, ref.mul(255).round().clamp(0, 255).to(torch.uint8))
