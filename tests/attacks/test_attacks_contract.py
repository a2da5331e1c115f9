"""The attack contract: projection, monotonicity, determinism, mode restoration, validation,
registry and counts."""
from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robustbench_fundus.attacks import (REGISTRY, Attack, SweepCounts, describe, distance,
                                        get_attack, parse_eps, project)
from robustbench_fundus.attacks.pgd import unit_noise
from robustbench_fundus.errors import RBFError

TOL = {"Linf": 1e-6, "L2": 1e-5}


def _eps_lists(norm):
    hi = 16 / 255 if norm == "Linf" else 1.0
    return st.lists(st.floats(min_value=0.0, max_value=hi, allow_nan=False), min_size=1,
                    max_size=4, unique=True).map(sorted).filter(
        lambda v: all(b - a > 1e-6 for a, b in zip(v, v[1:])))


def _check_result(res, x, y, eps, norm):
    assert res.n == x.shape[0]
    prev = torch.zeros(x.shape[0], dtype=torch.bool)
    for k, r in enumerate(res):
        assert r.x_adv is not None and r.x_adv.shape == x.shape
        assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1
        assert (distance(x, r.x_adv, norm) <= eps[k] + TOL[norm]).all()
        assert not (r.success & ~res.clean_correct).any()
        assert (r.success >= prev).all(), "success must be non-decreasing in eps (per sample)"
        prev = r.success
        assert ((r.broken_at_step >= 0) == r.success).all()
        assert torch.equal(r.adv_correct, res.clean_correct & ~r.success)
        assert res.counts.n_robust[k] == res.counts.n_attacked - res.counts.n_success[k]
        # success is what the model actually does on x_adv
        with torch.no_grad():
            pred = res_model_pred(r.x_adv)
        assert torch.equal(r.adv_correct, pred == y)
    rates = res.success_rate
    assert all(b >= a for a, b in zip(rates, rates[1:]))


_MODEL = None


def res_model_pred(x):
    return _MODEL(x).argmax(1)


@pytest.mark.parametrize("name", ["pgd", "pgd_l2", "fgsm"])
def test_properties(name, toy_model, small_batch):
    global _MODEL
    x, y = small_batch
    atk = get_attack(name, **({"steps": 3} if name != "fgsm" else {}), sanity_samples=2)
    toy_model.train()
    toy_model.features[1].eval()  # a mixed mode must come back as it was
    before = [m.training for m in toy_model.modules()]

    @settings(max_examples=4, deadline=None)
    @given(eps=_eps_lists(atk.norm), seed=st.integers(0, 2 ** 31))
    def prop(eps, seed):
        global _MODEL
        res = atk(toy_model, x, y, eps, seed=seed)
        assert [m.training for m in toy_model.modules()] == before
        toy_model.eval()
        _MODEL = toy_model
        try:
            _check_result(res, x, y, eps, atk.norm)
        finally:
            for m, t in zip(toy_model.modules(), before):
                m.training = t

    prop()


def test_same_seed_same_result(toy_model, small_batch):
    x, y = small_batch
    eps = [1 / 255, 4 / 255]
    atk = get_attack("pgd", steps=4)
    a = atk(toy_model, x, y, eps, seed=3)
    b = atk(toy_model, x, y, eps, seed=3)
    c = atk(toy_model, x, y, eps, seed=4)
    for ra, rb in zip(a, b):
        assert torch.equal(ra.x_adv, rb.x_adv)
        assert torch.equal(ra.success, rb.success)
        assert torch.equal(ra.broken_at_step, rb.broken_at_step)
    assert not torch.equal(a[0].x_adv, c[0].x_adv)


def test_global_rng_untouched(toy_model, small_batch):
    x, y = small_batch
    get_attack("pgd", steps=1)(toy_model, x[:2], y[:2], [1 / 255])  # lazy torch init
    state = torch.get_rng_state()
    get_attack("pgd", steps=2)(toy_model, x, y, [2 / 255], seed=0)
    assert torch.equal(state, torch.get_rng_state())


def test_noise_depends_only_on_sample_id():
    ids = torch.tensor([5, 9, 2, 7])
    a = unit_noise("Linf", (3, 4, 4), 0, ids, torch.device("cpu"))
    b = unit_noise("Linf", (3, 4, 4), 0, ids.flip(0), torch.device("cpu"))
    assert torch.equal(a, b.flip(0))
    assert a.abs().max() <= 1
    c = unit_noise("L2", (3, 4, 4), 0, ids, torch.device("cpu"))
    assert (c.flatten(1).norm(dim=1) <= 1 + 1e-6).all()


def test_batch_composition(toy_model, toy_data):
    """Per-sample results do not depend on the batch (noise keyed by sample id)."""
    x, y = toy_data
    x, y = x[:24], y[:24]
    atk = get_attack("pgd", steps=4)
    eps = [2 / 255, 4 / 255]
    full = atk(toy_model, x, y, eps, seed=1)
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(0))
    part = atk(toy_model, x[perm][:12], y[perm][:12], eps, seed=1, sample_ids=perm[:12])
    agree = (full.success[:, perm[:12]] == part.success).float().mean()
    assert agree >= 0.95


