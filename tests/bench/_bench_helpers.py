"""Shared helpers for the bench tests: tiny deterministic models, checkpoints and images."""
from __future__ import annotations

import torch

from robustbench_fundus.attacks import Attack
from robustbench_fundus.models import create_model, save_checkpoint
from robustbench_fundus.seeding import torch_generator


def tiny_model(size: int = 32, seed: int = 0, preprocessing: str = "graham", calib=None):
    """A tiny_cnn whose predictions vary between images: the head is a random projection of the
    pooled features standardised on a calibration batch (``calib``, default smooth noise)."""
    if calib is None:
        calib = tensor_data(32, size, seed=99)[0]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        m = create_model("tiny_cnn", input_size=size, preprocessing=preprocessing).eval()
        with torch.no_grad():
            f = m.backbone.forward_features(m.normalize(calib))
            pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
            mu, sd = pooled.mean(0), pooled.std(0).clamp_min(1e-4)
            w = torch.randn(5, pooled.shape[1]) / sd / pooled.shape[1] ** 0.5 * 3
            m.backbone.head.weight.copy_(w)
            m.backbone.head.bias.copy_(-(w @ mu))
    return m


def tiny_checkpoint(path, size: int = 32, seed: int = 0):
    return save_checkpoint(tiny_model(size, seed), path)


def tensor_data(n: int = 10, size: int = 32, seed: int = 0):
    """(x in [0,1], y) tensors: smooth random images, labels 0..4 cycling."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size // 4, size // 4, generator=g)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                        align_corners=False)
    x = (torch.round(x * 255) / 255).clamp(0, 1)
    y = torch.arange(n) % 5
    return x, y


class StubAttack(Attack):
    """A cheap, deterministic test attack through the real contract: at each eps it moves every
    pixel by +-eps along a fixed random sign pattern per sample (seeded by (seed, sample id)),
    and breaks whatever that perturbation happens to break. The base class verifies, projects
    and makes success monotone in eps, as for any attack. Sanity checks off (test speed)."""

    name = "stub"
    norm = "Linf"
    description = "test double: a fixed random-sign perturbation per sample"

    def __init__(self, config=None, **kw):
        kw.setdefault("sanity_samples", 0)
        super().__init__(config, **kw)

    def _attack_eps(self, ctx, x, y, eps, *, seed, sample_ids):
        signs = torch.stack([
            torch.rand(x.shape[1:], generator=torch_generator(seed, "stub-sign", int(i))) > 0.5
            for i in sample_ids.tolist()]).to(x.device)
        return (x + eps * (signs.to(x.dtype) * 2 - 1)).clamp(0, 1)


def assert_same(a, b, rel: float = 1e-5, path: str = ""):
    """Two reports (dicts) are the same: integers, strings and structure exactly, floats to
    ``rel``. Model outputs are not bitwise independent of batch composition (the convolution
    algorithm depends on the batch size), so summed confidences (ECE, Brier) can differ in the
    7th digit between batchings while every count is identical."""
    import math
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (path, set(a) ^ set(b or {}))
        for k in a:
            assert_same(a[k], b[k], rel, f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same(u, v, rel, f"{path}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool) and isinstance(b, (int, float)):
        assert math.isclose(a, b, rel_tol=rel, abs_tol=rel * 1e-3), (path, a, b)
    else:
        assert a == b, (path, a, b)
