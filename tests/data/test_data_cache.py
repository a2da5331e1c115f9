"""On-disk cache of working-size crops: hits skip decoding, keyed by content and size, atomic."""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import robustbench_fundus.data.cache as cache_mod
from _datastage_helpers import disc_image, save_image
from robustbench_fundus.data import load_working
from robustbench_fundus.data.cache import (cache_format, default_cache_dir, load_entry,
                                          load_working_ex)
from robustbench_fundus.errors import DataError
from robustbench_fundus.preprocessing import Geometry, estimate_geometry


def _entries(root):
    """Cache entries under ``root`` (in the configured format, ``npy`` by default)."""
    return list(root.rglob(f"*.{cache_format()}"))


def _read_entry(path) -> np.ndarray:
    """The crop of an entry, (3,S,S) uint8."""
    if path.suffix == ".npy":
        return np.load(path)["crop"]
    return np.asarray(Image.open(path)).transpose(2, 0, 1)


@pytest.fixture
def photo(tmp_path):
    return save_image(disc_image(64, 96, 47.5, 31.5, 40.0, seed=3), tmp_path / "src" / "a.jpeg",
                      quality=95)


def _no_decode(*a, **k):
    raise AssertionError("decoded although cached")


def test_second_pass_does_not_decode(tmp_path, photo, monkeypatch):
    cdir = tmp_path / "cache"
    a, hit = load_working_ex(photo, 48, cache_dir=cdir)
    assert not hit and a.dtype == torch.uint8 and a.shape == (3, 48, 48)
    files = _entries(cdir)
    assert len(files) == 1 and _read_entry(files[0]).dtype == np.uint8
    assert torch.equal(torch.from_numpy(_read_entry(files[0]).copy()), a)
    monkeypatch.setattr(cache_mod, "decode_bytes", _no_decode)
    b, hit = load_working_ex(photo, 48, cache_dir=cdir)
    assert hit and torch.equal(a, b)
    # keyed by content: a copy under another name hits too
    other = tmp_path / "elsewhere" / "renamed.jpeg"
    other.parent.mkdir()
    shutil.copy(photo, other)
    assert load_working_ex(other, 48, cache_dir=cdir)[1]


def test_keyed_by_size_and_content(tmp_path, photo):
    cdir = tmp_path / "cache"
    load_working(photo, 48, cache_dir=cdir)
    assert not load_working_ex(photo, 32, cache_dir=cdir)[1]          # other size: miss
    save_image(disc_image(64, 96, 47.5, 31.5, 30.0, seed=4), photo, quality=95)  # edited file
    c, hit = load_working_ex(photo, 48, cache_dir=cdir)
    assert not hit
    assert len(_entries(cdir)) == 3
    assert not list(cdir.rglob(".tmp-*"))  # no temporary files left behind


def test_cached_equals_uncached(tmp_path, photo):
    a = load_working(photo, 40, cache_dir=False)
    b = load_working(photo, 40, cache_dir=tmp_path / "c")
    c = load_working(photo, 40, cache_dir=tmp_path / "c")
    assert torch.equal(a, b) and torch.equal(b, c)
    assert not (tmp_path / "c").exists() or len(_entries(tmp_path / "c")) == 1


def test_damaged_entry_is_rewritten(tmp_path, photo):
    cdir = tmp_path / "cache"
    a = load_working(photo, 48, cache_dir=cdir)
    (f,) = _entries(cdir)
    f.write_bytes(f.read_bytes()[:50])  # half-written file from an old crash
    b, hit = load_working_ex(photo, 48, cache_dir=cdir)
    assert not hit and torch.equal(a, b)
    assert load_working_ex(photo, 48, cache_dir=cdir)[1]


def test_atomic_write_leaves_no_partial_file(tmp_path, photo, monkeypatch, caplog):
    cdir = tmp_path / "cache"

    real_fdopen = cache_mod.os.fdopen

    class Full:
        def __init__(self, fd, mode):
            self.fh = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[:20])
            raise OSError("disk full")

    monkeypatch.setattr(cache_mod.os, "fdopen", Full)
    monkeypatch.setattr(cache_mod, "_unwritable", set())
    with caplog.at_level(logging.WARNING, logger=cache_mod.__name__):
        out = load_working(photo, 48, cache_dir=cdir)  # a failing cache never stops loading
        load_working(photo, 40, cache_dir=cdir)
    assert out.shape == (3, 48, 48)
    assert not [p for p in cdir.rglob("*") if p.is_file()]
    # said once per cache folder, on one line naming the folder and what to do
    (rec,) = [r for r in caplog.records if r.name == cache_mod.__name__]
    msg = rec.getMessage()
    assert str(cdir) in msg and "disk full" in msg and "--cache-dir" in msg and "\n" not in msg


