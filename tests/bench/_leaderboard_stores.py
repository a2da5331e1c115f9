"""Small results stores for the leaderboard tests and the report's documentation figure.

* :func:`two_model_store`: two tiny models (neither flagged: both beat always predicting the
  commonest grade) on the same 24 images, all four corruptions at severities 1-4 and a cheap
  attack at three eps; saliency scored for the first model only (so a column has a missing
  value).
* :func:`constant_and_real_store`: a model that always predicts one grade (kappa 0, 0% attack
  success: it "looks" the most robust) beside a real model, on the same images.
"""
from __future__ import annotations

import torch
from torch import nn

from _bench_helpers import StubAttack, tensor_data, tiny_model
from robustbench_fundus import evaluate

SIZE = 32
N = 24


def _data():
    """24 images whose grades are what model-a predicts on two thirds of them and model-b on
    the rest: model-a is right on about 0.8 of them, model-b on about 0.46, and the commonest
    grade covers a third (neither model is flagged)."""
    x, _ = tensor_data(N, SIZE, seed=3)
    a, b = models()
    with torch.no_grad():
        pa, pb = a(x).argmax(1), b(x).argmax(1)
    y = torch.where(torch.arange(N) % 3 == 0, pb, pa)
    return x, y


def models():
    return (tiny_model(SIZE, seed=0, preprocessing="none"),
            tiny_model(SIZE, seed=7, preprocessing="none"))


class ConstantGrade(nn.Module):
    """Always the same grade, whatever the image (outputs depend on the input through a zero
    weight, so an attack has a graph to differentiate)."""

    def __init__(self, grade: int, size: int = SIZE, preprocessing: str = "none"):
        super().__init__()
        self.input_size = (size, size)
        self.preprocessing = preprocessing
        self.register_buffer("logits", torch.full((5,), -4.0).index_fill_(0,
                                                                          torch.tensor(grade),
                                                                          4.0))

    def forward(self, x):
        return self.logits.expand(x.shape[0], 5) + 0.0 * x.mean(dim=(1, 2, 3))[:, None]


def _kw(store):
    return dict(corruptions="all", severities="1-4", attack=StubAttack(),
                eps="1/255,2/255,8/255", store=store)


def two_model_store(store, saliency: bool = True):
    """``store`` with model-a (saliency scored on 4 images when ``saliency``) and model-b."""
    x, y = _data()
    a, b = models()
    with torch.random.fork_rng():
        evaluate(a, (x, y), name="model-a", saliency=4 if saliency else 0, saliency_steps=4,
                 **_kw(store))
        evaluate(b, (x, y), name="model-b", **_kw(store))
    return store


def constant_and_real_store(store):
    """``store`` with ``real`` (model-a) and ``constant`` (always the commonest grade)."""
    x, y = _data()
    a, _ = models()
    grade = int(torch.bincount(y, minlength=5).argmax())
    evaluate(ConstantGrade(grade), (x, y), name="constant", **_kw(store))
    evaluate(a, (x, y), name="real", **_kw(store))
    return store
