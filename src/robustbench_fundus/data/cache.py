"""Working-size crops, decoded once and cached on disk.

``load_working(path, size)`` = decode ->
:meth:`~robustbench_fundus.preprocessing.Preprocessing.working_crop` (fundus geometry, square crop
around the disc, resize to ``size x size``) -> ``uint8 (3,S,S)``.

Decoding takes only the resolution the crop needs: a JPEG is decoded at the largest DCT-domain
reduction (1/2, 1/4, 1/8) whose short side is still at least the working size
(:func:`~robustbench_fundus.data.io.draft_reduction`); when the crop around the disc found there
(side ``2 * margin * R``) would be smaller than the working size, it is decoded again at the next
smaller reduction, so a crop is never upsampled from a reduced decode. Geometry, crop and resize
then run on the decoded image.

The crop is stored under ``<cache_dir>/v<N>/<size>/<aa>/<content hash>.<npy|png>``, keyed by a
hash of the file's bytes (so a renamed or copied file hits, an edited one misses) plus the size
and crop margin, together with the crop's own fundus geometry (centre, radius and the extent of
its content: :meth:`~robustbench_fundus.preprocessing.Geometry.params`, estimated on the crop
once when the entry is written), so a cached pass rebuilds the mask instead of estimating it
again (the same mask, bit for bit). Format (``$RBF_CACHE_FORMAT``): ``npy`` (default: one
structured record, fields ``crop`` ``uint8 (3,S,S)`` and ``geometry`` ``float32 (7,)``, 768 KB
at 512 px, read in well under a millisecond) or ``png`` (8-bit RGB PNG at compression level 1,
the geometry in a ``rbf-geometry`` text chunk: a third of the size, about 10 ms to decode at
512 px). An entry of the earlier layout (a bare ``uint8 (3,S,S)`` array, or a PNG without the
chunk) is still a hit: its geometry is estimated and the entry rewritten with it. Files are written
to a temporary name in the same folder and moved into place with :func:`os.replace`, so
concurrent processes never see a half-written entry; a damaged entry is treated as a miss and
rewritten.

Cache folder: the ``cache_dir`` argument, else ``$RBF_CACHE_DIR``, else
``~/.cache/robustbench_fundus`` (never the working directory). ``cache_dir=False`` disables it.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from ..preprocessing import Geometry, Preprocessing
from ..preprocessing.geometry import PARAM_NAMES, valid_params
from .io import JPEG_REDUCTIONS, decode_bytes, draft_reduction, image_size, read_bytes

# Bump when decode/geometry/crop change so stale entries are not reused.
# v2: JPEGs decoded at a DCT-domain reduction (the crops differ from v1's by a few grey levels).
CACHE_VERSION = 2
#: Formats of cache entries; ``$RBF_CACHE_FORMAT`` picks one (default: the first).
CACHE_FORMATS = ("npy", "png")
#: Decode JPEGs at a DCT-domain reduction when the crop allows it (False: always full size;
#: such crops are cached under their own key).
DRAFT_DECODING = True

CacheDir = Union[str, os.PathLike, None, bool]

log = logging.getLogger(__name__)
_unwritable: set[Path] = set()   # cache folders already reported as unwritable (once each)


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


def cache_format() -> str:
    """The entry format: ``$RBF_CACHE_FORMAT`` (``npy`` or ``png``), else ``npy``."""
    fmt = os.environ.get("RBF_CACHE_FORMAT", "").strip().lower() or CACHE_FORMATS[0]
    if fmt not in CACHE_FORMATS:
        raise DataError(f"RBF_CACHE_FORMAT={fmt!r}: use {' or '.join(CACHE_FORMATS)}")
    return fmt


def content_key(data: bytes, size: int, margin: float = 1.0) -> str:
    h = hashlib.blake2b(data, digest_size=16)
    full = "" if DRAFT_DECODING else "|full-decode"
    h.update(f"|size={int(size)}|margin={float(margin)!r}|v{CACHE_VERSION}{full}".encode())
    return h.hexdigest()


def cache_path(root: Path, key: str, size: int, fmt: str | None = None) -> Path:
    fmt = fmt or cache_format()
    return root / f"v{CACHE_VERSION}" / str(int(size)) / key[:2] / f"{key}.{fmt}"


def working_crop(img: torch.Tensor, size: int, margin: float = 1.0,
                 geom: Geometry | None = None) -> torch.Tensor:
    """uint8 (3,H,W) photograph -> uint8 (3,S,S) crop around the fundus disc (the preprocessing
    stage's :meth:`~robustbench_fundus.preprocessing.Preprocessing.working_crop`, at 8 bits).
    ``geom``: the photograph's geometry when already estimated."""
    out = Preprocessing(margin=margin).working_crop(img, int(size), geom=geom)[0]
    return out.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)


def decode_for_crop(data: bytes, size: int, margin: float = 1.0, name="<bytes>"
                    ) -> tuple[torch.Tensor, Geometry, int]:
    """Decode ``data`` at the largest JPEG reduction that keeps the crop at least ``size`` px.

    Returns the decoded ``uint8 (3,h,w)`` image, its geometry and the reduction used (1 for
    other formats). The reduction starts at :func:`~robustbench_fundus.data.io.draft_reduction`
    of the image size; while the crop around the disc found at that scale (side
    ``2 * margin * R``) is smaller than ``size``, the image is decoded again at half the
    reduction.
    """
    size = int(size)
    w, h, fmt = image_size(data, name)
    r = draft_reduction(w, h, size) if fmt == "JPEG" and DRAFT_DECODING else 1
    while True:
        img = decode_bytes(data, name=name, reduction=r)
        geom = Preprocessing(margin=margin).photo_geometry(img)
        if r == 1 or 2.0 * margin * float(geom.radius[0]) >= size:
            return img, geom, r
        r = JPEG_REDUCTIONS[JPEG_REDUCTIONS.index(r) - 1]