def test_default_dir_from_env(tmp_path, monkeypatch, photo):
    monkeypatch.setenv("RBF_CACHE_DIR", str(tmp_path / "envcache"))
    assert default_cache_dir() == tmp_path / "envcache"
    load_working(photo, 32)
    assert _entries(tmp_path / "envcache")
    monkeypatch.delenv("RBF_CACHE_DIR")
    assert default_cache_dir().name == "robustbench_fundus"


def test_unreadable_raises_data_error(tmp_path):
    p = tmp_path / "bad.jpeg"
    p.write_bytes(b"\xff\xd8\xff\xe0 garbage")
    with pytest.raises(DataError, match="bad.jpeg"):
        load_working(p, 32, cache_dir=tmp_path / "c")


@pytest.mark.parametrize("fmt", cache_mod.CACHE_FORMATS)
def test_entry_carries_the_crops_geometry_bit_for_bit(tmp_path, photo, monkeypatch, fmt):
    """The geometry stored with a crop rebuilds exactly what estimate_geometry finds on the
    crop (as the benchmark feeds it: crop / 255), on a miss and on a hit, in both formats."""
    monkeypatch.setenv("RBF_CACHE_FORMAT", fmt)
    cdir = tmp_path / "cache"
    crop, params, hit = load_entry(photo, 48, cache_dir=cdir)
    assert not hit and params.dtype == torch.float32 and params.shape == (7,)
    monkeypatch.setattr(cache_mod, "decode_bytes", _no_decode)
    crop2, params2, hit = load_entry(photo, 48, cache_dir=cdir)
    assert hit and torch.equal(crop, crop2) and torch.equal(params, params2)
    want = estimate_geometry(crop.unsqueeze(0).float() / 255.0)
    got = Geometry.from_params(params.view(1, -1), 48, 48)
    assert torch.equal(got.mask, want.mask) and torch.equal(got.center, want.center)
    assert torch.equal(got.radius, want.radius) and torch.equal(got.extent, want.extent)


def test_entry_of_the_earlier_layout_is_a_hit_and_is_upgraded(tmp_path, photo, monkeypatch):
    """A bare (3,S,S) array (the layout before geometry was stored) still hits without
    decoding; its geometry is estimated and the entry rewritten with it."""
    monkeypatch.setenv("RBF_CACHE_FORMAT", "npy")
    cdir = tmp_path / "cache"
    crop, params, _ = load_entry(photo, 48, cache_dir=cdir)
    (f,) = _entries(cdir)
    np.save(f, crop.numpy())                       # the earlier layout
    monkeypatch.setattr(cache_mod, "decode_bytes", _no_decode)
    crop2, params2, hit = load_entry(photo, 48, cache_dir=cdir)
    assert hit and torch.equal(crop, crop2) and torch.equal(params, params2)
    assert np.load(f).dtype.names == ("crop", "geometry")


@pytest.mark.parametrize("bad", [[float("nan")] * 7, [24, 24, 0, 0, 47, 0, 47],
                                 [24, 24, 24, 30, 10, 0, 47], [24, 24, 24, 0, 48, 0, 47],
                                 [24, 24, 24, 0.5, 47, 0, 47]])
def test_implausible_stored_geometry_is_estimated_again(tmp_path, photo, monkeypatch, bad):
    monkeypatch.setenv("RBF_CACHE_FORMAT", "npy")
    cdir = tmp_path / "cache"
    crop, params, _ = load_entry(photo, 48, cache_dir=cdir)
    (f,) = _entries(cdir)
    rec = np.load(f)
    rec["geometry"] = np.array(bad, dtype=np.float32)
    np.save(f, rec)
    monkeypatch.setattr(cache_mod, "decode_bytes", _no_decode)
    _, params2, hit = load_entry(photo, 48, cache_dir=cdir)
    assert hit and torch.equal(params, params2)
    assert torch.equal(torch.from_numpy(np.load(f)["geometry"].copy()), params)
