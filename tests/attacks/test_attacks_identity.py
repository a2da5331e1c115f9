"""What ran (identity, label, config hash), eps per norm (parsing, formatting, default sweeps)."""
from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from robustbench_fundus.attacks import (DEFAULT_EPS_L2, DEFAULT_EPS_LINF, EXECUTION_OPTIONS,
                                        FGSM, PGD, PGDL2, REGISTRY, AttackIdentity, AutoAttack,
                                        TorchAttacksAdapter, format_eps, get_attack, parse_eps)
from robustbench_fundus.errors import RBFError


def _registered():
    names = [n for n in REGISTRY.names() if n != "torchattacks"]
    try:
        import torchattacks  # noqa: F401
        names += ["torchattacks:PGD", "torchattacks:FGSM", "torchattacks:PGDL2"]
    except ImportError:
        pass
    return names


@pytest.mark.parametrize("name", _registered())
def test_identity_is_canonical(name):
    atk = get_attack(name)
    ident = atk.identity()
    assert isinstance(ident, AttackIdentity)
    assert ident.name == atk.display_name and ident.norm == atk.norm.lower()
    assert ident.norm in ("linf", "l2")
    assert not set(ident.config) & set(EXECUTION_OPTIONS)
    assert list(ident.config) == sorted(ident.config)
    text = json.dumps({"name": ident.name, "norm": ident.norm, "config": ident.config},
                      sort_keys=True, separators=(",", ":"))
    assert ident.config_hash == hashlib.sha256(text.encode()).hexdigest()[:12]
    assert json.loads(json.dumps(ident.to_dict())) == ident.to_dict()
    assert set(ident.to_dict()) == {"name", "norm", "steps", "config", "config_hash", "label"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        ident.label = "x"  # type: ignore[misc]
    # execution-only options do not change the identity; a result-changing one does
    same = atk.with_options(amp="off", channels_last=False, keep_adv=False, sanity_eps=0.0,
                            sanity_samples=1)
    assert same.identity() == ident
    if "steps" in atk.options():
        assert atk.with_options(steps=3).identity().config_hash != ident.config_hash


def test_labels_and_steps():
    assert get_attack("pgd").identity().label == "pgd_linf_10"
    assert get_attack("pgd", steps=20).identity().label == "pgd_linf_20"
    assert get_attack("pgd_l2").identity().label == "pgd_l2_10"
    assert get_attack("fgsm").identity().label == "fgsm_linf"
    assert get_attack("fgsm").identity().steps is None
    assert get_attack("autoattack").identity().label == "autoattack_linf"
    pgd = get_attack("pgd").identity()
    assert pgd.steps == 10 and pgd.config["steps"] == 10
    assert pgd.config == {"loss": "ce", "random_start": True, "step_ratio": 2.5,
                          "step_size": None, "steps": 10, "warm_start": False}
    assert isinstance(get_attack("pgd", step_ratio=3).identity().config["step_ratio"], float)
    aa = get_attack("autoattack").identity().config
    assert aa["package"].startswith("pyautoattack==") and aa["version"] == "standard"


def test_torchattacks_identity():
    pytest.importorskip("torchattacks")
    import torchattacks
    p = get_attack("torchattacks:PGD").identity()
    assert (p.name, p.label, p.steps) == ("torchattacks:PGD", "torchattacks:PGD_linf_10", 10)
    assert p.config["package"] == f"torchattacks=={torchattacks.__version__}"
    assert p.config["class"] == "PGD" and p.config["alpha"] == "auto"
    assert get_attack("torchattacks:FGSM").identity().label == "torchattacks:FGSM_linf"
    assert get_attack("torchattacks:PGDL2", steps=5).identity().label == "torchattacks:PGDL2_5"
    assert get_attack("torchattacks:APGD", norm="L2").identity().label == \
        "torchattacks:APGD_l2_10"
    # norm is part of the hash; verbose is not (it changes nothing)
    a = get_attack("torchattacks:APGD")
    assert a.identity().config_hash != a.with_options(norm="L2").identity().config_hash
    assert a.identity() == a.with_options(verbose=False).identity()
    assert "verbose" not in a.identity().config


def test_results_carry_identity(toy_model, small_batch):
    x, y = small_batch
    atk = get_attack("pgd", steps=2)
    res = atk(toy_model, x, y, [2 / 255])
    assert res.identity == atk.identity().to_dict()
    assert res.to_dict()["identity"]["label"] == "pgd_linf_2"


def test_default_eps_per_norm():
    assert DEFAULT_EPS_LINF == (0.5 / 255, 1 / 255, 2 / 255, 2.5 / 255, 4 / 255, 8 / 255)
    assert DEFAULT_EPS_L2 == (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    for cls in (PGD, FGSM, AutoAttack):
        assert cls.default_eps == DEFAULT_EPS_LINF and cls().default_eps == DEFAULT_EPS_LINF
    assert PGDL2.default_eps == DEFAULT_EPS_L2 and PGDL2().default_eps == DEFAULT_EPS_L2
    assert TorchAttacksAdapter.default_eps == DEFAULT_EPS_LINF
    if "torchattacks" in REGISTRY:
        pytest.importorskip("torchattacks")
        assert get_attack("torchattacks:PGDL2").default_eps == DEFAULT_EPS_L2
        assert get_attack("torchattacks:PGD").default_eps == DEFAULT_EPS_LINF
        assert get_attack("torchattacks:APGD", norm="L2").default_eps == DEFAULT_EPS_L2


def test_parse_eps_per_norm():
    assert parse_eps("2/255,8/255") == pytest.approx([2 / 255, 8 / 255])
    assert parse_eps("0.5,2,8", norm="L2") == [0.5, 2.0, 8.0]
    assert parse_eps("1/2", norm="l2") == [0.5]
    assert parse_eps([16.0], norm="L2") == [16.0]
    with pytest.raises(RBFError) as e:
        parse_eps("2", what="--eps")
    msg = str(e.value)
    assert msg.startswith("--eps: Linf eps") and "2/255" in msg and "\n" not in msg
    for bad in ("0", "-1", "inf", "nan"):
        with pytest.raises(RBFError) as e:
            parse_eps(bad, what="--eps", norm="L2")
        assert str(e.value).startswith("--eps: L2 eps") and "e.g. 0.5" in str(e.value)
    with pytest.raises(RBFError, match=r"--eps: bad eps 'x' \(L2\): write a number such as 0.5"):
        parse_eps("x", what="--eps", norm="L2")
    with pytest.raises(RBFError, match="norm must be one of"):
        parse_eps("1", norm="L1")
    with pytest.raises(RBFError, match="no eps given"):
        parse_eps("", norm="L2")


def test_format_eps():
    assert format_eps(2 / 255, "Linf") == "2/255"
    assert format_eps(2.5 / 255, "linf") == "2.5/255"
    assert format_eps(0.5 / 255) == "0.5/255"
    assert format_eps(0.25, "L2") == "0.25" and format_eps(8.0, "l2") == "8"
    for e in DEFAULT_EPS_LINF:
        assert parse_eps(format_eps(e)) == pytest.approx([e], abs=1e-6)
