"""Architecture registry, create_model and the FundusClassifier wrapper."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from robustbench_fundus import cli
from robustbench_fundus.errors import RBFError
from robustbench_fundus.models import (GRADE_NAMES, REFERENCE_ARCHS, REGISTRY, FundusClassifier,
                                       ModelSpec, create_model, describe, get_spec, register_model,
                                       signature)

# torch.jit.script/load warn that TorchScript is deprecated; the format is still read.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:FutureWarning")


def test_reference_architectures_registered_with_default_sizes():
    sizes = {"resnet18": 224, "resnet50": 224, "inception_v3": 299, "efficientnet_b0": 224,
             "efficientnet_b1": 240, "efficientnet_b2": 260, "efficientnet_b3": 300}
    assert set(REFERENCE_ARCHS) == set(sizes)
    for name, s in sizes.items():
        spec = get_spec(name)
        assert spec.input_size == (s, s), name
    assert get_spec("inception_v3").mean == (0.5, 0.5, 0.5)
    assert "tiny_cnn" in REGISTRY.names("tiny*")


@pytest.mark.parametrize("name", REGISTRY.names())
def test_every_registered_entry_schema_and_head(name):
    """Schema test over the registry itself: a new entry is tested without writing a test."""
    spec = get_spec(name)
    assert isinstance(spec, ModelSpec) and spec.name == name
    assert len(spec.mean) == 3 and len(spec.std) == 3 and all(s > 0 for s in spec.std)
    assert all(16 <= v <= 1024 for v in spec.input_size)
    sig = signature(name, 5)  # meta-device build: cheap
    head = f"{spec.classifier}.weight"
    assert head in sig and sig[head][0] == 5
    assert signature(name, 7)[head][0] == 7
    row = [r for r in describe(name) if r["name"] == name][0]
    assert list(row)[0] == "name"
    n_params = sum(torch.Size(s).numel() for k, s in sig.items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert row["params_m"] == round(n_params / 1e6, 3)
    json.dumps(row)


@pytest.mark.parametrize("size", [32, 64, 224])
def test_tiny_cnn_runs_at_many_sizes(size):
    m = create_model("tiny_cnn").eval()
    out = m(torch.rand(2, 3, size, size))
    assert out.shape == (2, 5) and torch.isfinite(out).all()


def test_tiny_cnn_is_small_and_scriptable():
    m = create_model("tiny_cnn")
    n = sum(p.numel() for p in m.parameters())
    assert n * 4 < 1_000_000
    scripted = torch.jit.script(m.backbone.eval())
    x = torch.rand(1, 3, 48, 48)
    assert torch.allclose(scripted(x), m.backbone.eval()(x), atol=1e-6)


def test_wrapper_owns_normalisation():
    class Probe(nn.Module):
        def forward(self, x):
            self.seen = x
            return x.mean(dim=(2, 3)).repeat(1, 2)[:, :5]

    probe = Probe()
    m = FundusClassifier(probe, arch="probe", mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 0.125),
                         input_size=64)
    x = torch.rand(2, 3, 8, 8)
    m(x)
    mean = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.5, 0.25, 0.125]).view(1, 3, 1, 1)
    assert torch.allclose(probe.seen, (x - mean) / std)
    assert m.input_size == (64, 64) and m.num_classes == 5 and m.label_names == GRADE_NAMES
    assert m.preprocessing == "graham" and m.arch == "probe"
    assert {"mean", "std"} <= set(dict(m.named_buffers()))
    cfg = m.config()
    assert cfg["mean"] == [0.1, 0.2, 0.3] and cfg["input_size"] == [64, 64]
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        m(torch.rand(3, 8, 8))


def test_wrapper_channels_last_and_autocast_cpu():
    m = create_model("tiny_cnn").eval()
    x = torch.rand(2, 3, 40, 40)
    ref = m(x)
    m_cl = m.to(memory_format=torch.channels_last)
    out = m_cl(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(out, ref, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
    assert out.shape == (2, 5) and torch.isfinite(out.float()).all()
    # gradients flow to the [0, 1] input (attacks need this)
    xg = x.clone().requires_grad_(True)
    m(xg).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0


def test_create_model_wrapper_kwargs_and_builder_kwargs():
    m = create_model("tiny_cnn", num_classes=3, input_size=(96, 128), preprocessing="none",
                     label_names=["a", "b", "c"], drop_rate=0.0, meta={"x": 1})
    assert m.num_classes == 3 and m.input_size == (96, 128) and m.preprocessing == "none"
    assert m.label_names == ("a", "b", "c") and m.meta == {"x": 1}
    assert m.backbone.drop.p == 0.0


def test_unknown_architecture_names_close_matches():
    with pytest.raises(RBFError, match=r"unknown architecture 'resnet19'.*did you mean.*resnet18"):
        create_model("resnet19")
    with pytest.raises(RBFError, match="unknown architecture"):
        get_spec("zzzz_not_a_net")


def test_timm_names_pass_through():
    spec = get_spec("test_resnet")
    assert spec.source == "timm"
    m = create_model("test_resnet").eval()
    assert m.arch == "test_resnet" and m(torch.rand(1, 3, 32, 32)).shape == (1, 5)
    assert "test_resnet" not in REGISTRY  # listed only when registered


def test_register_custom_architecture_by_decorator_and_plain_factory():
    try:
        @register_model("unit_test_net", input_size=48, classifier="fc")
        def unit_test_net(num_classes=5, **kw):
            """A unit-test network."""
            return _Flat(num_classes)

        with pytest.raises(ValueError, match="already registered"):
            register_model("unit_test_net")(unit_test_net)
        m = create_model("unit_test_net")
        assert m.input_size == (48, 48) and m(torch.rand(2, 3, 4, 4)).shape == (2, 5)
        assert describe("unit_test_*")[0]["description"] == "A unit-test network."

        REGISTRY.register(lambda num_classes=5, **kw: _Flat(num_classes), name="unit_test_plain",
                          input_size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        m = create_model("unit_test_plain")
        assert m.input_size == (32, 32) and m.mean.flatten().tolist() == [0.5, 0.5, 0.5]
    finally:
        REGISTRY.unregister("unit_test_net")
        REGISTRY.unregister("unit_test_plain")


class _Flat(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.fc = nn.Linear(3, num_classes)

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))


def test_entry_point_plugins(monkeypatch):
    """Plugins: an entry point naming a ModelSpec object, and one naming a function that
    registers through the decorator."""
    from importlib import metadata

    def register_more():
        register_model("plugin_net2", input_size=32, classifier="fc")(
            lambda num_classes=5, **kw: _Flat(num_classes))

    class EP:
        dist = None

        def __init__(self, name, target):
            self.name, self.value, self.target = name, "x:y", target

        def load(self):
            return self.target

    spec = ModelSpec("plugin_net", lambda num_classes=5, **kw: _Flat(num_classes),
                     input_size=(64, 64), classifier="fc")
    eps = [EP("plugin_net", spec), EP("more", register_more)]
    import robustbench_fundus.registry as reg
    monkeypatch.setattr(reg.metadata, "entry_points",
                        lambda group=None: eps if group == "robustbench_fundus.models" else [])
    REGISTRY.reload_plugins()
    try:
        assert {"plugin_net", "plugin_net2"} <= set(REGISTRY.names("plugin_*"))
        assert REGISTRY.entry("plugin_net").source.startswith("plugin:")
        assert get_spec("plugin_net2").source.startswith("plugin:")
        assert create_model("plugin_net")(torch.rand(1, 3, 8, 8)).shape == (1, 5)
        assert create_model("plugin_net2").input_size == (32, 32)
    finally:
        REGISTRY.unregister("plugin_net")
        REGISTRY.unregister("plugin_net2")
        monkeypatch.setattr(reg.metadata, "entry_points", metadata.entry_points)
        REGISTRY.reload_plugins()


def test_rbf_list_models(capsys):
    assert cli.main(["list", "models"]) == 0
    out = capsys.readouterr().out
    assert "inception_v3" in out and "299x299" in out and "tiny_cnn" in out
    assert cli.main(["list", "models", "efficientnet*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [f"efficientnet_b{i}" for i in range(4)]
