"""The stage contract: resolve_preprocessing, Preprocessing.model_input, provenance, errors."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from _datastage_helpers import disc_image
from robustbench_fundus.errors import RBFError
from robustbench_fundus.models import create_model
from robustbench_fundus.preprocessing import (DEFAULT_ENHANCEMENT, ENHANCEMENTS, Geometry,
                                              Preprocessing, crop_resize, estimate_geometry,
                                              graham, resolve_preprocessing)


def _crops(n: int = 3, size: int = 48) -> torch.Tensor:
    """(n,3,size,size) float working crops of drawn discs cut at top and bottom, 8-bit levels."""
    photos = torch.stack([disc_image(72, 100, 49.5 + i, 35.5, 46.0 - 2 * i, seed=i)
                          for i in range(n)]).float() / 255
    x = crop_resize(photos, estimate_geometry(photos), size)
    return torch.round(x * 255) / 255


class Bare(nn.Module):
    """A bare classifier: no preprocessing, no input size declared."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 5)

    def forward(self, x):
        return self.head(x.mean(dim=(2, 3)))


# -- resolve_preprocessing ---------------------------------------------------------------------
def test_resolve_fundus_classifier_declares_its_own():
    m = create_model("tiny_cnn", input_size=(40, 56), preprocessing="none")
    p = resolve_preprocessing(m)
    assert (p.enhancement, p.input_size, p.source) == ("none", (40, 56), "model")
    g = resolve_preprocessing(create_model("tiny_cnn", input_size=32))
    assert (g.enhancement, g.input_size, g.source) == ("graham", (32, 32), "model")
    # looked through a DataParallel wrapper
    assert resolve_preprocessing(nn.DataParallel(m)).enhancement == "none"


def test_resolve_bare_module_gets_the_library_default():
    p = resolve_preprocessing(Bare())
    assert DEFAULT_ENHANCEMENT == "graham"
    assert (p.enhancement, p.input_size, p.source) == ("graham", None, "default")
    b = Bare()
    b.input_size = 64  # an int input size is square
    assert resolve_preprocessing(b).input_size == (64, 64)


def test_resolve_override_string_and_object_are_the_callers():
    m = create_model("tiny_cnn", input_size=32)  # declares graham
    p = resolve_preprocessing(m, "None")
    assert (p.enhancement, p.input_size, p.source) == ("none", (32, 32), "caller")
    given_ = Preprocessing("none", margin=1.2)
    q = resolve_preprocessing(m, given_)
    assert (q.enhancement, q.input_size, q.margin, q.source) == ("none", (32, 32), 1.2, "caller")
    r = resolve_preprocessing(Bare(), Preprocessing("graham", input_size=(20, 24)))
    assert (r.input_size, r.source) == ((20, 24), "caller")


@pytest.mark.parametrize("call, needle", [
    (lambda: resolve_preprocessing(Bare(), "clahe"), "preprocessing='clahe'"),
    (lambda: resolve_preprocessing(Bare(), 3), "preprocessing=3"),
    (lambda: Preprocessing("CLAHE"), "enhancement='CLAHE'"),
    (lambda: Preprocessing(input_size=(0, 4)), "input_size"),
    (lambda: Preprocessing(margin=0), "margin"),
    (lambda: Preprocessing(source="elsewhere"), "source"),
    (lambda: Preprocessing().working_crop(torch.zeros(4, 4), 8), "photo"),
    (lambda: Preprocessing().working_crop(torch.zeros(3, 8, 8), 0), "size"),
    (lambda: Preprocessing().model_input(_crops(2), Preprocessing().geometry(_crops(3))), "geom"),
    (lambda: Preprocessing().model_input(_crops(1), None), "Geometry"),
])
def test_bad_input_gives_one_line_errors(call, needle):
    with pytest.raises(RBFError) as info:
        call()
    msg = str(info.value)
    assert needle in msg and "\n" not in msg


def test_model_declaring_an_unknown_name_is_one_line_error():
    b = Bare()
    b.preprocessing = "clahe"
    with pytest.raises(RBFError, match=r"model\.preprocessing='clahe'.*'graham' or 'none'") as info:
        resolve_preprocessing(b)
    assert "\n" not in str(info.value)
    b.preprocessing = "Graham "  # case and spaces are forgiven
    assert resolve_preprocessing(b).enhancement == "graham"


# -- model_input -------------------------------------------------------------------------------
def test_graham_model_input_is_the_old_path_bit_for_bit():
    x = _crops(3, 48)
    geom = estimate_geometry(x)
    assert torch.equal(Preprocessing("graham").model_input(x, geom), graham(x, geom))
    old = F.interpolate(graham(x, geom), size=(40, 40), mode="bilinear", align_corners=False,
                        antialias=True).clamp_(0, 1)
    assert torch.equal(Preprocessing("graham", input_size=40).model_input(x, geom), old)
    # same size: no resize at all
    assert torch.equal(Preprocessing("graham", input_size=48).model_input(x, geom), graham(x, geom))
    # uint8 working crops are read as /255
    u = (x * 255).round().to(torch.uint8)
    assert torch.equal(Preprocessing().model_input(u, geom), graham(x, geom))