def test_eps_zero_and_empty(toy_model, small_batch):
    x, y = small_batch
    res = get_attack("pgd", steps=2)(toy_model, x, y, [0.0, 2 / 255])
    assert not res[0].success.any()
    assert torch.equal(res[0].x_adv, x)
    empty = get_attack("pgd")(toy_model, x[:0], y[:0], [1 / 255])
    assert empty.n == 0 and empty.counts.n_success == [0]


def test_amp_and_channels_last_paths(toy_model, small_batch):
    """bf16 autocast + channels-last also run on the CPU; results still satisfy the contract."""
    global _MODEL
    x, y = small_batch
    res = get_attack("pgd", steps=3, amp="bf16", channels_last=True)(toy_model, x, y,
                                                                    [2 / 255, 8 / 255])
    assert res[0].x_adv.dtype == torch.float32
    _MODEL = toy_model
    _check_result(res, x, y, [2 / 255, 8 / 255], "Linf")


@pytest.mark.parametrize("bad, match", [
    (dict(x=lambda x: x * 2), "lie in \\[0,1\\]"),
    (dict(eps=[2 / 255, 1 / 255]), "ascending"),
    (dict(eps=[-1.0]), ">= 0"),
    (dict(y=lambda y: y[:3]), "labels"),
    (dict(y=lambda y: y.float()), "labels"),
])
def test_bad_inputs(bad, match, toy_model, small_batch):
    x, y = small_batch
    x = bad["x"](x) if "x" in bad else x
    y = bad["y"](y) if "y" in bad else y
    with pytest.raises(RBFError, match=match):
        get_attack("pgd")(toy_model, x, y, bad.get("eps", [1 / 255]))


def test_call_is_final():
    with pytest.raises(TypeError, match="final"):
        class Bad(Attack):
            def __call__(self, *a, **k):
                return None


def test_base_class_projects_and_verifies(toy_model, small_batch):
    """An attack returning points outside the ball is projected back and its successes are
    re-checked by the base class."""
    class Wild(Attack):
        name = "wild"

        def _attack_eps(self, ctx, x, y, eps, *, seed, sample_ids):
            return x + 10 * eps * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))

    x, y = small_batch
    res = Wild()(toy_model, x, y, [2 / 255, 4 / 255])
    assert res.counts.n_projected[0] > 0
    for k, e in enumerate(res.eps):
        assert (distance(x, res[k].x_adv, "Linf") <= e + 1e-6).all()
    assert any(f["name"] == "projected" for f in res.flags)


