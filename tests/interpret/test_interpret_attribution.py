"""Attributions: completeness, agreement with captum called directly, chunking, determinism."""
from __future__ import annotations

import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from robustbench_fundus.errors import RBFError
from robustbench_fundus.interpret import (BASELINES, attribute, heatmap, make_baseline,
                                          resolve_target)
from robustbench_fundus.models.wrapper import FundusClassifier

S = 32


class Smooth(nn.Module):
    """A small smooth (softplus) CNN: IG converges fast on it, so completeness is tight."""

    def __init__(self, seed: int = 0, num_classes: int = 5):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8, num_classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        h = nn.functional.softplus(self.conv1(x))
        h = nn.functional.softplus(self.conv2(h))
        return self.fc(h.mean(dim=(2, 3)))


def smooth_model(seed: int = 0) -> FundusClassifier:
    return FundusClassifier(Smooth(seed), arch="smooth_test", input_size=S).eval()


def images(n: int = 3, seed: int = 0, size: int = S) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


@pytest.fixture(scope="module")
def model():
    return smooth_model()


def _target_gap(model, x, b, t):
    with torch.no_grad():
        return (model(x) - model(b)).gather(1, t.view(-1, 1))[:, 0]


@settings(max_examples=8, deadline=None)
@given(baseline=st.sampled_from(BASELINES), steps=st.sampled_from([8, 24, 64]),
       seed=st.integers(0, 3))
def test_completeness_within_captum_delta(baseline, steps, seed):
    model = smooth_model(seed)
    x = images(2, seed)
    attr, delta = attribute(model, x, baseline=baseline, steps=steps, return_delta=True)
    t = resolve_target(model, x)
    b = make_baseline(x, baseline)
    gap = _target_gap(model, x, b, t)
    total = attr.sum(dim=(1, 2, 3))
    # captum's delta is exactly sum(attr) - (F(x) - F(b)) ...
    assert torch.allclose(total - gap, delta, atol=1e-4)
    # ... and on a smooth model it is small: the integral converged.
    assert (delta.abs() <= 0.05 * gap.abs() + 2e-3).all(), (delta, gap)


def test_completeness_on_tiny_cnn():
    from robustbench_fundus.models.archs import create_model
    model = create_model("tiny_cnn", input_size=S).eval()
    x = images(2, 1)
    attr, delta = attribute(model, x, target=[0, 3], steps=64, return_delta=True)
    gap = _target_gap(model, x, torch.zeros_like(x), torch.tensor([0, 3]))
    assert torch.allclose(attr.sum(dim=(1, 2, 3)) - gap, delta, atol=1e-4)


@pytest.mark.parametrize("integration", ["gausslegendre", "riemann_trapezoid"])
@pytest.mark.parametrize("baseline", ["black", "blur", "noise"])
def test_matches_captum_directly(model, baseline, integration):
    x = images(3, 5)
    t = torch.tensor([0, 2, 4])
    ours = attribute(model, x, target=t, baseline=baseline, steps=20, integration=integration)
    b = make_baseline(x, baseline)
    ref = IntegratedGradients(model).attribute(x, baselines=b, target=t, n_steps=20,
                                               method=integration)
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-6)


def test_chunking_does_not_change_result(model):
    x = images(4, 2)
    full = attribute(model, x, target=1, steps=30, internal_batch_size=10_000)
    for ibs in (1, 7, 30):
        part = attribute(model, x, target=1, steps=30, internal_batch_size=ibs)
        assert torch.allclose(full, part, rtol=1e-4, atol=1e-6), ibs


def test_default_chunk_fits_large_images(model, monkeypatch):
    # A tiny pixel budget forces one interpolated image per pass; the result is the same.
    import robustbench_fundus.interpret.attribution as A
    x = images(2, 3, size=40)
    full = attribute(model, x, steps=12, internal_batch_size=1000)
    monkeypatch.setattr(A, "PIXEL_BUDGET", 40 * 40)
    assert A._rows_per_pass(x, None) == 1
    assert torch.allclose(attribute(model, x, steps=12), full, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["ig", "grad", "input_x_grad"])