#: The PNG text chunk holding an entry's geometry.
PNG_GEOMETRY_KEY = "rbf-geometry"


def crop_geometry(crop: torch.Tensor) -> torch.Tensor:
    """(7,) float32 :meth:`~robustbench_fundus.preprocessing.Geometry.params` of a working crop
    ``uint8 (3,S,S)``: the geometry the benchmark would estimate on it (as ``crop / 255``)."""
    return Preprocessing().geometry(crop).params()[0]


def _encode(arr: np.ndarray, geom: np.ndarray, fmt: str) -> bytes:
    """(3,S,S) uint8 crop and its (7,) float32 geometry -> the bytes of an entry."""
    buf = io.BytesIO()
    if fmt == "npy":
        rec = np.zeros((), dtype=_record_dtype(arr.shape[-1]))
        rec["crop"] = arr
        rec["geometry"] = geom
        np.save(buf, rec, allow_pickle=False)
    else:
        from PIL.PngImagePlugin import PngInfo
        info = PngInfo()
        info.add_text(PNG_GEOMETRY_KEY, " ".join(repr(float(v)) for v in geom))
        Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0))).save(
            buf, format="PNG", compress_level=1, pnginfo=info)
    return buf.getvalue()


def _record_dtype(size: int) -> np.dtype:
    return np.dtype([("crop", np.uint8, (3, size, size)),
                     ("geometry", "<f4", (len(PARAM_NAMES),))])


def _atomic_save(path: Path, arr: np.ndarray, geom: np.ndarray) -> None:
    fmt = path.suffix[1:]
    data = _encode(arr, geom, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
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


def _geometry_ok(geom: np.ndarray | None, size: int) -> np.ndarray | None:
    if geom is None or geom.shape != (len(PARAM_NAMES),):
        return None
    return geom if valid_params(geom.tolist(), size, size) else None


def _try_load(path: Path, size: int) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(crop, geometry or None) of an entry; None when it is missing or damaged. The geometry
    is None for an entry of the earlier layout or with an implausible geometry."""
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            if arr.dtype == _record_dtype(size) and arr.shape == ():
                return arr["crop"], _geometry_ok(np.array(arr["geometry"]), size)
            if arr.dtype != np.uint8 or arr.shape != (3, size, size):
                return None
            return arr, None
        with Image.open(path) as img:
            if img.mode != "RGB" or img.size != (size, size):
                return None
            img.load()
            text = img.text.get(PNG_GEOMETRY_KEY) if hasattr(img, "text") else None
            arr = np.asarray(img, dtype=np.uint8)
        geom = None
        if text is not None:
            try:
                geom = np.array([float(v) for v in text.split()], dtype=np.float32)
            except ValueError:
                geom = None
    except Exception:  # noqa: BLE001 - any damaged entry
        return None  # damaged entry: recompute and overwrite
    return np.ascontiguousarray(arr.transpose(2, 0, 1)), _geometry_ok(geom, size)


def load_entry(path, size: int, cache_dir: CacheDir = None, margin: float = 1.0
               ) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The working crop ``uint8 (3,S,S)`` of the image at ``path``, its fundus geometry
    (:meth:`~robustbench_fundus.preprocessing.Geometry.params`, ``float32 (7,)``; rebuild it with
    :meth:`Geometry.from_params <robustbench_fundus.preprocessing.Geometry.from_params>`) and
    whether the cache hit. Cached on disk (see the module docstring)."""
    size = int(size)
    data = read_bytes(path)
    root = _cache_root(cache_dir)
    cpath = None
    if root is not None:
        cpath = cache_path(root, content_key(data, size, margin), size)
        got = _try_load(cpath, size) if cpath.is_file() else None
        if got is not None:
            arr, geom = got
            crop = torch.from_numpy(np.ascontiguousarray(arr))
            if geom is not None:
                return crop, torch.from_numpy(geom.copy()), True
            geom = crop_geometry(crop)       # an entry of the earlier layout: upgrade it
            _save_quietly(cpath, crop, geom)
            return crop, geom, True
    img, geom, _ = decode_for_crop(data, size, margin, name=path)
    out = working_crop(img, size, margin, geom=geom)
    geom = crop_geometry(out)
    if cpath is not None:
        _save_quietly(cpath, out, geom)
    return out, geom, False


def _save_quietly(cpath: Path, crop: torch.Tensor, geom: torch.Tensor) -> None:
    """Write an entry; a read-only or full cache never stops loading (the crop is returned all
    the same), and is reported once per cache folder and process."""
    try:
        _atomic_save(cpath, crop.numpy(), geom.numpy())
    except OSError as exc:
        root = cpath.parents[3]              # <root>/v<N>/<size>/<aa>/<key>.<fmt>
        if root not in _unwritable:
            _unwritable.add(root)
            log.warning("crop cache %s: cannot write (%s); crops are decoded again on every run "
                        "(give a writable --cache-dir, or cache_dir=False)", root,
                        exc.strerror or exc)


def load_working_ex(path, size: int, cache_dir: CacheDir = None,
                    margin: float = 1.0) -> tuple[torch.Tensor, bool]:
    """Like :func:`load_working`, also returning whether the cache hit."""
    crop, _, hit = load_entry(path, size, cache_dir, margin)
    return crop, hit


def load_working(path, size: int, cache_dir: CacheDir = None, margin: float = 1.0) -> torch.Tensor:
    """Working-size crop ``uint8 (3,S,S)`` of the image at ``path`` (cached on disk)."""
    return load_entry(path, size, cache_dir, margin)[0]
