"""Checkpoint formats (round trips), safety, error messages and `rbf inspect`."""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from robustbench_fundus import cli
from robustbench_fundus.errors import CheckpointError, RBFError
from robustbench_fundus.models import (FundusClassifier, create_model, file_sha256,
                                       inspect_checkpoint, load_model, read_checkpoint,
                                       save_checkpoint, weights_sha256)

X = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))

# torch.jit.script/load warn that TorchScript is deprecated; the format is still read.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:FutureWarning")


@pytest.fixture(scope="module")
def tiny() -> FundusClassifier:
    m = create_model("tiny_cnn").eval()
    # non-trivial BN statistics so a wrong load would show in the outputs
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    return m


def _same(model: FundusClassifier, ref: FundusClassifier) -> None:
    assert isinstance(model, FundusClassifier)
    assert not model.training
    with torch.no_grad():
        assert torch.allclose(model(X), ref(X), atol=1e-5)


# -- writers, one per format ---------------------------------------------------------------------
def _w_rbf(m, p):
    save_checkpoint(m, p, recipe={"epochs": 2})


def _w_safetensors(m, p):
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in m.backbone.state_dict().items()}, str(p))


def _w_state_dict(m, p):
    torch.save(m.backbone.state_dict(), p)


def _w_legacy(m, p):
    torch.save(m.backbone.state_dict(), p, _use_new_zipfile_serialization=False)


def _w_fp16(m, p):
    torch.save({k: v.half() if v.is_floating_point() else v
                for k, v in m.backbone.state_dict().items()}, p)


def _w_dataparallel(m, p):
    # DataParallel moves the module it wraps to cuda:0 when a GPU is present: wrap a copy
    dp = nn.DataParallel(copy.deepcopy(m.backbone))
    torch.save({"model_state_dict": dp.state_dict(), "epoch": 3}, p)


def _w_compiled(m, p):
    torch.save(torch.compile(m.backbone).state_dict(), p)  # no compilation until called


def _w_wrapper_state(m, p):
    torch.save(m.state_dict(), p)  # backbone.* + mean/std


def _w_torchscript(m, p):
    torch.jit.script(m.backbone).save(str(p))


def _container(key):
    def w(m, p):
        torch.save({key: m.backbone.state_dict(), "optimizer": {"lr": 0.1}}, p)
    w.__name__ = f"_w_container_{key}"
    return w


def _w_timm_saver(m, p):
    from timm.utils import CheckpointSaver, ModelEmaV3
    backbone = m.backbone
    opt = torch.optim.SGD(backbone.parameters(), lr=0.1, momentum=0.9)
    args = argparse.Namespace(model="tiny_cnn", lr=0.1, epochs=2, sched="cosine")
    ema = ModelEmaV3(backbone, decay=0.9)
    d = Path(p).parent / "timm_out"
    d.mkdir(exist_ok=True)
    saver = CheckpointSaver(backbone, opt, args=args, model_ema=ema, checkpoint_dir=str(d),
                            recovery_dir=str(d), max_history=1)
    saver.save_checkpoint(epoch=1, metric=0.5)
    Path(p).write_bytes((d / "model_best.pth.tar").read_bytes())


WRITERS = {
    "rbf": ("rbf", _w_rbf), "safetensors": ("safetensors", _w_safetensors),
    "state_dict": ("torch", _w_state_dict), "legacy": ("torch", _w_legacy),
    "fp16": ("torch", _w_fp16), "dataparallel": ("torch", _w_dataparallel),
    "compiled": ("torch", _w_compiled), "wrapper_state": ("torch", _w_wrapper_state),
    "torchscript": ("torchscript", _w_torchscript), "timm_saver": ("timm", _w_timm_saver),
    **{f"container_{k}": ("torch", _container(k))
       for k in ("state_dict", "model", "model_state_dict", "state_dict_ema", "ema")},
}