@pytest.mark.parametrize("baseline", ["black", "noise", "blur"])
def test_deterministic(model, method, baseline):
    x = images(3, 4)
    a1 = attribute(model, x, method=method, baseline=baseline, steps=10, seed=7)
    a2 = attribute(model, x, method=method, baseline=baseline, steps=10, seed=7)
    assert torch.equal(a1, a2)


def test_independent_of_batch_composition(model):
    x = images(4, 6)
    full = attribute(model, x, target=2, baseline="noise", steps=10, seed=3)
    one = attribute(model, x[2:3], target=2, baseline="noise", steps=10, seed=3, sample_ids=[2])
    assert torch.allclose(full[2:3], one, rtol=1e-4, atol=1e-6)


def test_grad_methods_match_captum(model):
    x = images(2, 8)
    t = torch.tensor([1, 3])
    g = attribute(model, x, target=t, method="grad")
    ref = Saliency(model).attribute(x.clone().requires_grad_(), target=t, abs=False)
    assert torch.allclose(g, ref, atol=1e-6)
    gx = attribute(model, x, target=t, method="input_x_grad")
    ref2 = InputXGradient(model).attribute(x.clone().requires_grad_(), target=t)
    assert torch.allclose(gx, ref2, atol=1e-6)


def test_restores_training_mode_and_leaves_no_grads():
    model = smooth_model().train()
    attribute(model, images(1), steps=4)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_baselines():
    x = images(2, 9)
    assert torch.equal(make_baseline(x, "black"), torch.zeros_like(x))
    assert torch.equal(make_baseline(x, "grey"), torch.full_like(x, 0.5))
    assert torch.equal(make_baseline(x, 0.25), torch.full_like(x, 0.25))
    const = torch.full((1, 3, S, S), 0.3)
    assert torch.allclose(make_baseline(const, "blur"), const, atol=1e-5)  # blur keeps flat
    blurred = make_baseline(x, "blur")
    assert blurred.std() < 0.5 * x.std()  # and flattens texture
    custom = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    assert torch.allclose(make_baseline(x, custom)[1, :, 5, 5], custom.flatten())
    n1 = make_baseline(x, "noise", seed=1)
    assert n1.min() >= 0 and n1.max() < 1
    assert not torch.equal(n1, make_baseline(x, "noise", seed=2))
    assert not torch.equal(n1[0], n1[1])
    assert torch.equal(make_baseline(x[1:], "noise", seed=1, sample_ids=[1]), n1[1:])


@pytest.mark.parametrize("bad", ["white", "blur:x", "blur:-1", object()])
def test_bad_baseline(bad):
    with pytest.raises(RBFError):
        make_baseline(images(1), bad)


def test_bad_arguments(model):
    x = images(2)
    with pytest.raises(RBFError, match="method"):
        attribute(model, x, method="lime")
    with pytest.raises(RBFError, match="out of range"):
        attribute(model, x, target=7)
    with pytest.raises(RBFError, match="targets for"):
        attribute(model, x, target=[1, 2, 3])
    with pytest.raises(RBFError, match="shape"):
        attribute(model, torch.rand(2, 1, S, S))
    with pytest.raises(RBFError, match="does not broadcast"):
        make_baseline(x, torch.zeros(3, 5))


def test_targets(model):
    x = images(3)
    pred = resolve_target(model, x, "pred")
    with torch.no_grad():
        assert torch.equal(pred, model(x).argmax(1))
    assert resolve_target(model, x, 2).tolist() == [2, 2, 2]
    assert resolve_target(model, x, "4").tolist() == [4, 4, 4]


def test_heatmap_modes():
    a = torch.zeros(1, 3, 2, 2)
    a[0, :, 0, 0] = torch.tensor([1.0, 1.0, -3.0])  # sum -1
    a[0, :, 1, 1] = 2.0                             # sum 6
    assert heatmap(a, "signed")[0].tolist() == [[-1.0, 0.0], [0.0, 6.0]]
    assert heatmap(a, "positive")[0].tolist() == [[0.0, 0.0], [0.0, 6.0]]
    assert heatmap(a, "abs")[0].tolist() == [[1.0, 0.0], [0.0, 6.0]]
    with pytest.raises(RBFError):
        heatmap(a, "max")
