"""Every registered attack and corruption runs through ``evaluate()`` and ``rbf bench``, with
the documented denominators (parametrised over the registries: a newly registered attack or
corruption is tested by being registered)."""
from __future__ import annotations

import json

import pytest
import torch

from _bench_helpers import tensor_data, tiny_checkpoint, tiny_model
from robustbench_fundus import attacks as A
from robustbench_fundus import corruptions as C
from robustbench_fundus import evaluate
from robustbench_fundus.attacks import Attack, AttackConfig
from robustbench_fundus.bench import RunOptions
from robustbench_fundus.cli import main

#: The torchattacks entry, expanded into concrete classes (FGSM has no steps).
TORCHATTACKS = ["torchattacks:PGD", "torchattacks:FGSM", "torchattacks:APGD"]
EPS = {"linf": "1/255,8/255", "l2": "0.25,2"}


class _Scale(Attack):
    """An attack registered by the test itself: scales the image towards grey by eps."""
    name = "test_scale"
    norm = "Linf"
    Config = AttackConfig
    description = "test double registered in the test"

    def _attack_eps(self, ctx, x, y, eps, *, seed, sample_ids):
        return x + eps * torch.sign(0.5 - x)


@pytest.fixture
def registered():
    A.REGISTRY.register(_Scale, name=_Scale.name)
    yield _Scale.name
    A.REGISTRY.unregister(_Scale.name)


def attack_names() -> list[str]:
    out = []
    for n in A.REGISTRY.names():
        out += TORCHATTACKS if n == "torchattacks" else [n]
    return out + ["<registered in the test>"]


def _check_attack_rows(d: dict, norm: str) -> None:
    clean = d["clean"]
    correct = sum(clean["confusion"][g][g] for g in range(5))
    rows = d["attacks"]
    assert len(rows) == 2
    assert len({(a["label"], a["config_hash"]) for a in rows}) == 1
    prev = -1
    for a in rows:
        assert a["norm"] == norm
        assert a["n"] == clean["n"] and a["n_attacked"] == correct
        if a["n_attacked"]:
            assert a["success_rate"] == pytest.approx(a["n_broken"] / a["n_attacked"])
        assert a["robust_accuracy"] == pytest.approx((a["n_attacked"] - a["n_broken"]) / a["n"])
        assert a["n_broken"] >= prev  # monotone in eps
        prev = a["n_broken"]
        assert isinstance(a["config"], dict) and len(a["config_hash"]) == 12


@pytest.mark.parametrize("name", attack_names())
def test_every_attack_through_evaluate(name, request):
    if name.startswith("<"):
        name = request.getfixturevalue("registered")
    norm = A.resolve_attack(name).identity().norm
    m = tiny_model(32, seed=3)
    x, y = tensor_data(8, 32, seed=2)
    with torch.no_grad():
        y = m(x).argmax(1)  # every image right on clean input: all are attacked
    rep = evaluate(m, (x, y), corruptions="none", attack=name, eps=EPS[norm],
                   run=RunOptions(batch_size=4))
    d = rep.to_dict()
    _check_attack_rows(d, norm)
    assert d["attacks"][0]["n_attacked"] == 8
    assert d["provenance"]["attack"]["config_hash"] == d["attacks"][0]["config_hash"]


@pytest.mark.parametrize("name", attack_names())
def test_every_attack_through_rbf_bench(name, request, tmp_path, capsys):
    if name.startswith("<"):
        name = request.getfixturevalue("registered")
    norm = A.resolve_attack(name).identity().norm
    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors", size=32, seed=1)
    rc = main(["bench", "--model", str(ckpt), "--data", "synthetic:8", "--corruptions", "none",
               "--attack", name, "--eps", EPS[norm], "--no-progress", "--json",
               "--store", str(tmp_path / "r.sqlite"), "--batch-size", "4"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    _check_attack_rows(json.loads(out.out), norm)


def test_pgd_l2_rows_say_l2_and_take_eps_above_one(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors", size=32, seed=1)
    rc = main(["bench", "--model", str(ckpt), "--data", "synthetic:8", "--corruptions", "none",
               "--attack", "pgd_l2", "--eps", "0.5,2.5", "--steps", "3", "--no-progress",
               "--json", "--store", str(tmp_path / "r.sqlite")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    d = json.loads(out.out)
    assert [a["eps"] for a in d["attacks"]] == [0.5, 2.5]
    assert {a["norm"] for a in d["attacks"]} == {"l2"}
    assert {a["label"] for a in d["attacks"]} == {"pgd_l2_3"}
    from robustbench_fundus.bench import ResultStore
    with ResultStore(tmp_path / "r.sqlite") as st:
        assert {r["norm"] for r in st.results() if r["kind"] == "attack"} == {"l2"}


@pytest.mark.parametrize("argv, match", [
    (["--attack", "fgsm", "--steps", "5"], "--steps: attack 'fgsm' has no steps"),
    (["--attack", "pgd", "--attack-opt", "stepz=3"], "attack 'pgd' has no option 'stepz'"),
    (["--attack", "pgd", "--attack-opt", "steps"], "--attack-opt"),
    (["--attack", "nope"], "unknown attack 'nope'"),
    (["--attack", "torchattacks:Nope"], "torchattacks has no attack 'Nope'"),
])
def test_bad_attack_options_are_one_line_errors(argv, match, tmp_path, capsys):
    rc = main(["bench", "--data", "synthetic:4", "--corruptions", "none", "--no-progress",
               "--no-store", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and match in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_foreign_callable_is_refused_with_the_adapter_named():
    m = tiny_model(32)
    x, y = tensor_data(4, 32)
    with pytest.raises(Exception, match="CallableAttack"):
        evaluate(m, (x, y), corruptions="none", attack=lambda model, x, y, eps: x)
    wrapped = A.CallableAttack(lambda model, x, y, eps: (x + eps).clamp(0, 1), name="plus_eps")
    rep = evaluate(m, (x, y), corruptions="none", attack=wrapped, eps="1/255,8/255")
    assert [a["name"] for a in rep.to_dict()["attacks"]] == ["plus_eps", "plus_eps"]


@pytest.mark.parametrize("name", C.REGISTRY.names())
def test_every_corruption_through_evaluate(name):
    corr = C.get_corruption(name)
    m = tiny_model(32, seed=5)
    rep = evaluate(m, "synthetic:4", corruptions=name, severities=f"1-{corr.max_severity}",
                   attack=None, run=RunOptions(batch_size=4))
    d = rep.to_dict()
    rows = d["corruptions"]
    assert [r["severity"] for r in rows] == list(range(1, corr.max_severity + 1))
    ident = corr.identity()
    for r in rows:
        assert r["name"] == name and r["n"] == 4 and r["config_hash"] == ident["config_hash"]
        assert r["drop"] == pytest.approx(d["clean"]["accuracy"] - r["accuracy"])
        assert sum(map(sum, r["confusion"])) == 4
