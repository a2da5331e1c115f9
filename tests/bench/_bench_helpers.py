"""Shared helpers for the bench tests: tiny deterministic models, checkpoints and images."""
from __future__ import annotations

import torch

from robustbench_fundus.models import create_model, save_checkpoint


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


class StubAttack:
    """A deterministic stand-in attack: sample i is broken at eps when a hash of its id is below
    eps*40 (monotone in eps), and only if it was right on clean input."""

    name = "stub"

    def __call__(self, model, x, y, eps, seed=0, sample_ids=None):
        with torch.no_grad():
            right = model(x).argmax(1) == y
        ids = torch.as_tensor(sample_ids).reshape(-1)
        u = ((ids * 2654435761 + seed) % 1000).float() / 1000
        succ = torch.stack([(u < e * 40) & right.cpu() for e in eps])
        return {"success": succ, "clean_correct": right.cpu()}
