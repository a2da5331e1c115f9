"""Parsing of the CLI spellings and validation of TrainConfig."""
from __future__ import annotations

import pytest

from robustbench_fundus.errors import RBFError
from robustbench_fundus.train import TrainConfig
from robustbench_fundus.train.config import parse_data_spec


def parse_eps(text):
    return TrainConfig(eps=text).eps


def parse_severities(text):
    return TrainConfig(severities=text).severities


def test_parse_eps():
    assert parse_eps("2.5/255") == pytest.approx(2.5 / 255)
    assert parse_eps("0.01") == pytest.approx(0.01)
    assert parse_eps(0.5) == 0.5
    with pytest.raises(RBFError, match="eps"):
        parse_eps("two")
    with pytest.raises(RBFError, match="one radius"):
        parse_eps("1/255,2/255")


def test_parse_severities():
    assert parse_severities("1-4") == (1, 2, 3, 4)
    assert parse_severities("1") == (1,)
    assert parse_severities("1-2") == (1, 2)
    assert parse_severities("1,3") == (1, 3)
    for bad in ("0-2", "5", "3-1", "x"):
        with pytest.raises(RBFError, match="severities"):
            parse_severities(bad)


def test_data_spec():
    assert parse_data_spec(None) == ("synthetic", None)
    assert parse_data_spec("synthetic") == ("synthetic", None)
    assert parse_data_spec("synthetic:300") == ("synthetic", 300)
    assert parse_data_spec("some/dir") == ("dir", None)
    with pytest.raises(RBFError):
        parse_data_spec("synthetic:lots")


@pytest.mark.parametrize("kw,match", [
    ({"recipe": "mixup"}, "recipe"), ({"balance": "oversample"}, "balance"),
    ({"epochs": 0}, "epochs"), ({"adv_weight": 1.5}, "adv-weight"), ({"eps": 3.0}, "eps"),
])
def test_config_rejects(kw, match):
    with pytest.raises(RBFError, match=match):
        TrainConfig(**kw)


def test_config_roundtrip():
    cfg = TrainConfig(recipe="corruption", severities=(1, 2), corruptions=("motion_blur",))
    d = cfg.to_dict()
    assert d["severities"] == [1, 2] and isinstance(d["augment"]["scale"], list)
    back = TrainConfig.from_dict(d)
    assert back.to_dict() == d
