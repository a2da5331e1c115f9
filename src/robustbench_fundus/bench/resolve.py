"""Turning what a user passes to :func:`~robustbench_fundus.bench.evaluate` into typed inputs.

* :func:`resolve_model`: a checkpoint path (read by the models stage's safe loader), an
  ``nn.Module`` taking [0,1] RGB input, or None (the bundled demo model) -> :class:`ModelInfo`
  with the preprocessing that feeds it (the preprocessing stage's one resolver) and its identity.
* :func:`resolve_data`: a folder of labelled photographs, ``"synthetic[:N]"``/None, a dataset,
  or ``(x, y)`` tensors -> :class:`DataInfo` with the data set's fingerprint.
* :func:`resolve_device`: ``device`` (and ``LOCAL_RANK`` under torchrun) -> a torch device.

The attack goes through the attack stage's :func:`~robustbench_fundus.attacks.resolve_attack`.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import RBFError
from ..grades import NUM_GRADES

DEFAULT_SYNTH_N = 64
DEFAULT_SYNTH_SEED = 20240601  # held out from the demo model's training stream (seed 0)


# ------------------------------------------------------------------------------------------------
# model
# ------------------------------------------------------------------------------------------------
@dataclass
class ModelInfo:
    module: nn.Module
    sha256: str
    name: str
    arch: str | None
    input_size: tuple[int, int] | None
    preprocessing: Any                      # a preprocessing.Preprocessing
    head: Any = None                        # a heads.Head
    meta: dict = field(default_factory=dict)


def model_sha256(model: nn.Module, preprocessing: Any = None, head: Any = None) -> str:
    """sha256 of a model's identity as benchmarked: its weights (``weights_sha256`` of the
    state_dict, which includes a FundusClassifier's mean/std), its config (a FundusClassifier's
    arch, classes, input size, ...), the preprocessing that feeds it and the head that reads
    it. Independent of device and of the file format the model came from; the same weights fed
    or read differently are two entries."""
    from ..models import weights_sha256
    h = hashlib.sha256(weights_sha256(model.state_dict()).encode())
    cfg = model.config() if hasattr(model, "config") and callable(model.config) else \
        {"class": type(model).__name__}
    if preprocessing is not None:
        cfg = {**cfg, "preprocessing": preprocessing.identity()}
    if head is not None:
        cfg = {**cfg, "head": head.to_dict()}
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    return h.hexdigest()


def demo_model_path() -> Path:
    """The bundled demo model (``tiny_cnn`` at 128 px, Graham preprocessing)."""
    from ..train.demo import demo_model_path as _path
    path = Path(_path())
    if not path.is_file():
        raise RBFError(f"the bundled demo model is missing ({path}); reinstall the package or "
                       "pass a checkpoint")
    return path


def resolve_model(model: Any, arch: str | None = None, device: str | torch.device = "cpu",
                  name: str | None = None, trust_checkpoint: bool = False,
                  preprocessing: Any = None, head: Any = None,
                  head_options: dict | None = None) -> ModelInfo:
    """``model`` (path, ``nn.Module`` or None for the demo model) -> :class:`ModelInfo`; the
    head is what the model declares (the library's checkpoints record it), else ``head``
    (a name or a :class:`~robustbench_fundus.heads.Head`), else classification."""
    from ..heads import check_output, resolve_head
    from ..preprocessing import resolve_preprocessing

    meta: dict[str, Any] = {}
    if model is None:
        model = demo_model_path()
        meta["demo_model"] = True
    if isinstance(model, (str, os.PathLike)):
        from ..models import file_sha256, load_model
        path = Path(model)
        module = load_model(path, arch=arch, device=device, trust_checkpoint=trust_checkpoint,
                            head=head if isinstance(head, str) else None,
                            head_options=head_options if isinstance(head, str) else None)
        meta["checkpoint"] = str(path)
        meta["file_sha256"] = file_sha256(path)
        default_name = path.stem
    elif isinstance(model, nn.Module):
        module = model.to(device)
        default_name = getattr(model, "arch", None) or type(model).__name__
    else:
        raise RBFError(f"model: expected a checkpoint path, an nn.Module or None (the demo "
                       f"model), got {type(model).__name__}")
    pre = resolve_preprocessing(module, preprocessing)
    hd = resolve_head(module, head, head_options)
    width = getattr(module, "num_classes", None)
    if isinstance(width, int) and not isinstance(width, bool):
        check_output(torch.zeros(1, width), hd)  # a width no head reads: a one-line error now
    size = pre.input_size
    for k in ("recipe", "data_fingerprint", "epochs"):
        if k in (getattr(module, "meta", None) or {}):
            meta[k] = module.meta[k]
    return ModelInfo(module, model_sha256(module, pre, hd), name or default_name,
                     getattr(module, "arch", None),
                     (int(size[0]), int(size[1])) if size is not None else None, pre, hd, meta)


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
class TensorItems(torch.utils.data.Dataset):
    """``(x, y)`` tensors as a dataset of the bench's items (model input as it is)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> dict:
        return {"image": self.x[i], "label": int(self.y[i]), "index": int(i), "id": str(i)}


@dataclass
class DataInfo:
    dataset: Any                  # map-style, items: dict(image, label, index, id)
    indices: list[int]            # dataset indices evaluated (after --limit)
    fingerprint: str
    name: str
    space: str = "photo"          # "photo" (working crops) | "model_input"
    meta: dict = field(default_factory=dict)

    @property
    def tensor_input(self) -> bool:
        """The images are model input already (no geometry-based preprocessing)."""
        return self.space == "model_input"


def limit_indices(n: int, limit: int | None) -> list[int]:
    """All indices, or ``limit`` of them spread evenly over the set (deterministic: a prefix of
    a sorted set would take only the first subjects/grades)."""
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 1:
        raise RBFError(f"--limit {limit}: must be at least 1")
    return [int(i * n // limit) for i in range(limit)]


def _h(*parts: Any) -> str:
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\x1f")
    return h.hexdigest()


def resolve_data(data: Any, size: int, limit: int | None = None, cache_dir: Any = None,
                 synthetic_n: int = DEFAULT_SYNTH_N, space: str | None = None,
                 split: str = "all", val_fraction: float = 0.3,
                 split_seed: int = 0) -> DataInfo:
    """A folder, ``"synthetic[:N]"`` or None (synthetic), the library's datasets, ``(x, y)``
    tensors, or data a user already has (a Dataset of (image, grade) items, an ImageFolder, a
    DataLoader, a list of (path, grade); see :mod:`robustbench_fundus.data.adapters`).

    ``split`` ("all", "train" or "val"): for a folder, one side of the subject-grouped split of
    :func:`~robustbench_fundus.data.split_records` (``val_fraction``, ``split_seed``), the split
    ``rbf train`` makes; any other data with a split other than "all" is an error.

    ``space``: ``"photo"`` (raw photographs: geometry, corruptions and the model's
    preprocessing apply) or ``"model_input"`` (taken as the model's input); None: the type's
    default: ``(x, y)`` tensors are model input, everything else photographs. Folders,
    synthetic images, the library's datasets and lists of files are photographs only."""
    from ..data.adapters import as_items, check_space
    from ..data.synth import SyntheticDataset, parse_synthetic_spec

    space = check_space(space)
    photo_only = "is read as photographs; data_space='model_input' does not apply"
    n_synth = synthetic_n if data is None else parse_synthetic_spec(data, default_n=synthetic_n)
    if split != "all" and (n_synth is not None or not isinstance(data, (str, os.PathLike))):
        raise RBFError(f"--split {split}: only a folder of photographs is split (the split "
                       "rbf train makes); pass --data DIR or leave --split at all")
    if n_synth is not None:
        if space == "model_input":
            raise RBFError(f"data: synthetic data {photo_only}")
        ds = SyntheticDataset(int(n_synth), size, seed=DEFAULT_SYNTH_SEED)
        idx = limit_indices(len(ds), limit)
        return DataInfo(ds, idx, ds.fingerprint(idx), f"synthetic:{n_synth}@{size}px",
                        meta={"kind": "synthetic", "seed": DEFAULT_SYNTH_SEED,
                              "n_total": int(n_synth), "size": size})
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return _tensor_data(data[0], data[1], limit, space or "model_input", size)
    if isinstance(data, (str, os.PathLike)):
        if space == "model_input":
            raise RBFError(f"--data {data}: a folder {photo_only}")
        from ..data import FundusDataset, read_records, split_records
        root = Path(data)
        if not root.exists():
            raise RBFError(f"--data {root}: no such folder")
        rs = read_records(root)
        records = rs.records
        if not records:
            raise RBFError(f"--data {root}: no labelled images found")
        label = root.name
        split_meta: dict[str, Any] = {}
        if split != "all":
            tr, va = split_records(records, val_fraction=val_fraction, seed=split_seed)
            records = va if split == "val" else tr
            if not records:
                raise RBFError(f"--data {root}: the {split} side of the split (val_fraction "
                               f"{val_fraction}, seed {split_seed}) is empty")
            label = f"{root.name}[{split}]"
            split_meta = {"split": split, "val_fraction": float(val_fraction),
                          "split_seed": int(split_seed), "n_folder": len(rs.records)}
        ds = FundusDataset(records, size, cache_dir=cache_dir)
        idx = limit_indices(len(ds), limit)
        return DataInfo(ds, idx, ds.fingerprint(idx), f"{label}:{len(idx)}@{size}px",
                        meta={"kind": "folder", "root": str(root), "layout": rs.layout,
                              "n_total": len(records), "size": size,
                              "unreadable": len(getattr(rs, "unreadable", []) or []),
                              **split_meta})
    base = data.dataset if _is_plain_loader(data) else data
    if _is_library_dataset(base):   # items are working crops already
        if space == "model_input":
            raise RBFError(f"data: a {type(base).__name__} {photo_only}")
        idx = limit_indices(len(base), limit)
        return DataInfo(base, idx, str(base.fingerprint(idx)), f"{type(base).__name__}:"
                        f"{len(idx)}", meta={"kind": "dataset", "class": type(base).__name__})
    space = space or "photo"
    ds, name = as_items(data, space, size)
    idx = limit_indices(len(ds), limit)
    return DataInfo(ds, idx, str(ds.fingerprint(idx)), f"{name}:{len(idx)}", space,
                    meta={"kind": "dataset", "class": type(data).__name__, "space": space,
                          **({"size": size} if space == "photo" else {})})


def _is_library_dataset(ds: Any) -> bool:
    from ..data import FundusDataset
    from ..data.synth import SyntheticDataset
    return isinstance(ds, (FundusDataset, SyntheticDataset))


def _is_plain_loader(data: Any) -> bool:
    """A DataLoader over one of the library's datasets in order (its items are used as they
    are)."""
    if not isinstance(data, torch.utils.data.DataLoader):
        return False
    return _is_library_dataset(data.dataset) and isinstance(
        getattr(data, "sampler", None), torch.utils.data.SequentialSampler)


def _tensor_data(x: torch.Tensor, y: Any, limit: int | None, space: str, size: int
                 ) -> DataInfo:
    x = x.detach().cpu()
    y = torch.as_tensor(y).detach().cpu().reshape(-1)
    if y.is_floating_point():
        if not torch.equal(y, y.round()):
            raise RBFError("data: labels y must be whole grades 0-4, got fractions")
    y = y.long()
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[0] != y.shape[0]:
        raise RBFError(f"data: expected x (N,3,H,W) and y (N,), got {tuple(x.shape)} and "
                       f"{tuple(y.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    x = x.float()
    if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
        raise RBFError("data: x must be in [0,1] (model-input space, before normalisation)")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= NUM_GRADES):
        raise RBFError(f"data: labels must be grades 0..{NUM_GRADES - 1}")
    if space == "photo":  # photographs given as tensors: working crops, the full flow
        from ..data.adapters import ItemsView
        ds: Any = ItemsView(torch.utils.data.TensorDataset(x, y), "photo", size,
                            name="tensors")
    else:
        ds = TensorItems(x, y)
    idx = limit_indices(len(ds), limit)
    hx = hashlib.blake2b(digest_size=8)
    hx.update(x[idx].contiguous().numpy().tobytes())
    hx.update(y[idx].numpy().tobytes())
    hx.update(f"{space}|{size if space == 'photo' else ''}".encode())
    return DataInfo(ds, idx, "tensors-" + hx.hexdigest(), f"tensors:{len(idx)}", space,
                    meta={"kind": "tensors", "shape": list(x.shape), "space": space})


# ------------------------------------------------------------------------------------------------
# device
# ------------------------------------------------------------------------------------------------
def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` or, when None, CUDA if present else the CPU; under torchrun a bare ``cuda``
    becomes this rank's ``cuda:LOCAL_RANK``."""
    try:
        dev = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
    except (RuntimeError, TypeError):
        raise RBFError(f"--device {device}: not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and "LOCAL_RANK" in os.environ and dev.index is None:
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return dev
