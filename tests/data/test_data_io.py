"""Decoding: modes are converted, broken files raise one-line DataErrors naming the file."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from _datastage_helpers import save_image, small_disc
from robustbench_fundus.data import check_image, load_image
from robustbench_fundus.errors import DataError


def _assert_one_line(exc: Exception, needle: str) -> None:
    msg = str(exc)
    assert "\n" not in msg and needle in msg, msg


def test_rgb_jpeg_and_png_roundtrip(tmp_path):
    img = small_disc(0)
    p = save_image(img, tmp_path / "a.png")
    out = load_image(p)
    assert out.dtype == torch.uint8 and out.shape == img.shape
    assert torch.equal(out, img)
    j = load_image(save_image(img, tmp_path / "a.jpeg", quality=95))
    assert j.shape == img.shape and (j.float() - img.float()).abs().mean() < 6


def test_grayscale_converted(tmp_path):
    g = np.arange(40 * 30, dtype=np.uint8).reshape(30, 40)
    p = tmp_path / "g.png"
    Image.fromarray(g, mode="L").save(p)
    out = load_image(p)
    assert out.shape == (3, 30, 40)
    assert torch.equal(out[0], torch.from_numpy(g)) and torch.equal(out[0], out[2])


def test_rgba_composited_on_black(tmp_path):
    a = np.zeros((20, 24, 4), dtype=np.uint8)
    a[..., :3] = 200
    a[:, :12, 3] = 255  # left opaque, right transparent
    p = tmp_path / "rgba.png"
    Image.fromarray(a, mode="RGBA").save(p)
    out = load_image(p)
    assert out.shape == (3, 20, 24)
    assert (out[:, :, :12] == 200).all() and (out[:, :, 12:] == 0).all()


def test_16bit_png_scaled(tmp_path):
    v = np.linspace(0, 65535, 32 * 16).reshape(16, 32).astype(np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(v).save(p)
    with Image.open(p) as im:
        assert im.mode.startswith("I")  # really stored as 16 bit
    out = load_image(p)
    assert out.dtype == torch.uint8 and out.shape == (3, 16, 32)
    assert out.max() == 255 and out.min() == 0
    expect = torch.from_numpy(np.rint(v / 257.0).astype(np.uint8))
    assert (out[1].int() - expect.int()).abs().max() <= 1


def test_palette_converted(tmp_path):
    img = Image.fromarray(small_disc(1).permute(1, 2, 0).numpy()).convert("P")
    p = tmp_path / "pal.png"
    img.save(p)
    assert load_image(p).shape == (3, 48, 56)


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.jpeg"
    p.write_bytes(b"")
    with pytest.raises(DataError) as ei:
        load_image(p)
    _assert_one_line(ei.value, "empty.jpeg")
    assert "0 bytes" in str(ei.value)
    assert check_image(p) is not None


def test_truncated_jpeg(tmp_path):
    p = save_image(small_disc(2, size=96), tmp_path / "full.jpeg", quality=95)
    data = p.read_bytes()
    t = tmp_path / "trunc.jpeg"
    t.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as ei:
        load_image(t)
    _assert_one_line(ei.value, "trunc.jpeg")
    assert "truncated" in str(ei.value)
    assert check_image(t) is not None and check_image(p) is None


def test_truncated_png(tmp_path):
    p = save_image(small_disc(3, size=96), tmp_path / "full.png")
    t = tmp_path / "trunc.png"
    t.write_bytes(p.read_bytes()[:300])
    with pytest.raises(DataError):
        load_image(t)
    assert check_image(t) is not None


def test_non_image_file(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not an image\n")
    with pytest.raises(DataError) as ei:
        load_image(p)
    _assert_one_line(ei.value, "notes.jpg")
    assert "not an image" in str(ei.value)
    assert "not an image" in check_image(p)


def test_missing_file(tmp_path):
    with pytest.raises(DataError) as ei:
        load_image(tmp_path / "nope.png")
    _assert_one_line(ei.value, "nope.png")
