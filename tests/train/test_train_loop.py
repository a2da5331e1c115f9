"""The training loop: checkpoints with metadata, the .last training state, resumption."""
from __future__ import annotations

import json

import pytest
import torch

from robustbench_fundus.errors import RBFError
from robustbench_fundus.models import load_model
from robustbench_fundus.train import TrainConfig, last_path, load_train_state, train
from robustbench_fundus.train.datasets import class_weights, epoch_order, shard_order

SMALL = dict(arch="tiny_cnn", data="synthetic:16", size=32, batch_size=8, quiet=True)


def _cfg(tmp_path, **kw) -> TrainConfig:
    return TrainConfig(**{**SMALL, "out": str(tmp_path / "m.safetensors"), **kw})


def test_two_steps_write_loadable_checkpoint_and_state(tmp_path):
    cfg = _cfg(tmp_path, epochs=1, max_steps=2)
    rng = torch.get_rng_state()
    res = train(cfg)
    assert torch.equal(rng, torch.get_rng_state()), "training must not move the global RNG"
    assert res.steps == 2 and res.out.is_file()
    model = load_model(res.out)  # no arch: from the checkpoint's metadata
    assert model.arch == "tiny_cnn" and model.input_size == (32, 32)
    assert model.preprocessing == "graham"
    meta = model.meta
    assert meta["recipe"]["name"] == "baseline"
    assert meta["data_fingerprint"].startswith("synthetic seed=0 n=16")
    assert meta["epochs"] == 1
    assert set(meta["val_metrics"]) >= {"accuracy", "balanced_accuracy", "kappa"}
    assert json.loads(json.dumps(meta["train_config"]))["size"] == 32
    st = torch.load(last_path(res.out), map_location="cpu", weights_only=True)
    assert st["epoch"] == 1 and st["step"] == 2
    assert set(st) >= {"model", "optimizer", "scheduler", "rng", "config", "history"}


def _weights(path):
    return load_train_state(last_path(path))["model"]


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    full = train(_cfg(tmp_path / "a", epochs=2))

    class Stop(Exception):
        pass

    def interrupt(epoch, rec):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        train(_cfg(tmp_path / "b", epochs=2), on_epoch_end=interrupt)
    assert load_train_state(last_path(tmp_path / "b" / "m.safetensors"))["epoch"] == 1
    resumed = train(_cfg(tmp_path / "b", epochs=2, resume=True))
    assert resumed.epochs_run == 1 and resumed.steps == full.steps == 4
    wa, wb = _weights(full.out), _weights(resumed.out)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=k)
    ha = [h["val"]["confusion"] for h in load_train_state(last_path(full.out))["history"]]
    hb = [h["val"]["confusion"] for h in load_train_state(last_path(resumed.out))["history"]]
    assert ha == hb


def test_resume_refuses_changed_settings_and_missing_state(tmp_path):
    train(_cfg(tmp_path, epochs=1, max_steps=1))
    with pytest.raises(RBFError, match="different settings"):
        train(_cfg(tmp_path, epochs=2, lr=0.1, resume=True))
    with pytest.raises(RBFError, match="no training state"):
        train(_cfg(tmp_path / "other", epochs=1, resume=True))


def test_corruption_recipe_step(tmp_path):
    res = train(_cfg(tmp_path, epochs=1, max_steps=1, recipe="corruption", severities=(3, 4)))
    meta = load_model(res.out).meta
    assert meta["recipe"] == {"name": "corruption", "severities": [3, 4],
                              "corruptions": "default", "corruption_prob": 1.0}


def test_corruption_recipe_corrupts_training_inputs_only():
    from robustbench_fundus.models import create_model
    from robustbench_fundus.train.recipes import BatchPipeline
    from robustbench_fundus.data.synth import make_synthetic

    imgs = make_synthetic(4, 32, seed=0).images
    model = create_model("tiny_cnn", input_size=32)
    cfg = TrainConfig(**{**SMALL, "recipe": "corruption", "severities": (4,)})
    cfg_base = TrainConfig(**SMALL)
    from robustbench_fundus.train import AugmentConfig
    cfg.augment = cfg_base.augment = AugmentConfig.none()
    cpu = torch.device("cpu")
    pc, pb = BatchPipeline(model, cfg, cpu), BatchPipeline(model, cfg_base, cpu)
    d = torch.arange(4)
    assert not torch.allclose(pc.inputs(imgs, d, train=True), pb.inputs(imgs, d, train=True))
    torch.testing.assert_close(pc.inputs(imgs, d, train=False), pb.inputs(imgs, d, train=False))


def test_adversarial_recipe_step(tmp_path):
    pytest.importorskip("robustbench_fundus.attacks")
    res = train(_cfg(tmp_path, epochs=1, max_steps=1, recipe="adversarial", steps=2))
    meta = load_model(res.out).meta
    assert meta["recipe"]["name"] == "adversarial" and meta["recipe"]["steps"] == 2
    assert meta["recipe"]["eps"] == pytest.approx(2.5 / 255)
    hist = load_train_state(last_path(res.out))["history"]
    assert "train_loss_adv" in hist[0]


def test_balanced_sampler_and_class_weights():
    labels = torch.tensor([0] * 90 + [1] * 10)
    w = class_weights(labels)
    assert w[1] == pytest.approx(9 * w[0]) and w[2:].abs().sum() == 0
    order = epoch_order(labels, epoch=0, seed=0, balance="sampler")
    frac1 = float((labels[order] == 1).float().mean())
    assert 0.35 < frac1 < 0.65  # about half from the rare class
    perm = epoch_order(labels, epoch=0, seed=0, balance="none")
    assert sorted(perm.tolist()) == list(range(100))
    assert not torch.equal(perm, epoch_order(labels, epoch=1, seed=0, balance="none"))


def test_shard_order_covers_everything_evenly():
    order = torch.arange(10)
    parts = [shard_order(order, r, 4) for r in range(4)]
    assert {len(p[0]) for p in parts} == {3}
    assert sorted(torch.cat([p[1] for p in parts]).tolist()) == list(range(12))
    assert set(torch.cat([p[0] for p in parts]).tolist()) == set(range(10))
