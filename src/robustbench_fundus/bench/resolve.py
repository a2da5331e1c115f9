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
    meta: dict = field(default_factory=dict)


def model_sha256(model: nn.Module, preprocessing: Any = None) -> str:
    """sha256 of a model's identity as benchmarked: its weights (``weights_sha256`` of the
    state_dict, which includes a FundusClassifier's mean/std), its config (a FundusClassifier's
    arch, classes, input size, ...) and the preprocessing that feeds it. Independent of device
    and of the file format the model came from; the same weights fed differently are two
    entries."""
    from ..models import weights_sha256
    h = hashlib.sha256(weights_sha256(model.state_dict()).encode())
    cfg = model.config() if hasattr(model, "config") and callable(model.config) else \
        {"class": type(model).__name__}
    if preprocessing is not None:
        cfg = {**cfg, "preprocessing": preprocessing.identity()}
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
                  preprocessing: Any = None) -> ModelInfo:
    """``model`` (path, ``nn.Module`` or None for the demo model) -> :class:`ModelInfo`."""
    from ..preprocessing import resolve_preprocessing

    meta: dict[str, Any] = {}
    if model is None:
        model = demo_model_path()
        meta["demo_model"] = True
    if isinstance(model, (str, os.PathLike)):
        from ..models import file_sha256, load_model
        path = Path(model)
        module = load_model(path, arch=arch, device=device, trust_checkpoint=trust_checkpoint)
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
    size = pre.input_size
    for k in ("recipe", "data_fingerprint", "epochs"):
        if k in (getattr(module, "meta", None) or {}):
            meta[k] = module.meta[k]
    return ModelInfo(module, model_sha256(module, pre), name or default_name,
                     getattr(module, "arch", None),
                     (int(size[0]), int(size[1])) if size is not None else None, pre, meta)


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
class TensorItems(torch.utils.data.Dataset):
    """``(x, y)`` tensors as a dataset of the bench's items."""

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
    tensor_input: bool = False
    meta: dict = field(default_factory=dict)


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
                 synthetic_n: int = DEFAULT_SYNTH_N) -> DataInfo:
    """A folder, a dataset object, ``(x, y)`` tensors, ``"synthetic[:N]"`` or None (synthetic)."""
    from ..data.synth import SyntheticDataset, parse_synthetic_spec

    n_synth = synthetic_n if data is None else parse_synthetic_spec(data, default_n=synthetic_n)
    if n_synth is not None:
        ds = SyntheticDataset(int(n_synth), size, seed=DEFAULT_SYNTH_SEED)
        idx = limit_indices(len(ds), limit)
        return DataInfo(ds, idx, ds.fingerprint(idx), f"synthetic:{n_synth}@{size}px",
                        meta={"kind": "synthetic", "seed": DEFAULT_SYNTH_SEED,
                              "n_total": int(n_synth), "size": size})
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return _tensor_data(data[0], data[1], limit)
    if isinstance(data, (str, os.PathLike)):
        from ..data import FundusDataset, read_records
        root = Path(data)
        if not root.exists():
            raise RBFError(f"--data {root}: no such folder")
        rs = read_records(root)
        records = rs.records
        if not records:
            raise RBFError(f"--data {root}: no labelled images found")
        ds = FundusDataset(records, size, cache_dir=cache_dir)
        idx = limit_indices(len(ds), limit)
        return DataInfo(ds, idx, ds.fingerprint(idx), f"{root.name}:{len(idx)}@{size}px",
                        meta={"kind": "folder", "root": str(root), "layout": rs.layout,
                              "n_total": len(records), "size": size,
                              "unreadable": len(getattr(rs, "unreadable", []) or [])})
    if isinstance(data, torch.utils.data.Dataset) or (
            hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        return _dataset_data(data, limit)
    raise RBFError(f"data: expected a folder, \"synthetic:N\", a dataset or (x, y) tensors, got "
                   f"{type(data).__name__}")


def _tensor_data(x: torch.Tensor, y: Any, limit: int | None) -> DataInfo:
    x = x.detach().cpu()
    y = torch.as_tensor(y).detach().cpu().long().reshape(-1)
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
    ds = TensorItems(x, y)
    idx = limit_indices(len(ds), limit)
    hx = hashlib.blake2b(digest_size=8)
    hx.update(x[idx].contiguous().numpy().tobytes())
    hx.update(y[idx].numpy().tobytes())
    return DataInfo(ds, idx, "tensors-" + hx.hexdigest(), f"tensors:{len(idx)}",
                    tensor_input=True, meta={"kind": "tensors", "shape": list(x.shape)})


def _dataset_data(data: Any, limit: int | None) -> DataInfo:
    """A dataset object: its own ``fingerprint(indices)`` when it has one (the library's
    datasets do), else its class, size and the labels of the evaluated items."""
    idx = limit_indices(len(data), limit)
    fp_fn = getattr(data, "fingerprint", None)
    if callable(fp_fn):
        fp = str(fp_fn(idx))
    else:
        labels = getattr(data, "labels", None)
        if labels is not None:
            labels = [int(labels[i]) for i in idx]
        else:
            labels = [int(data[i]["label"]) for i in idx]
        fp = _h(type(data).__qualname__, len(data), tuple(idx), tuple(labels))
    return DataInfo(data, idx, fp, f"{type(data).__name__}:{len(idx)}",
                    meta={"kind": "dataset", "class": type(data).__name__})


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
