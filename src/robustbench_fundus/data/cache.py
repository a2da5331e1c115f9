"""Working-size crops, decoded once and cached on disk.

``load_working(path, size)`` = decode ->
:meth:`~robustbench_fundus.preprocessing.Preprocessing.working_crop` (fundus geometry, square crop
around the disc, resize to ``size x size``) -> ``uint8 (3,S,S)``. The result is stored as an
8-bit RGB PNG (fast compression level 1: about 250 KB for a 512 px crop, a third of raw ``.npy``, decoded in a few
ms) under ``<cache_dir>/v<N>/<size>/<aa>/<content hash>.png``, keyed by a hash of the file's
bytes (so a renamed or copied file hits, an edited one misses) plus the size and crop margin. Files are
written to a temporary name in the same folder and moved into place with :func:`os.replace`, so
concurrent processes never see a half-written entry; a damaged entry is treated as a miss and
rewritten.

Cache folder: the ``cache_dir`` argument, else ``$RBF_CACHE_DIR``, else
``~/.cache/robustbench_fundus`` (never the working directory). ``cache_dir=False`` disables it.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image

from ..preprocessing import Preprocessing
from .io import decode_bytes, read_bytes

# Bump when decode/geometry/crop change so stale entries are not reused.
CACHE_VERSION = 1

CacheDir = Union[str, os.PathLike, None, bool]


def default_cache_dir() -> Path:
    env = os.environ.get("RBF_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "robustbench_fundus"


def _cache_root(cache_dir: CacheDir) -> Path | None:
    if cache_dir is False:
        return None
    if cache_dir is None or cache_dir is True:
        return default_cache_dir()
    return Path(cache_dir).expanduser()


def content_key(data: bytes, size: int, margin: float = 1.0) -> str:
    h = hashlib.blake2b(data, digest_size=16)
    h.update(f"|size={int(size)}|margin={float(margin)!r}|v{CACHE_VERSION}".encode())
    return h.hexdigest()


def cache_path(root: Path, key: str, size: int) -> Path:
    return root / f"v{CACHE_VERSION}" / str(int(size)) / key[:2] / f"{key}.png"


def working_crop(img: torch.Tensor, size: int, margin: float = 1.0) -> torch.Tensor:
    """uint8 (3,H,W) photograph -> uint8 (3,S,S) crop around the fundus disc (the preprocessing
    stage's :meth:`~robustbench_fundus.preprocessing.Preprocessing.working_crop`, at 8 bits)."""
    out = Preprocessing(margin=margin).working_crop(img, int(size))[0]
    return out.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)


def _encode_png(arr: np.ndarray) -> bytes:
    """(3,S,S) uint8 -> PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0))).save(buf, format="PNG",
                                                                        compress_level=1)
    return buf.getvalue()


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    data = _encode_png(arr)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _try_load(path: Path, size: int) -> np.ndarray | None:
    try:
        with Image.open(path) as img:
            if img.mode != "RGB" or img.size != (size, size):
                return None
            img.load()
            arr = np.asarray(img, dtype=np.uint8)
    except Exception:  # noqa: BLE001 - any damaged entry
        return None  # damaged entry: recompute and overwrite
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def load_working_ex(path, size: int, cache_dir: CacheDir = None,
                    margin: float = 1.0) -> tuple[torch.Tensor, bool]:
    """Like :func:`load_working`, also returning whether the cache hit."""
    size = int(size)
    data = read_bytes(path)
    root = _cache_root(cache_dir)
    cpath = None
    if root is not None:
        cpath = cache_path(root, content_key(data, size, margin), size)
        arr = _try_load(cpath, size) if cpath.is_file() else None
        if arr is not None:
            return torch.from_numpy(arr), True
    # Let the JPEG decoder drop resolution (powers of two) while both sides stay >= 1.5x size,
    # so the disc still spans at least the working size.
    img = decode_bytes(data, name=path, min_size=(3 * size + 1) // 2)
    out = working_crop(img, size, margin)
    if cpath is not None:
        try:
            _atomic_save(cpath, out.numpy())
        except OSError:
            pass  # a read-only or full cache never stops loading
    return out, False


def load_working(path, size: int, cache_dir: CacheDir = None, margin: float = 1.0) -> torch.Tensor:
    """Working-size crop ``uint8 (3,S,S)`` of the image at ``path`` (cached on disk)."""
    return load_working_ex(path, size, cache_dir, margin)[0]