@pytest.fixture(scope="module")
def ckpts(tiny, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ckpts")
    out = {}
    for name, (_, writer) in WRITERS.items():
        p = d / f"{name}.{'safetensors' if name in ('rbf', 'safetensors') else 'pt'}"
        writer(tiny, p)
        out[name] = p
    return out


@pytest.mark.parametrize("name", list(WRITERS))
def test_round_trip_each_format(name, ckpts, tiny):
    fmt, _ = WRITERS[name]
    raw = read_checkpoint(ckpts[name])
    assert raw.format == fmt
    model = load_model(ckpts[name])  # architecture from metadata / checkpoint / guess
    assert model.arch == "tiny_cnn"
    if name == "fp16":
        with torch.no_grad():
            assert torch.allclose(model(X), tiny(X), atol=2e-2)
    else:
        _same(model, tiny)
    assert model.meta["loaded_from"]["format"] == fmt
    assert model.meta["loaded_from"]["file_sha256"] == file_sha256(ckpts[name])


def test_round_trip_details(ckpts):
    assert read_checkpoint(ckpts["dataparallel"]).prefixes == ["module."]
    assert read_checkpoint(ckpts["compiled"]).prefixes == ["_orig_mod."]
    assert read_checkpoint(ckpts["dataparallel"]).container_key == "model_state_dict"
    raw = read_checkpoint(ckpts["timm_saver"])
    assert raw.arch == "tiny_cnn" and raw.container_key == "state_dict"
    assert raw.metadata["epoch"] == 1 and raw.metadata["args"]["lr"] == 0.1
    assert read_checkpoint(ckpts["timm_saver"], prefer_ema=True).container_key == "state_dict_ema"
    assert load_model(ckpts["timm_saver"]).meta["loaded_from"]["arch_source"] == "checkpoint"
    assert load_model(ckpts["state_dict"]).meta["loaded_from"]["arch_source"] == "guessed"


def test_own_format_carries_metadata(tiny, tmp_path):
    m = create_model("tiny_cnn", input_size=64, mean=(0.4, 0.4, 0.4), std=(0.2, 0.3, 0.4),
                     preprocessing="none")
    m.load_state_dict(tiny.state_dict() | {"mean": m.mean, "std": m.std})
    m.meta["data_fingerprint"] = "abc123"
    p = save_checkpoint(m, tmp_path / "m.safetensors", recipe={"loss": "ce", "pgd_eps": 2.5 / 255},
                        epochs=4, val_metrics={"accuracy": 0.8, "kappa": 0.7})
    loaded = load_model(p)
    assert loaded.input_size == (64, 64) and loaded.preprocessing == "none"
    assert torch.allclose(loaded.mean.flatten(), torch.tensor([0.4] * 3))
    assert torch.allclose(loaded.std.flatten(), torch.tensor([0.2, 0.3, 0.4]))
    assert loaded.meta["recipe"]["loss"] == "ce" and loaded.meta["epochs"] == 4
    assert loaded.meta["val_metrics"]["kappa"] == 0.7
    assert loaded.meta["data_fingerprint"] == "abc123"
    info = inspect_checkpoint(p)
    assert info["weights_sha256"] == weights_sha256(m.backbone.state_dict())
    assert info["file_sha256"] == file_sha256(p)
    # re-saving a loaded model keeps its provenance
    p2 = save_checkpoint(loaded, tmp_path / "m2.safetensors")
    assert load_model(p2).meta["recipe"]["pgd_eps"] == pytest.approx(2.5 / 255)
    # the file is plain safetensors for any other tool
    from safetensors.torch import load_file
    assert set(load_file(str(p))) == set(tiny.backbone.state_dict())


def test_own_format_detects_tampered_weights(tiny, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    p = save_checkpoint(tiny, tmp_path / "a.safetensors")
    with safe_open(str(p), "pt") as f:
        header = f.metadata()
    sd = load_file(str(p))
    sd["head.bias"] = sd["head.bias"] + 1
    save_file(sd, str(p), metadata=header)
    with pytest.raises(CheckpointError, match="do not match the sha256"):
        load_model(p)


def test_gpu_checkpoint_loads_on_cpu(tiny, tmp_path):
    """A file whose tensors are tagged cuda:0 (as if saved on a GPU) loads on a CPU machine."""
    import torch.serialization as ser

    def tagger(obj):
        return "cuda:0" if getattr(obj, "device", torch.device("meta")).type == "cpu" else None

    def deserializer(obj, location):
        return None

    ser.register_package(1, tagger, deserializer)
    try:
        torch.save({"state_dict": tiny.backbone.state_dict()}, tmp_path / "gpu.pt")
    finally:
        ser._package_registry[:] = [e for e in ser._package_registry if e[1] is not tagger]
    assert b"cuda:0" in (tmp_path / "gpu.pt").read_bytes()
    model = load_model(tmp_path / "gpu.pt", device="cpu")
    assert model.device.type == "cpu"
    _same(model, tiny)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_round_trip_both_ways(tiny, tmp_path):
    gpu = create_model("tiny_cnn").cuda().eval()
    gpu.load_state_dict(tiny.state_dict())
    torch.save(gpu.backbone.state_dict(), tmp_path / "g.pt")
    save_checkpoint(gpu, tmp_path / "g.safetensors")
    for p in ("g.pt", "g.safetensors"):
        _same(load_model(tmp_path / p, device="cpu"), tiny)
    torch.save(tiny.backbone.state_dict(), tmp_path / "c.pt")
    on_gpu = load_model(tmp_path / "c.pt", device="cuda")
    assert on_gpu.device.type == "cuda"
    xg = X.cuda().contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        out = on_gpu.to(memory_format=torch.channels_last)(xg)
    assert torch.allclose(out.float().cpu(), tiny(X), atol=5e-2)


# -- safety -----------------------------------------------------------------------------------------
class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_malicious_pickle_is_refused_and_runs_nothing(tiny, tmp_path, capsys):
    target = tmp_path / "pwned.txt"
    p = tmp_path / "evil.pt"
    torch.save({"state_dict": tiny.backbone.state_dict(), "x": _Evil(str(target))}, p)
    assert not target.exists()
    with pytest.raises(CheckpointError, match=r"arbitrary unpickling.*io\.open.*"
                                              r"--trust-checkpoint"):
        load_model(p)
    assert not target.exists()
    info = inspect_checkpoint(p)
    assert info["safe"] is False and not info["loads"] and "--trust-checkpoint" in info["error"]
    assert cli.main(["inspect", str(p)]) == 1
    assert "NO: needs arbitrary unpickling" in capsys.readouterr().out
    assert not target.exists()
    # the test can fail: trusting the file really runs its code
    load_model(p, trust_checkpoint=True, arch="tiny_cnn")
    assert target.exists()


def test_whole_pickled_model_needs_trust(tiny, tmp_path):
    p = tmp_path / "whole.pt"
    torch.save(tiny.backbone, p)
    with pytest.raises(CheckpointError, match=r"refused to load: it needs arbitrary unpickling "
                                              r"\(it contains the Python object .*TinyCNN"):
        load_model(p)
    model = load_model(p, trust_checkpoint=True)
    assert model.arch == "tiny_cnn"
    _same(model, tiny)
    assert inspect_checkpoint(p, trust_checkpoint=True)["safe"] is False


# -- errors -----------------------------------------------------------------------------------------
def test_error_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*nope\.pt"):
        load_model(tmp_path / "nope.pt")


@pytest.mark.parametrize("content,pattern", [
    (b"<!DOCTYPE html><html><body>Sign in</body></html>", "HTML/XML page"),
    (b"", "is empty"),
    (b"hello, this is just some text\n" * 5, "is not a checkpoint: it is a text file"),
    (bytes(range(256)) * 4, "unknown binary format"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n", "Git LFS pointer"),
])
def test_error_not_a_checkpoint(tmp_path, content, pattern):
    p = tmp_path / "model.pt"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match=pattern):
        load_model(p)


def test_error_truncated_files(ckpts, tmp_path):
    for name in ("state_dict", "rbf"):
        data = ckpts[name].read_bytes()
        p = tmp_path / f"trunc_{ckpts[name].name}"
        p.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match="damaged|truncated"):
            load_model(p)


def test_error_unknown_architecture(ckpts):
    with pytest.raises(RBFError, match=r"unknown architecture 'tiny_cn'.*did you mean.*tiny_cnn"):
        load_model(ckpts["state_dict"], arch="tiny_cn")


def test_a_head_that_does_not_fit_the_width(tmp_path, capsys):
    m = create_model("tiny_cnn", num_classes=1000)
    torch.save(m.backbone.state_dict(), tmp_path / "h.pt")
    # the weights load (a foreign file declares no head) ...
    assert load_model(tmp_path / "h.pt").num_classes == 1000
    assert load_model(tmp_path / "h.pt").head is None
    # ... but no head reads 1000 outputs
    with pytest.raises(CheckpointError, match="outputs 1000 values per image, the classification "
                                              "head needs 5; no head fits"):
        load_model(tmp_path / "h.pt", head="classification")
    assert cli.main(["inspect", str(tmp_path / "h.pt")]) == 1
    out = capsys.readouterr().out
    assert _line(out, "head").startswith("none fits 1000 outputs") and "no head fits" in out
    # two outputs: a binary head fits, the classification head does not
    save_checkpoint(create_model("tiny_cnn", num_classes=2), tmp_path / "h2.safetensors")
    with pytest.raises(CheckpointError, match="classification head needs 5; heads that fit: "
                                              "binary"):
        load_model(tmp_path / "h2.safetensors", head="classification")
    assert load_model(tmp_path / "h2.safetensors", head="binary").head == "binary"


def test_torchvision_resnet18_is_recognised_and_head_reported(tmp_path, capsys):
    import torchvision
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "tv.pth")
    with pytest.raises(CheckpointError, match="outputs 1000 values per image, the classification "
                                              "head needs 5"):
        load_model(tmp_path / "tv.pth", head="classification")
    assert cli.main(["inspect", str(tmp_path / "tv.pth")]) == 1
    out = capsys.readouterr().out
    assert "resnet18 (guessed)" in out and _line(out, "outputs") == "1000"
    # a torchvision resnet18 with a 5-class head loads into timm's resnet18
    tv = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    torch.save(tv.state_dict(), tmp_path / "tv5.pth")
    model = load_model(tmp_path / "tv5.pth")
    assert model.arch == "resnet18" and model.input_size == (224, 224)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), tv(model.normalize(x)), atol=1e-4)


