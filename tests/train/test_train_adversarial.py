"""The adversarial recipe as stated (Madry et al.): PGD on every sample of the batch, for all
its steps; the benchmark engine's early stop only when asked for, and recorded."""
from __future__ import annotations

import torch

from robustbench_fundus.heads import make_head
from robustbench_fundus.models import create_model, load_model
from robustbench_fundus.train import TrainConfig, train
from robustbench_fundus.train.recipes import make_attack


class _Counting(torch.nn.Module):
    """Records the batch size of every forward that builds a graph (an attack step)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.grad_batches = inner, []

    def forward(self, x):
        if torch.is_grad_enabled() and x.requires_grad:
            self.grad_batches.append(int(x.shape[0]))
        return self.inner(x)


def _batch(n=12, size=32):
    torch.manual_seed(0)
    m = create_model("tiny_cnn", input_size=size).eval()
    x = torch.rand(n, 3, size, size)
    with torch.no_grad():
        pred = m(x).argmax(1)
    y = pred.clone()
    y[: n // 2] = (pred[: n // 2] + 1) % 5        # half the batch misclassified already
    return m, x, y


def test_madry_pgd_perturbs_every_sample_for_every_step():
    cfg = TrainConfig(recipe="adversarial", steps=5, eps=2.5 / 255)
    assert cfg.adv_mode == "madry"
    m, x, y = _batch()
    counted = _Counting(m)
    x_adv = make_attack(cfg, make_head("classification"))(counted, x, y, torch.arange(12), 0)
    assert counted.grad_batches == [12] * 5                 # all samples, all five steps
    moved = (x_adv - x).flatten(1).abs().amax(1)
    assert int((moved == 0).sum()) == 0                     # none enters unperturbed
    assert float(moved.max()) <= 2.5 / 255 + 1e-6


def test_early_stop_only_when_asked():
    m, x, y = _batch()
    cfg = TrainConfig(recipe="adversarial", steps=5, eps=2.5 / 255, adv_mode="early-stop")
    x_es = make_attack(cfg, make_head("classification"))(m, x, y, torch.arange(12), 0)
    unmoved = (x_es - x).flatten(1).abs().amax(1) == 0
    assert bool(unmoved[:6].all())                          # misclassified: left as they are
    madry = make_attack(TrainConfig(recipe="adversarial", steps=5, eps=2.5 / 255),
                        make_head("classification"))(m, x, y, torch.arange(12), 0)
    assert not torch.equal(madry, x_es)


def test_the_mode_is_recorded_in_the_checkpoint(tmp_path):
    out = tmp_path / "adv.safetensors"
    train(TrainConfig(arch="tiny_cnn", data="synthetic:24", size=32, epochs=1, batch_size=12,
                      recipe="adversarial", steps=2, out=str(out), quiet=True, max_steps=1))
    recipe = load_model(out).meta["recipe"]
    assert recipe["adv_mode"] == "madry" and recipe["steps"] == 2
