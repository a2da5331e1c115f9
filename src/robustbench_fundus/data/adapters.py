"""Data a user already has, as the library's items.

The bench reads items ``dict(image, label, index, id)``: ``image`` a uint8 (3,S,S) working
crop of a photograph (``space="photo"``: geometry, corruptions and the model's preprocessing
apply) or a float (3,H,W) model input in [0,1] (``space="model_input"``: taken as it is, and
corruptions act on it directly). :func:`as_items` turns what users have into that:

* a torch ``Dataset`` yielding ``(image, label)`` tuples (or lists), or dicts with ``image`` and
  ``label``;
* a torchvision ``ImageFolder`` (class folders named by grade, ``0`` .. ``4``); without a
  ``transform`` its files are read exactly as a folder is (decoded at the scale the working size
  needs, cached), so it scores as the same folder given by path does;
* a ``DataLoader`` over such a dataset (not shuffled: a store must be able to resume it; its
  ``collate_fn`` is applied to each item, so what the loader would give is what is scored); a
  loader over an iterable dataset is read once, in order, and held in memory;
* a list of ``(path, grade)`` pairs (read like a folder: decoded once, cached);

with images given as PIL images, uint8 HWC (or HW) arrays, or CHW tensors in [0,1] (float) or
[0,255] (uint8, or float above 1). Labels must be grades 0-4.

Images a dataset gives already decoded are cropped from their full resolution; files (a folder,
an ImageFolder without a transform, a list of paths) are decoded straight at a reduced JPEG scale
when the working size allows it (see :mod:`robustbench_fundus.data.cache`), which changes the
8-bit crop by about one grey level on average (mostly along the disc's edge). So at working
sizes small enough for that reduction, a dataset of decoded images and the same files read from
disk can differ by a few borderline predictions.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler

from ..errors import RBFError
from ..grades import NUM_GRADES

SPACES = ("photo", "model_input")


def check_space(space: str | None, what: str = "data_space") -> str | None:
    if space is None:
        return None
    key = str(space).strip().lower().replace("-", "_")
    if key not in SPACES:
        raise RBFError(f"{what}={space!r}: use 'photo' (raw photographs: geometry, corruptions "
                       "and preprocessing apply) or 'model_input' (already the model's input)")
    return key


def to_image_tensor(img: Any, where: str) -> torch.Tensor:
    """A PIL image, an HWC/HW array or a CHW tensor -> (3,H,W): uint8 for 8-bit data, float
    in [0,1] otherwise."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - a dependency
        Image = None
    if Image is not None and isinstance(img, Image.Image):
        img = np.asarray(img.convert("RGB"))
    if isinstance(img, np.ndarray):
        a = img
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
            raise RBFError(f"{where}: an image array must be HxWx3 (or HxW), got shape "
                           f"{tuple(a.shape)}")
        if a.shape[2] == 1:
            a = np.repeat(a, 3, axis=2)
        a = a[:, :, :3]
        t = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
        if t.dtype == torch.uint8:
            return t
        t = t.float()
        return (t / 255.0 if t.numel() and float(t.max()) > 1.0 else t).clamp(0, 1)
    if isinstance(img, torch.Tensor):
        t = img.detach().cpu()
        if t.dim() == 2:
            t = t.unsqueeze(0)
        if t.dim() != 3 or t.shape[0] not in (1, 3):
            raise RBFError(f"{where}: an image tensor must be (3,H,W) (channels first), got "
                           f"shape {tuple(t.shape)}")
        if t.shape[0] == 1:
            t = t.expand(3, -1, -1)
        if t.dtype == torch.uint8:
            return t.contiguous()
        if not t.is_floating_point():
            t = t.float()
        t = t.float()
        if t.numel() and not torch.isfinite(t).all():
            raise RBFError(f"{where}: the image has NaN or infinite values")
        if t.numel() and (float(t.min()) < 0 or float(t.max()) > 255):
            raise RBFError(f"{where}: image values must lie in [0,1] or [0,255], got "
                           f"[{float(t.min()):.3g}, {float(t.max()):.3g}]")
        return (t / 255.0 if t.numel() and float(t.max()) > 1.0 else t).contiguous()
    raise RBFError(f"{where}: an image must be a PIL image, a numpy array or a tensor, got "
                   f"{type(img).__name__}")


