"""The bundled demo model: present, small, loadable without --arch, with its provenance, made by
the command written in docs/training.md, and clearly better than chance on held-out images."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import torch

from robustbench_fundus.models import load_model
from robustbench_fundus.train import DEMO_COMMAND, TrainConfig, demo_model_path

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo():
    path = demo_model_path()
    assert path.is_file(), f"bundled demo model missing at {path}"
    return load_model(path)


def test_demo_file_is_small():
    assert demo_model_path().stat().st_size < 2 * 1024 * 1024  # brief: < 20 MB, aim < 2 MB


def test_demo_metadata(demo):
    meta = demo.meta
    assert demo.arch == "tiny_cnn" and demo.input_size == (128, 128)
    assert demo.preprocessing == "graham"
    assert meta["recipe"] == {"name": "baseline"}
    assert meta["data_fingerprint"].startswith("synthetic seed=0 n=3000 size=128")
    assert 1 <= meta["epochs"] <= meta["epochs_planned"]
    vm = meta["val_metrics"]
    assert vm["n"] > 0 and vm["kappa"] > 0.5, vm


def test_demo_command_is_documented_and_matches_the_checkpoint(demo):
    doc = (REPO / "docs" / "training.md").read_text()
    assert DEMO_COMMAND in doc
    from robustbench_fundus.cli import build_parser
    from robustbench_fundus.train._cli import config_from_args

    argv = shlex.split(DEMO_COMMAND)[1:]  # drop "rbf"
    cfg = config_from_args(build_parser().parse_args(argv)).to_dict()
    stored = demo.meta["train_config"]
    defaults = TrainConfig().to_dict()
    for k, v in cfg.items():
        if k in TrainConfig.RESUMABLE_CHANGES:
            continue
        if k not in stored:  # an option added after the demo was trained: at its default,
            assert v == defaults[k], (k, v)  # which is what the demo's training did
            continue
        assert stored[k] == v, (k, stored[k], v)


def test_demo_beats_chance_on_held_out_synthetic_images(demo):
    from robustbench_fundus.data import graham
    from robustbench_fundus.data.synth import make_synthetic
    from robustbench_fundus.metrics import classification_metrics

    # the benchmark's synthetic stream, never seen in training (seed 0) or validation
    b = make_synthetic(48, 128, seed=20240601)
    x = b.images.float() / 255
    with torch.no_grad():
        pred = demo(graham(x)).argmax(1)
    m = classification_metrics(b.grades.numpy(), pred.numpy())
    majority = float((b.grades == b.grades.mode().values).float().mean())
    assert m.accuracy > majority and m.kappa > 0.5, (m.accuracy, majority, m.kappa)
