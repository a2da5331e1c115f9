from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from robustbench_fundus.attacks import get_attack
from robustbench_fundus.bench import (DEFAULT_EPS, eps_sweep, format_eps, format_eps_255,
                                      parse_eps, parse_severities, resolve_corruptions)
from robustbench_fundus.bench.conditions import CLEAN, attack_conditions, corruption_condition
from robustbench_fundus.corruptions import get_corruption
from robustbench_fundus.errors import RBFError


def test_eps_sweep_fractions_and_decimals():
    assert eps_sweep("2/255,0.5/255, 1/255") == [0.5 / 255, 1 / 255, 2 / 255]
    assert eps_sweep("0.01") == [0.01]
    assert eps_sweep(["8/255", 2 / 255, "2/255"]) == [2 / 255, 8 / 255]
    assert eps_sweep(None) == list(DEFAULT_EPS)
    assert eps_sweep(None, "L2", (0.5, 0.25)) == [0.25, 0.5]
    assert all(isinstance(v, float) for v in eps_sweep("1/255"))
    # the bench reads eps with the attack stage's one parser
    assert parse_eps("2/255,1/255", what="--eps") == [2 / 255, 1 / 255]


@pytest.mark.parametrize("bad", ["2", "abc", "1/0", "-1/255", ""])
def test_eps_sweep_rejects(bad):
    with pytest.raises(RBFError, match="--eps"):
        eps_sweep(bad)


def test_l2_eps_are_not_capped_at_one():
    assert eps_sweep("0.5,2,8", "L2") == [0.5, 2.0, 8.0]
    with pytest.raises(RBFError, match="--eps"):
        eps_sweep("2", "Linf")
    with pytest.raises(RBFError, match="--eps"):
        eps_sweep("-1", "L2")
    assert format_eps(2 / 255, "linf") == "2/255" and format_eps(0.5, "l2") == "0.5"


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 255 * 4))
def test_eps_255_roundtrip(k):
    e = k / 4 / 255
    s = format_eps_255(e)
    assert parse_eps(s)[0] == pytest.approx(e, abs=1e-9)


def test_parse_severities():
    assert parse_severities("1-4") == [1, 2, 3, 4]
    assert parse_severities("4,2,2") == [2, 4]
    assert parse_severities(3) == [3]
    with pytest.raises(RBFError, match="--severities"):
        parse_severities("0-2")
    with pytest.raises(RBFError, match="--severities"):
        parse_severities("x")


def test_resolve_corruptions():
    four = ["light_leakage", "motion_blur", "under_exposure", "over_exposure"]
    assert resolve_corruptions("all") == four
    assert resolve_corruptions("none") == []
    assert resolve_corruptions(None) == []
    ic = resolve_corruptions("imagenet-c")
    assert len(ic) == 19 and all(n.startswith("imagenet_c/") for n in ic)
    mixed = resolve_corruptions("motion_blur,imagenet_c/fog,all")
    assert mixed[:2] == ["motion_blur", "imagenet_c/fog"] and len(mixed) == 5
    with pytest.raises(RBFError):
        resolve_corruptions("motion_blurr")


def test_condition_keys_carry_the_configuration():
    assert CLEAN.key == "clean"
    blur = corruption_condition(get_corruption("motion_blur"), 4)
    h = blur.config_hash
    assert blur.key == f"corruption/motion_blur/4/config={h}" and len(h) == 12
    other = get_corruption("motion_blur", angle_range=(0.0, 0.0))
    assert corruption_condition(other, 4).config_hash != h
    (c10,) = attack_conditions(get_attack("pgd", steps=10), [2 / 255])
    (c1,) = attack_conditions(get_attack("pgd", steps=1), [2 / 255])
    assert c10.key == f"attack/pgd/linf/steps=10/config={c10.config_hash}/eps=0.0078431"
    assert c10.eps == 2 / 255 and c10.label == "pgd_linf_10" and c1.label == "pgd_linf_1"
    assert c1.config_hash != c10.config_hash and c1.key != c10.key
    (l2,) = attack_conditions(get_attack("pgd_l2"), [0.5])
    assert l2.norm == "l2" and l2.label == "pgd_l2_10"
    (fg,) = attack_conditions(get_attack("fgsm"), [1 / 255])
    assert fg.steps is None and "steps=-" in fg.key and fg.label == "fgsm_linf"