def test_error_missing_and_unexpected_keys(tiny, tmp_path):
    sd = dict(tiny.backbone.state_dict())
    del sd["stem.0.weight"], sd["stem.1.weight"]
    torch.save(sd, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"2 missing keys \(stem\.0\.weight, stem\.1\.weight\)"):
        load_model(tmp_path / "missing.pt", arch="tiny_cnn")
    sd = dict(tiny.backbone.state_dict()) | {f"extra.{i}": torch.zeros(1) for i in range(5)}
    torch.save(sd, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"5 unexpected keys \(extra\.0, extra\.1, extra\.2, "
                                              r"\.\.\. \(\+2 more\)\)"):
        load_model(tmp_path / "extra.pt", arch="tiny_cnn")
    with pytest.raises(CheckpointError, match=r"do not fit architecture 'resnet18'.*missing keys"):
        load_model(tmp_path / "extra.pt", arch="resnet18")


def test_error_cannot_guess_architecture(tmp_path):
    torch.save({"a.weight": torch.zeros(3, 3)}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="cannot tell which architecture.*pass --arch"):
        load_model(tmp_path / "odd.pt")


@pytest.mark.parametrize("value,pattern", [(float("nan"), r"1 NaN, 0 inf"),
                                           (float("inf"), r"0 NaN, 1 inf")])