def test_registry_and_describe(capsys):
    for n in ("pgd", "pgd_l2", "fgsm", "autoattack", "torchattacks"):
        assert n in REGISTRY
    rows = describe()
    assert list(rows[0])[0] == "name"
    assert {r["name"] for r in rows} >= {"pgd", "pgd_l2", "fgsm", "autoattack",
                                         "torchattacks:<Name>"}
    assert [r["name"] for r in describe("pgd*")] == ["pgd", "pgd_l2"]
    with pytest.raises(RBFError, match="did you mean"):
        get_attack("pgdd")
    with pytest.raises(RBFError, match="options are"):
        get_attack("pgd", stepz=3)
    with pytest.raises(RBFError, match="steps"):
        get_attack("pgd", steps=-1)
    from robustbench_fundus.cli import main
    assert main(["list", "attacks", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert any(r["name"] == "pgd" for r in out)


def test_torchattacks_adapter(toy_model, small_batch):
    pytest.importorskip("torchattacks")
    x, y = small_batch
    atk = get_attack("torchattacks:PGD", steps=3)
    assert atk.config.kwargs == {"steps": 3}
    state = torch.get_rng_state()
    weights = {k: v.clone() for k, v in toy_model.state_dict().items()}
    res = atk(toy_model, x, y, [2 / 255, 8 / 255], seed=0)
    for k, v in toy_model.state_dict().items():  # batch-norm statistics untouched
        assert torch.equal(v, weights[k]), k
    assert torch.equal(state, torch.get_rng_state())
    assert res.attack == "torchattacks:PGD"
    assert not any(m.training for m in toy_model.modules())
    for k, e in enumerate(res.eps):
        assert (distance(x, res[k].x_adv, "Linf") <= e + 1e-6).all()
    assert res.success_rate[1] >= res.success_rate[0]
    l2 = get_attack("torchattacks:PGDL2", steps=2)
    assert l2.norm == "L2"
    with pytest.raises(RBFError, match="no attack"):
        get_attack("torchattacks:NoSuchAttack")


def test_parse_eps_and_project():
    assert parse_eps("0.5/255, 2/255,0.01") == pytest.approx([0.5 / 255, 2 / 255, 0.01])
    assert parse_eps([1, "8/255"]) == pytest.approx([1.0, 8 / 255])
    with pytest.raises(RBFError, match="bad eps"):
        parse_eps("two/255")
    x = torch.rand(3, 3, 5, 5)
    xa = torch.rand(3, 3, 5, 5)
    for norm in ("Linf", "L2"):
        p = project(x, xa, 0.1, norm)
        assert (distance(x, p, norm) <= 0.1 + 1e-6).all() and p.min() >= 0 and p.max() <= 1
        assert torch.equal(project(x, p, 0.2, norm), p)  # inside: unchanged bit for bit


def test_counts_add_and_tensor_roundtrip():
    a = SweepCounts(eps=[0.1, 0.2], n=10, n_attacked=8, n_success=[2, 5], n_robust=[6, 3],
                    grad_checked=8, grad_zero=1, work=100, batches=1)
    b = SweepCounts(eps=[0.1, 0.2], n=6, n_attacked=5, n_success=[1, 1], n_robust=[4, 4],
                    grad_checked=5, huge_checked=2, huge_unbroken=1, batches=1)
    s = sum([a, b])
    assert s.n == 16 and s.n_attacked == 13 and s.n_success == [3, 6] and s.n_robust == [10, 7]
    assert s.success_rate == pytest.approx([3 / 13, 6 / 13])
    assert s.robust_accuracy == pytest.approx([10 / 16, 7 / 16])
    assert SweepCounts.from_tensor(s.to_tensor(), s.eps) == s
    assert [f["name"] for f in s.flags()] == ["huge_eps_not_broken"]
    with pytest.raises(ValueError):
        a + SweepCounts(eps=[0.1])


# ---------------------------------------------------------------------------------------------
# the contract, for every registered attack (a newly registered attack is tested by being
# registered); the torchattacks entry is expanded into a few concrete classes
# ---------------------------------------------------------------------------------------------
TORCHATTACKS_EXPANDED = ["torchattacks:PGD", "torchattacks:FGSM", "torchattacks:PGDL2",
                         "torchattacks:CW"]
CONTRACT_EPS = {"Linf": [4 / 255, 16 / 255], "L2": [0.25, 1.0]}  # AutoAttack: few survivors


def _registered_attacks():
    names = []
    for n in REGISTRY.names():
        names += TORCHATTACKS_EXPANDED if n == "torchattacks" else [n]
    return names


def _cheap(atk):
    opts = atk.options()
    if "steps" in opts:
        atk = atk.with_options(steps=3)
    return atk.with_options(sanity_samples=2)


@pytest.mark.parametrize("name", _registered_attacks())
def test_contract_every_registered_attack(name, toy_model, toy_data):
    global _MODEL
    if name.startswith("torchattacks:"):
        pytest.importorskip("torchattacks")
    x, y = toy_data
    x, y = x[:8].clone(), y[:8].clone()
    atk = _cheap(get_attack(name))
    eps = CONTRACT_EPS[atk.norm]
    toy_model.train()
    toy_model.features[1].eval()  # a mixed mode must come back as it was
    before = [m.training for m in toy_model.modules()]
    state = torch.get_rng_state()
    res = atk(toy_model, x, y, eps, seed=0)
    assert [m.training for m in toy_model.modules()] == before
    assert torch.equal(state, torch.get_rng_state())
    toy_model.eval()
    _MODEL = toy_model
    _check_result(res, x, y, eps, atk.norm)
    c = res.counts
    assert c.n == 8 and c.n_attacked == int(res.clean_correct.sum()) > 0
    assert res.success_rate == pytest.approx([s / c.n_attacked for s in c.n_success])
    assert res.robust_accuracy == pytest.approx([r / c.n for r in c.n_robust])
    assert c.n_success == [int(r.success.sum()) for r in res]
    assert res.attack == atk.display_name and res.identity == atk.identity().to_dict()
    # counts reduce exactly over batches
    two = SweepCounts.from_tensor((c + c).to_tensor(), eps)
    assert two.n_success == [2 * s for s in c.n_success] and two.n == 16


def test_describe_fits_100_columns_and_json_is_complete(capsys):
    from robustbench_fundus.cli import format_table, main
    rows = describe()
    table = format_table(rows)
    assert max(len(line) for line in table.splitlines()) <= 100, table
    assert main(["list", "attacks"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100, out
    assert main(["list", "attacks", "--json"]) == 0
    js = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for name in REGISTRY.names():
        if name == "torchattacks":
            continue
        cls = REGISTRY.get(name)
        full = js[name]
        assert set(full["options"]) == set(cls().options()), name   # all options, defaults
        assert full["options"]["sanity_samples"] == 8
        assert full["description"] == cls.description                 # in full
    assert js["pgd"]["options"]["steps"] == 10
    assert "norm" in js["torchattacks:<Name>"]["options"]
