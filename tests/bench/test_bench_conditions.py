from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from robustbench_fundus.bench import (DEFAULT_EPS, format_eps_255, parse_eps, parse_severities,
                                      resolve_corruptions)
from robustbench_fundus.bench.conditions import (CLEAN, attack_condition, corruption_condition)
from robustbench_fundus.errors import RBFError


def test_parse_eps_fractions_and_decimals():
    assert parse_eps("2/255,0.5/255, 1/255") == [0.5 / 255, 1 / 255, 2 / 255]
    assert parse_eps("0.01") == [0.01]
    assert parse_eps(["8/255", 2 / 255, "2/255"]) == [2 / 255, 8 / 255]
    assert parse_eps(None) == list(DEFAULT_EPS)
    assert all(isinstance(v, float) for v in parse_eps("1/255"))


@pytest.mark.parametrize("bad", ["2", "abc", "1/0", "-1/255", ""])
def test_parse_eps_rejects(bad):
    with pytest.raises(RBFError, match="--eps"):
        parse_eps(bad)


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


def test_condition_keys():
    assert CLEAN.key == "clean"
    assert corruption_condition("motion_blur", 4).key == "corruption/motion_blur/4"
    k = attack_condition("pgd", 2 / 255, 10).key
    assert k == "attack/pgd/linf/steps=10/eps=0.0078431"
    assert attack_condition("pgd", 2 / 255, 10).eps == 2 / 255