def test_error_non_finite_weights(tiny, tmp_path, value, pattern):
    sd = {k: v.clone() for k, v in tiny.backbone.state_dict().items()}
    sd["head.weight"][0, 0] = value
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=f"non-finite weights in 1 tensors: head.weight "
                                              f"\\({pattern}\\)"):
        load_model(tmp_path / "bad.pt")


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["inspect", str(tmp_path / "none.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rbf: error: checkpoint not found") and "\n" not in err
    (tmp_path / "page.pt").write_text("<html>404</html>")
    assert cli.main(["inspect", str(tmp_path / "page.pt")]) == 2
    assert "HTML" in capsys.readouterr().err


# -- rbf inspect ------------------------------------------------------------------------------------
def _line(out: str, key: str) -> str:
    for line in out.splitlines():
        if line.startswith(key + " "):
            return line[len(key):].strip()
    raise AssertionError(f"no {key!r} line in:\n{out}")


@pytest.mark.parametrize("name", list(WRITERS))
def test_rbf_inspect_each_format(name, ckpts, capsys):
    assert cli.main(["inspect", str(ckpts[name])]) == 0
    out = capsys.readouterr().out
    assert _line(out, "architecture").startswith("tiny_cnn")
    assert _line(out, "outputs") == "5"
    assert _line(out, "sha256") == file_sha256(ckpts[name])
    assert _line(out, "loads") == "yes" and _line(out, "safe").startswith("yes")
    assert cli.main(["inspect", str(ckpts[name]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["arch"] == "tiny_cnn" and info["num_classes"] == 5
    assert info["num_params"] == sum(p.numel() for p in create_model("tiny_cnn").parameters())
    assert info["input_size"] == [224, 224] and info["format"] == WRITERS[name][0]


def test_rbf_inspect_timm_saver_resnet18(tmp_path, capsys):
    from timm.utils import CheckpointSaver
    m = create_model("resnet18")
    opt = torch.optim.SGD(m.backbone.parameters(), lr=0.1)
    saver = CheckpointSaver(m.backbone, opt, args=argparse.Namespace(model="resnet18"),
                            checkpoint_dir=str(tmp_path), recovery_dir=str(tmp_path))
    saver.save_checkpoint(epoch=0, metric=1.0)
    p = tmp_path / "model_best.pth.tar"
    assert cli.main(["inspect", str(p)]) == 0
    out = capsys.readouterr().out
    assert _line(out, "architecture") == "resnet18 (checkpoint)"
    assert _line(out, "outputs") == "5" and _line(out, "format") == "timm CheckpointSaver"
    assert _line(out, "parameters") == f"{sum(p.numel() for p in m.parameters()):,}"
    # --arch overrides; a wrong one is reported, not crashed on
    assert cli.main(["inspect", str(p), "--arch", "tiny_cnn"]) == 1
    assert "do not fit architecture 'tiny_cnn'" in capsys.readouterr().out


def test_trusted_pickle_with_unimportable_class(tmp_path, monkeypatch):
    import sys
    import types
    mod = types.ModuleType("rbf_gone_module")

    class Gone(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 5)

    Gone.__qualname__ = "Gone"
    Gone.__module__ = "rbf_gone_module"
    mod.Gone = Gone
    monkeypatch.setitem(sys.modules, "rbf_gone_module", mod)
    torch.save(Gone(), tmp_path / "gone.pt")
    monkeypatch.delitem(sys.modules, "rbf_gone_module")
    with pytest.raises(CheckpointError, match="refused to load.*rbf_gone_module.Gone"):
        load_model(tmp_path / "gone.pt")
    with pytest.raises(CheckpointError, match="pickled model whose code is not importable here"):
        load_model(tmp_path / "gone.pt", trust_checkpoint=True)
