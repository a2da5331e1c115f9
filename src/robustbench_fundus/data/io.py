"""Decoding one image file into an RGB ``uint8`` tensor ``(3,H,W)``.

Every mode Pillow can open is converted, not rejected: grayscale (``L``, ``I``, 16-bit ``I;16``)
is replicated to three channels with 16-bit values scaled to 8 bits, palette images are expanded,
and images with an alpha channel (``RGBA``, ``LA``, ``PA``) are composited onto black, which is
what the surround of a fundus photograph is. A file that cannot be decoded (zero bytes,
truncated, not an image at all) raises :class:`~robustbench_fundus.errors.DataError` whose
message names the file and the reason.

JPEGs can be decoded at 1/2, 1/4 or 1/8 scale in the DCT domain (Pillow's ``Image.draft``),
which is several times faster for big originals: ``reduction=`` asks for one scale,
:func:`draft_reduction` picks the largest one that keeps the short side at least the working
size. An image larger than Pillow's decompression-bomb limit is decoded with one line logged
under the ``robustbench_fundus`` logger instead of Pillow's warning (twice the limit: a
``DataError``).
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import threading
import warnings
from pathlib import Path
from typing import Iterator, Union

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

from ..errors import DataError

PathLike = Union[str, os.PathLike]

# File name endings that the readers treat as images.
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".tif", ".tiff", ".bmp", ".webp")

# Never accept truncated files silently (Pillow's global default, asserted here once).
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Decompression-bomb guard: fundus photographs are at most a few tens of megapixels.
Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, 120_000_000)

#: DCT-domain reductions a JPEG can be decoded at.
JPEG_REDUCTIONS = (1, 2, 4, 8)

log = logging.getLogger(__name__)
# Image.open is wrapped in warnings.catch_warnings, which swaps process-wide state: one at a time.
_OPEN_LOCK = threading.Lock()


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """(H,W,3) uint8 RGB from any Pillow mode."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(img).astype(np.float64)
        if mode == "F":
            scale = 255.0 if a.size and float(np.nanmax(a)) <= 1.0 else 1.0
        elif mode.startswith("I;16") or (a.size and float(a.max()) > 255):
            scale = 255.0 / 65535.0
        else:
            scale = 1.0
        g = np.clip(np.rint(np.nan_to_num(a) * scale), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode == "1":
        img = img.convert("L")
        mode = "L"
    if mode == "L":
        g = np.asarray(img, dtype=np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode == "P" or mode == "PA":
        has_alpha = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
        return _to_rgb_array(img)
    if mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        rgb = rgba[:, :, :3] * (rgba[:, :, 3:4] / 255.0)
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def draft_reduction(width: int, height: int, size: int) -> int:
    """The largest JPEG reduction (1, 2, 4, 8) whose decoded short side is still ``>= size``.

    A fundus disc spans at least most of the short side, so the crop around it keeps at least
    the working size; :func:`~robustbench_fundus.data.cache.load_working` checks that on the
    decoded image and decodes again at a smaller reduction when it does not.
    """
    short = min(int(width), int(height))
    for r in reversed(JPEG_REDUCTIONS):
        if math.ceil(short / r) >= size:
            return r
    return 1


def _open(data: bytes, name: PathLike) -> Image.Image:
    """``Image.open`` with Pillow's decompression-bomb warning turned into one logged line."""
    with _OPEN_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = Image.open(io.BytesIO(data))
    for w in caught:
        if issubclass(w.category, Image.DecompressionBombWarning):
            log.warning("%s: %dx%d = %s pixels, more than the %s expected of a fundus photograph; "
                        "decoding it anyway (above %s it is refused)", name, img.size[0],
                        img.size[1], f"{img.size[0] * img.size[1]:,}",
                        f"{Image.MAX_IMAGE_PIXELS:,}", f"{2 * Image.MAX_IMAGE_PIXELS:,}")
        else:  # someone else's warning, caught while we held the hook: pass it on
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return img


@contextlib.contextmanager
def _decoding(name: PathLike) -> Iterator[None]:
    """Pillow's errors while reading ``name``, each as a one-line DataError."""
    try:
        yield
    except UnidentifiedImageError:
        raise DataError(f"{name}: not an image Pillow can read; remove it or convert it to "
                        f"JPEG/PNG") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{name}: cannot decode image ({msg}); the file is probably truncated "
                        f"or corrupt: re-copy or remove it") from None


def image_size(data: bytes, name: PathLike = "<bytes>") -> tuple[int, int, str | None]:
    """``(width, height, format)`` from the header only (nothing decoded)."""
    with _decoding(name), _open(data, name) as img:
        return img.size[0], img.size[1], img.format


def decode_bytes(data: bytes, name: PathLike = "<bytes>", min_size: int | None = None,
                 reduction: int | None = None) -> torch.Tensor:
    """Decode encoded image bytes to a ``uint8`` tensor ``(3,H,W)``.

    ``min_size``: for JPEGs, let the decoder scale down by a power of two (1/2, 1/4, 1/8) as
    long as both sides stay at least ``min_size`` pixels (much faster for big originals).
    ``reduction``: for JPEGs, decode at exactly 1/``reduction`` scale (1, 2, 4 or 8), each side
    rounded up; other formats are decoded at full size.
    """
    if len(data) == 0:
        raise DataError(f"{name}: empty file (0 bytes); re-copy or remove it")
    if reduction is not None and reduction not in JPEG_REDUCTIONS:
        raise DataError(f"{name}: reduction={reduction!r}: use one of "
                        f"{', '.join(map(str, JPEG_REDUCTIONS))}")
    with _decoding(name), _open(data, name) as img:
        if img.format == "JPEG":
            w, h = img.size
            if reduction is not None and reduction > 1:
                img.draft("RGB", (w // reduction, h // reduction))
            elif min_size is not None:
                img.draft("RGB", (int(min_size), int(min_size)))
        img.load()
        arr = _to_rgb_array(img)
    if arr.ndim != 3 or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise DataError(f"{name}: image is too small ({arr.shape[1]}x{arr.shape[0]}); remove it")
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def read_bytes(path: PathLike) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the path or the labels file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not an image file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc}); check permissions") from None


def load_image(path: PathLike, min_size: int | None = None) -> torch.Tensor:
    """Load an image file as RGB ``uint8`` tensor ``(3,H,W)``; :class:`DataError` if unreadable."""
    return decode_bytes(read_bytes(path), name=path, min_size=min_size)


def check_image(path: PathLike) -> str | None:
    """Try to fully decode ``path``; ``None`` when fine, else a one-line reason."""
    p = Path(path)
    try:
        data = read_bytes(p)
        if len(data) == 0:
            return "empty file (0 bytes)"
        with _open(data, p) as img:
            img.verify()  # structure and checksums (PNG CRCs)
        decode_bytes(data, name=p)  # full decode: catches truncation
    except DataError as exc:
        msg = str(exc)
        prefix = f"{p}: "
        return msg[len(prefix):] if msg.startswith(prefix) else msg
    except UnidentifiedImageError:
        return "not an image Pillow can read"
    except Exception as exc:  # verify() raises assorted types on corrupt data
        return f"corrupt image ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None
