"""The clean crops' geometry comes with the cached crops (stored once in each cache entry) and is
rebuilt, not estimated again: the benchmark feeds the model exactly the same inputs either way."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import robustbench_fundus.data.dataset as dataset_mod
from robustbench_fundus import evaluate
from robustbench_fundus.bench import DataOptions, RunOptions
from robustbench_fundus.data import read_records
from robustbench_fundus.data.cache import load_entry
from robustbench_fundus.data.synth import write_synthetic
from robustbench_fundus.preprocessing import Geometry, Preprocessing


class Recorder(nn.Module):
    """A tiny classifier that keeps every batch it is fed."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.fc(self.conv(x).mean((2, 3)))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("geom") / "s", n=10, size=64, seed=3)


def _inputs(folder, cache_dir, monkeypatch, drop_geometry: bool) -> list[torch.Tensor]:
    calls = []
    real = Geometry.from_params

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(Geometry, "from_params", staticmethod(spy))
    if drop_geometry:   # the loader without the stored geometry: the pipeline estimates it
        real_collate = dataset_mod.collate

        def collate(items):
            out = real_collate(items)
            out.pop("geometry", None)
            return out
        monkeypatch.setattr(dataset_mod, "collate", collate)
    m = Recorder()
    evaluate(m, str(folder), corruptions="light_leakage,motion_blur", attack="none",
             data_options=DataOptions(size=64, cache_dir=cache_dir),
             run=RunOptions(batch_size=4))
    monkeypatch.undo()
    assert bool(calls) != drop_geometry     # the stored geometry was used (or not)
    return m.seen


@pytest.mark.parametrize("cold", [True, False])
def test_model_inputs_equal_with_the_stored_or_the_estimated_geometry(folder, tmp_path,
                                                                      monkeypatch, cold):
    cache = tmp_path / "cache"
    if not cold:
        for r in read_records(folder).records:
            load_entry(r.path, 64, cache_dir=cache)
    a = _inputs(folder, cache, monkeypatch, drop_geometry=False)
    b = _inputs(folder, tmp_path / "other" if cold else cache, monkeypatch, drop_geometry=True)
    assert len(a) == len(b) > 0
    for u, v in zip(a, b):
        assert torch.equal(u, v)


def test_stored_geometry_of_real_photographs_is_the_estimated_one(real_data_dir, tmp_path):
    recs = read_records(real_data_dir).records[::40]
    for size in (224, 512):
        crops, params = [], []
        for r in recs:
            c, p, _ = load_entry(r.path, size, cache_dir=tmp_path)
            crops.append(c)
            params.append(p)
        want = Preprocessing().geometry(torch.stack(crops))
        got = Geometry.from_params(torch.stack(params), size, size)
        assert torch.equal(got.mask, want.mask) and torch.equal(got.center, want.center)
        assert torch.equal(got.radius, want.radius) and torch.equal(got.extent, want.extent)