def test_none_model_input_masks_black():
    x = _crops(2, 48)
    x[:, :, :3, :] = 0.3  # light outside the disc (e.g. a frame cut): must not reach the model
    geom = estimate_geometry(_crops(2, 48))
    y = Preprocessing("none").model_input(x, geom)
    inside = geom.mask.bool().expand_as(x)
    assert torch.equal(y[inside], x[inside])
    assert torch.all(y[~inside] == 0) and (x[~inside] > 0).any()


@pytest.mark.parametrize("enh", ENHANCEMENTS)
def test_model_input_batch_size_independent_and_deterministic(enh):
    x = _crops(4, 48)
    geom = estimate_geometry(x)
    pre = Preprocessing(enh, input_size=36)
    whole = pre.model_input(x, geom)
    parts = torch.cat([pre.model_input(x[i:i + 1], geom[i]) for i in range(4)])
    # one blur kernel length per batch (the widest sigma): float-level differences at most
    torch.testing.assert_close(whole, parts, atol=1e-6, rtol=0)
    assert torch.equal(whole, pre.model_input(x, geom))  # deterministic on CPU
    if enh == "none":
        assert torch.equal(whole, parts)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(12, 40), w=st.integers(12, 40), fx=st.floats(0.3, 0.7),
       fy=st.floats(0.3, 0.7), fr=st.floats(0.2, 0.8), seed=st.integers(0, 10_000),
       noise=st.booleans(), out_h=st.integers(6, 48), out_w=st.integers(6, 48),
       resize=st.booleans(), enh=st.sampled_from(ENHANCEMENTS))
def test_model_input_properties(h, w, fx, fy, fr, seed, noise, out_h, out_w, resize, enh):
    """Any small image: output in [0,1], shape = input_size, constant outside the fundus mask."""
    if noise:
        x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(seed))
    else:
        x = torch.stack([disc_image(h, w, fx * w, fy * h, fr * min(h, w) + 2, seed=seed + i)
                         for i in range(2)]).float() / 255
    size = (out_h, out_w) if resize else None
    pre = Preprocessing(enh, input_size=size)
    geom = pre.geometry(x)
    y = pre.model_input(x, geom)
    assert y.shape == (2, 3, *(size or (h, w)))
    assert y.dtype == torch.float32 and y.min() >= 0 and y.max() <= 1
    fill = 0.5 if enh == "graham" else 0.0
    m = geom.mask.float()
    if size is not None and size != (h, w):  # where no inside pixel reaches an output pixel
        m = F.interpolate(m, size=size, mode="bilinear", align_corners=False, antialias=True)
    outside = (m == 0).expand_as(y)
    assert torch.allclose(y[outside], torch.full_like(y[outside], fill), atol=1e-6)


def test_geometry_is_of_the_clean_crop_and_passes_devices():
    x = _crops(2, 32)
    g = Preprocessing().geometry(x)
    assert isinstance(g, Geometry) and g.mask.shape == (2, 1, 32, 32)
    assert torch.equal(g.radius, estimate_geometry(x).radius)


# -- provenance --------------------------------------------------------------------------------
def test_to_dict_and_identity():
    p = Preprocessing("graham", input_size=224, source="model")
    d = p.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["enhancement"] == "graham" and d["input_size"] == [224, 224] and d["margin"] == 1.0
    assert d["rim_fraction"] == 0.9 and d["sigma_divisor"] == 30.0 and d["source"] == "model"
    assert "grey 0.5" in d["mask"] and d["resize"]["mode"] == "bilinear"
    assert d["resize"]["antialias"] is True
    ident = p.identity()
    assert "source" not in ident and ident == {k: v for k, v in d.items() if k != "source"}
    # the source is provenance only: same identity, equal objects
    q = Preprocessing("graham", input_size=(224, 224), source="caller")
    assert q == p and q.identity() == ident and hash(q) == hash(p)
    n = Preprocessing("none").to_dict()
    assert n["rim_fraction"] is None and "black 0" in n["mask"] and n["input_size"] is None
    assert Preprocessing("none").identity() != Preprocessing("graham").identity()
    assert Preprocessing(margin=1.1).identity()["margin"] == 1.1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_model_input_on_gpu_matches_cpu():
    x = _crops(3, 48)
    for enh in ENHANCEMENTS:
        pre = Preprocessing(enh, input_size=40)
        cpu = pre.model_input(x, pre.geometry(x))
        xg = x.cuda()
        gpu = pre.model_input(xg, pre.geometry(xg))
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)
