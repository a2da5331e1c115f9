"""The eps-sweep engine against independent runs and torchattacks; AutoAttack; sanity flags."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from robustbench_fundus.attacks import get_attack

EPS = [0.5 / 255, 1 / 255, 2 / 255, 2.5 / 255, 4 / 255, 8 / 255]


class _Counting(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.rows = 0

    def forward(self, x):
        self.rows += x.shape[0]
        return self.inner(x)


@pytest.mark.slow
def test_at_least_torchattacks_pgd(toy_model, toy_data):
    """Same steps, step size and random start, 200 images: our success >= theirs at every eps
    (one sample of slack for chance)."""
    torchattacks = pytest.importorskip("torchattacks")
    x, y = toy_data
    ours = get_attack("pgd", steps=10, keep_adv=False, sanity_samples=0)(toy_model, x, y, EPS)
    clean = ours.clean_correct
    assert 0.5 < clean.float().mean() < 1.0
    theirs = []
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for e in EPS:
            xa = torchattacks.PGD(toy_model, eps=e, alpha=2.5 * e / 10, steps=10,
                                  random_start=True)(x, y)
            with torch.no_grad():
                theirs.append(int((clean & (toy_model(xa).argmax(1) != y)).sum()))
    print("ours", ours.counts.n_success, "theirs", theirs)
    for k in range(len(EPS)):
        assert ours.counts.n_success[k] >= theirs[k] - 1, (k, ours.counts.n_success, theirs)
    assert ours.counts.n_success[-1] > ours.counts.n_success[0]  # a curve, not a constant


def test_sweep_never_weaker_than_independent_runs(toy_model, toy_data):
    x, y = toy_data
    x, y = x[:64], y[:64]
    eps = [1 / 255, 2 / 255, 4 / 255]
    atk = get_attack("pgd", steps=5, sanity_samples=0)
    sweep = atk(toy_model, x, y, eps, seed=2)
    work_indep = 0
    for k, e in enumerate(eps):
        one = atk(toy_model, x, y, [e], seed=2)
        work_indep += one.counts.work
        # per sample: every sample an independent run breaks, the sweep breaks too
        missed = (one[0].success & ~sweep[k].success).sum()
        assert missed <= 1, (e, int(missed))
        assert sweep.counts.n_success[k] >= one.counts.n_success[0] - 1
    assert sweep.counts.work < work_indep


def test_broken_samples_are_not_stepped(toy_model, toy_data):
    x, y = toy_data
    x, y = x[:48], y[:48]
    steps = 6
    m = _Counting(toy_model)
    res = get_attack("pgd", steps=steps, sanity_samples=0)(m, x, y, [2 / 255, 8 / 255])
    n_att = res.n_attacked
    full = n_att * (steps + 1) * 2
    assert res.counts.work < full
    assert res.counts.n_success[-1] > 0
    # rows the model saw: clean (+ randomised check) + attack + verification passes
    assert m.rows <= 2 * 48 + res.counts.work + 2 * n_att
    # broken_at_step: in [0, steps]; samples carried from the smaller eps report 0
    b0, b1 = res[0].broken_at_step, res[1].broken_at_step
    assert ((b0 >= -1) & (b0 <= steps)).all() and ((b1 >= -1) & (b1 <= steps)).all()
    assert (b1[res[0].success] == 0).all()
    assert torch.equal(res[1].x_adv[res[0].success], res[0].x_adv[res[0].success])
    fb = res.first_broken
    assert ((fb == 0) == res[0].success).all()
    assert ((fb == 1) == (res[1].success & ~res[0].success)).all()


def test_warm_start_option(toy_model, small_batch):
    x, y = small_batch
    res = get_attack("pgd", steps=3, warm_start=True)(toy_model, x, y, [2 / 255, 4 / 255])
    assert res.success_rate[1] >= res.success_rate[0]


def test_fgsm_and_l2_on_toy(toy_model, toy_data):
    x, y = toy_data
    x, y = x[:64], y[:64]
    f = get_attack("fgsm")(toy_model, x, y, [2 / 255, 8 / 255])
    p = get_attack("pgd", steps=5)(toy_model, x, y, [2 / 255, 8 / 255])
    assert f.counts.work == f.n_attacked  # one gradient per sample for the whole sweep
    assert p.success_rate[1] >= f.success_rate[1] - 0.05
    l2 = get_attack("pgd_l2", steps=5)(toy_model, x, y, [0.1, 1.0])
    assert l2.success_rate[1] > l2.success_rate[0] >= 0


@pytest.mark.slow
def test_autoattack_not_weaker_than_pgd(toy_model, toy_data):
    x, y = toy_data
    x, y = x[:6], y[:6]
    eps = [4 / 255]
    aa = get_attack("autoattack")(toy_model, x, y, eps, seed=0)
    pgd = get_attack("pgd", steps=10)(toy_model, x, y, eps, seed=0)
    assert aa.n_attacked == pgd.n_attacked > 0
    assert aa.robust_accuracy[0] <= pgd.robust_accuracy[0]
    assert (aa[0].x_adv - x).abs().max() <= eps[0] + 1e-6


# ---------------------------------------------------------------------------------------------
# sanity flags
# ---------------------------------------------------------------------------------------------
class _Softmax(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return F.softmax(self.inner(x), dim=1)


class _AlwaysDropout(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(F.dropout(x, 0.3, training=True))


class _Quantised(nn.Module):
    """Input quantisation: zero input gradients everywhere (gradient masking)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(torch.round(x * 8) / 8)


def _names(res):
    return {f["name"] for f in res.flags}


def test_no_flags_on_a_plain_model(toy_model, small_batch):
    x, y = small_batch
    res = get_attack("pgd", steps=3)(toy_model, x, y, [2 / 255])
    assert _names(res) == set(), res.flags


def test_probability_flag(toy_model, small_batch):
    x, y = small_batch
    res = get_attack("pgd", steps=2)(_Softmax(toy_model), x, y, [2 / 255])
    assert "probability_outputs" in _names(res)


def test_randomized_flag(toy_model, small_batch):
    x, y = small_batch
    with torch.random.fork_rng():
        torch.manual_seed(0)
        res = get_attack("pgd", steps=2)(_AlwaysDropout(toy_model), x, y, [2 / 255])
    assert "randomized_model" in _names(res)


def test_masked_gradient_and_huge_eps_flags(toy_model, small_batch):
    x, y = small_batch
    res = get_attack("pgd", steps=3, sanity_samples=4)(_Quantised(toy_model), x, y, [2 / 255])
    names = _names(res)
    assert "masked_gradients" in names and "huge_eps_not_broken" in names
    flag = next(f for f in res.flags if f["name"] == "masked_gradients")
    assert flag["n_zero"] == flag["n_checked"] > 0
    # flags survive summing counts over batches
    assert "masked_gradients" in {f["name"] for f in (res.counts + res.counts).flags()}