def to_label(v: Any, where: str) -> int:
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise RBFError(f"{where}: the label must be one grade, got a tensor of shape "
                           f"{tuple(v.shape)}")
        v = v.item()
    if isinstance(v, (np.integer,)):
        v = int(v)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < NUM_GRADES:
        raise RBFError(f"{where}: labels must be grades 0-{NUM_GRADES - 1}, got {v!r}")
    return v


def split_item(item: Any, where: str) -> tuple[Any, Any]:
    """(image, label) of a ``(image, label, ...)`` tuple or a dict with ``image``/``label``."""
    if isinstance(item, dict):
        if "image" not in item or "label" not in item:
            raise RBFError(f"{where}: a dict item needs 'image' and 'label' keys, got "
                           f"{sorted(item)}")
        return item["image"], item["label"]
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return item[0], item[1]
    raise RBFError(f"{where}: items must be (image, label) tuples or dicts with 'image' and "
                   f"'label', got {type(item).__name__}")


class ItemsView(Dataset):
    """A foreign map-style dataset seen as the library's items (see the module docstring).

    ``size``: the working size for photographs (each becomes its working crop, the same
    function the folder reader uses); ``fetch(i)`` gives the raw item ``i``."""

    def __init__(self, base: Any, space: str, size: int | None, fetch=None, n: int | None = None,
                 margin: float = 1.0, name: str | None = None):
        self.base = base
        self.space = space
        self.size = int(size) if size is not None else None
        self.margin = margin
        self._fetch = fetch or base.__getitem__
        self._n = len(base) if n is None else int(n)
        self.name = name or type(base).__name__
        self._grades = _grades_of(base)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> dict:
        where = f"{self.name} item {i}"
        image, label = split_item(self._fetch(int(i)), where)
        img = to_image_tensor(image, where)
        y = to_label(self._grade(label), where)
        if self.space == "photo":
            from .cache import working_crop
            if img.dtype != torch.uint8:
                img = (img * 255.0).round().clamp(0, 255).to(torch.uint8)
            img = working_crop(img, self.size, self.margin)
        elif img.dtype == torch.uint8:
            img = img.float() / 255.0
        return {"image": img, "label": y, "index": int(i), "id": f"{self.name}:{i}"}

    def _grade(self, label: Any) -> Any:
        """An ImageFolder's class index -> the grade its folder is named by."""
        if self._grades is None:
            return label
        try:
            return self._grades[int(label)]
        except (IndexError, TypeError, ValueError):
            return label

    @property
    def labels(self) -> list[int] | None:
        """The grades without reading images, when the dataset says them (ImageFolder's
        ``targets``, a TensorDataset's label tensor)."""
        raw = None
        targets = getattr(self.base, "targets", None)
        if targets is not None:
            raw = list(targets)
        tensors = getattr(self.base, "tensors", None)
        if raw is None and isinstance(tensors, (tuple, list)) and len(tensors) >= 2:
            raw = tensors[1].tolist()
        if raw is None:
            return None
        return [to_label(self._grade(v), f"{self.name} label {k}") for k, v in enumerate(raw)]

    def fingerprint(self, indices: Sequence[int]) -> str:
        """The evaluated items' identity: the files (ImageFolder: path, size, grade), else the
        dataset's class, length, the grades and the bytes of a few evenly spaced images."""
        h = hashlib.blake2b(digest_size=8)
        h.update(f"{type(self.base).__qualname__}|{self._n}|{self.space}|{self.size}|"
                 f"{self.margin}".encode())
        samples = getattr(self.base, "samples", None)
        if isinstance(samples, list) and len(samples) == self._n:
            for i in indices:
                p, c = samples[i][0], samples[i][1]
                try:
                    nbytes = os.path.getsize(p)
                except OSError:
                    nbytes = -1
                h.update(f"{Path(p).name}|{nbytes}|{self._grade(c)}\x1e".encode())
            return h.hexdigest()
        labels = self.labels
        if labels is None:
            labels = [self[i]["label"] for i in indices]
        else:
            labels = [labels[i] for i in indices]
        h.update(repr(tuple(indices)).encode())
        h.update(repr(tuple(labels)).encode())
        probe = [indices[k * len(indices) // 8] for k in range(min(8, len(indices)))]
        for i in probe:
            h.update(self[i]["image"].contiguous().numpy().tobytes())
        return h.hexdigest()


def _file_samples(base: Any) -> list[tuple[str, int]] | None:
    """A torchvision ``DatasetFolder``/``ImageFolder`` that only reads its files (no transform,
    the default loader): its ``(path, class index)`` samples; else None."""
    samples = getattr(base, "samples", None)
    if not isinstance(samples, list) or not hasattr(base, "class_to_idx"):
        return None
    if getattr(base, "transform", None) is not None or \
            getattr(base, "target_transform", None) is not None:
        return None
    try:
        from torchvision.datasets.folder import default_loader
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return None
    if getattr(base, "loader", None) is not default_loader:
        return None
    return [(str(p), int(c)) for p, c in samples]


def _grades_of(base: Any) -> list[int] | None:
    """For an ImageFolder: the grade of each class index, read from its folder names."""
    classes = getattr(base, "classes", None)
    if not isinstance(classes, (list, tuple)) or not hasattr(base, "class_to_idx"):
        return None
    grades = []
    for c in classes:
        name = str(c).strip()
        if not name.isdigit() or not 0 <= int(name) < NUM_GRADES:
            raise RBFError(f"ImageFolder classes {list(classes)}: folders must be named by grade "
                           f"(0-{NUM_GRADES - 1}); rename {name!r}, or give a dataset of "
                           "(image, grade) pairs")
        grades.append(int(name))
    return grades


def _loader_items(loader: DataLoader, space: str, size: int | None) -> ItemsView:
    ds = loader.dataset
    name = f"DataLoader({type(ds).__name__})"
    if isinstance(ds, IterableDataset):
        items = []
        for batch in loader:  # read once, in order
            image, label = split_item(batch, name)
            imgs = image if isinstance(image, (list, tuple)) else list(image)
            labs = label.tolist() if isinstance(label, torch.Tensor) else list(label)
            items.extend(zip(imgs, labs))
        return ItemsView(items, space, size, name=name)
    sampler = getattr(loader, "sampler", None)
    if not isinstance(sampler, SequentialSampler):
        raise RBFError(f"data: a {name} with shuffle=True (or another sampler) has no stable "
                       "order, so results could not be resumed or compared; pass the dataset, "
                       "or a DataLoader with shuffle=False")
    collate = loader.collate_fn

    def fetch(i: int):
        batch = collate([ds[i]])
        image, label = split_item(batch, name)
        return image[0], label[0] if not isinstance(label, torch.Tensor) else label.reshape(-1)[0]
    view = ItemsView(ds, space, size, fetch=fetch, n=len(ds), name=name)
    return view


def as_items(data: Any, space: str, size: int | None) -> tuple[Any, str]:
    """(a map-style dataset of the library's items, a name) for a user's dataset, ImageFolder,
    DataLoader or list of (path, grade)."""
    if isinstance(data, DataLoader):
        v = _loader_items(data, space, size)
        return v, v.name
    if isinstance(data, (list, tuple)) and data and all(
            isinstance(it, (list, tuple)) and len(it) == 2 and isinstance(it[0], (str, os.PathLike))
            for it in data):
        from .dataset import FundusDataset
        from .layouts import Record
        if space != "photo":
            raise RBFError("data: a list of (path, grade) pairs is read as photographs; "
                           "data_space='model_input' does not apply")
        records = []
        for k, (p, g) in enumerate(data):
            path = Path(p)
            if not path.is_file():
                raise RBFError(f"data: item {k}: no such file {path}")
            records.append(Record(path.stem, path, to_label(g, f"data item {k} ({path.name})")))
        return FundusDataset(records, size), f"files:{len(records)}"
    files = _file_samples(data)
    if files is not None:
        from .dataset import FundusDataset
        from .layouts import Record
        if space != "photo":
            raise RBFError(f"data: a {type(data).__name__} without a transform is read as "
                           "photographs; data_space='model_input' does not apply")
        grades = _grades_of(data)
        records = [Record(Path(p).stem, Path(p), to_label(grades[int(c)] if grades else c,
                                                          f"{type(data).__name__} file {p}"))
                   for p, c in files]
        return FundusDataset(records, size), f"{type(data).__name__}"
    if isinstance(data, IterableDataset):
        raise RBFError("data: an IterableDataset has no length or order the store can resume; "
                       "wrap it in a DataLoader (it is then read once, in order) or pass a "
                       "map-style Dataset")
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        v = ItemsView(data, space, size)
        return v, v.name
    raise RBFError(f"data: got {type(data).__name__}; give a folder, \"synthetic:N\", a "
                   "Dataset of (image, grade) items, an ImageFolder, a DataLoader, a list of "
                   "(path, grade) pairs, or (x, y) tensors")
