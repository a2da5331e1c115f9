"""Every attack class torchattacks exports (discovered from the module, so a new class is tested
too) runs through ``get_attack("torchattacks:<Name>")`` and the base-class contract, or is
refused with the documented one-line RBFError."""
from __future__ import annotations

import pytest
import torch

from _attack_toy import make_toy
from robustbench_fundus.attacks import distance, get_attack, torchattacks_classes
from robustbench_fundus.errors import RBFError

CLASSES = torchattacks_classes()
#: cannot be built from a model alone (documented in docs/attacks.md)
REFUSED = {"LGV": "training data loader", "MultiAttack": "list of already built"}
#: options that keep the expensive classes cheap on 16 px images; every class with a ``steps``
#: option gets steps=2 unless given here
CHEAP = {
    "Square": {"n_queries": 20}, "SPSA": {"nb_sample": 8, "max_batch_size": 8},
    "EADEN": {"max_iterations": 10, "binary_search_steps": 2},
    "EADL1": {"max_iterations": 10, "binary_search_steps": 2},
    "CW": {"steps": 5}, "OnePixel": {"steps": 2, "popsize": 4},
    "Pixle": {"restarts": 2, "max_iterations": 2}, "JSMA": {"gamma": 0.02},
    "PIFGSM": {"num_iter_set": 2}, "PIFGSMPP": {"num_iter_set": 2},
}
EPS = {"Linf": [4 / 255, 16 / 255], "L2": [0.25, 1.0]}


@pytest.fixture(scope="module")
def batch16(toy_model_path):
    """Three clean-correct 16 px toy images and one the model gets wrong."""
    from _attack_toy import ToyNet
    model = ToyNet()
    model.load_state_dict(torch.load(toy_model_path, weights_only=True))
    model.eval()
    x, y = make_toy(48, 16, seed=99)
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    idx = torch.cat([ok.nonzero().squeeze(1)[:3], (~ok).nonzero().squeeze(1)[:1]])
    assert ok.sum() >= 3 and (~ok).sum() >= 1
    return model, x[idx].clone(), y[idx].clone()


def test_classes_are_discovered():
    pytest.importorskip("torchattacks")
    assert {"PGD", "FGSM", "APGD", "CW", "Square", "LGV", "MultiAttack"} <= set(CLASSES)
    assert len(CLASSES) >= 39


@pytest.mark.parametrize("cls_name", CLASSES or ["<torchattacks not installed>"])
def test_every_class_runs_or_says_why(cls_name, batch16):
    if not CLASSES:
        pytest.skip("torchattacks is not installed")
    if cls_name in REFUSED:
        with pytest.raises(RBFError) as e:
            get_attack(f"torchattacks:{cls_name}")
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"torchattacks:{cls_name} cannot be built "
                                                  "from a model alone")
        assert REFUSED[cls_name] in msg
        return
    model, x, y = batch16
    atk = get_attack(f"torchattacks:{cls_name}", **CHEAP.get(cls_name, {}))
    if "steps" in atk.options() and "steps" not in CHEAP.get(cls_name, {}):
        atk = atk.with_options(steps=2)
    eps = EPS[atk.norm]
    state = torch.get_rng_state()
    res = atk(model, x, y, eps, seed=0)
    assert torch.equal(state, torch.get_rng_state())
    assert res.attack == f"torchattacks:{cls_name}" and res.n == 4 and res.n_attacked == 3
    prev = torch.zeros(4, dtype=torch.bool)
    for k, r in enumerate(res):
        assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1
        tol = 1e-6 if atk.norm == "Linf" else 1e-5
        assert (distance(x, r.x_adv, atk.norm) <= eps[k] + tol).all()
        assert (r.success >= prev).all() and not (r.success & ~res.clean_correct).any()
        with torch.no_grad():
            assert torch.equal(r.adv_correct, model(r.x_adv).argmax(1) == y)
        assert res.counts.n_robust[k] == res.n_attacked - res.counts.n_success[k]
        prev = r.success
    assert res.identity["name"] == f"torchattacks:{cls_name}"


def test_seeded_classes_are_reproducible(batch16):
    pytest.importorskip("torchattacks")
    model, x, y = batch16
    for name, opts in (("Square", {"n_queries": 20}), ("APGD", {"steps": 2}),
                       ("OnePixel", {"steps": 2, "popsize": 4})):
        atk = get_attack(f"torchattacks:{name}", **opts)
        a = atk(model, x, y, [4 / 255], seed=1)
        b = atk(model, x, y, [4 / 255], seed=1)
        assert torch.equal(a[0].x_adv, b[0].x_adv), name


def test_class_specific_rules():
    pytest.importorskip("torchattacks")
    with pytest.raises(RBFError, match="abort_early it needs max_iterations >= 10"):
        get_attack("torchattacks:EADEN", max_iterations=5)
    assert get_attack("torchattacks:EADEN", max_iterations=5, abort_early=False)
    with pytest.raises(RBFError, match="no attack 'Nope'; choose one of APGD, APGDT"):
        get_attack("torchattacks:Nope")


def test_jsma_targets_a_class_the_model_has(toy_model_path):
    """torchattacks' untargeted JSMA targets (label + 1) % 10: for the last of 5 grades that is
    class 5, which does not exist. The adapter targets the next class modulo the model's width."""
    pytest.importorskip("torchattacks")
    from _attack_toy import ToyNet
    model = ToyNet()
    model.load_state_dict(torch.load(toy_model_path, weights_only=True))
    model.eval()
    x, y = make_toy(64, 16, seed=99)
    with torch.no_grad():
        ok = (model(x).argmax(1) == y) & (y == 4)
    assert ok.any()
    i = ok.nonzero().squeeze(1)[:1]
    res = get_attack("torchattacks:JSMA", gamma=0.02)(model, x[i], y[i], [0.5], seed=0)
    assert res.n_attacked == 1
