"""The corruption_helps flag fires only beyond sampling noise."""
from types import SimpleNamespace

import numpy as np

from robustbench_fundus.bench.flags import make_flags
from robustbench_fundus.bench.report import CleanResult, CorruptionResult
from robustbench_fundus.preprocessing import Preprocessing


def _flags(n, clean_acc, corrupted_acc):
    cm = np.zeros((5, 5), dtype=int)
    right = round(clean_acc * n)
    cm[0, 0], cm[1, 0] = right, n - right
    clean = CleanResult.from_confusion(cm)
    cor = CorruptionResult("motion_blur", 1, corrupted_acc, 0.5, 0.5, clean.accuracy - corrupted_acc,
                           n, cm.tolist())
    di = SimpleNamespace(meta={"kind": "folder"}, tensor_input=False)
    mi = SimpleNamespace(preprocessing=Preprocessing("graham", source="model"))
    return {f.code for f in make_flags(clean, [cor], [], di, mi)}


def test_two_images_on_64_is_noise():
    assert "corruption_helps" not in _flags(64, 59 / 64, 61 / 64)


def test_a_clear_gain_on_a_large_set_is_flagged():
    assert "corruption_helps" in _flags(2000, 0.80, 0.86)
