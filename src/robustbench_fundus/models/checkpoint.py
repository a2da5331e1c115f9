"""Reading any checkpoint a user brings, safely; writing the library's own format.

Formats read (sniffed from the file's bytes, never from its extension):

* **rbf**: the library's own format, a safetensors file whose header metadata (key ``"rbf"``,
  JSON) carries architecture, classes, label names, input size, mean/std, preprocessing,
  training recipe, data fingerprint, metrics and the sha256 of the weights (verified on load).
* **safetensors** without that metadata (e.g. timm / Hugging Face ``model.safetensors``).
* **torch** files (``torch.save``, zip or legacy): a plain state_dict, or a dict holding it under
  ``state_dict``, ``model_state_dict``, ``model``, ``state_dict_ema`` or ``ema`` (timm's
  ``CheckpointSaver`` files carry ``arch``, ``epoch``, ``args`` and ``state_dict[_ema]``).
  Read with ``torch.load(weights_only=True)`` (plus ``argparse.Namespace``, which timm's saver
  stores): no code from the file runs. A file that needs other Python objects (a whole pickled
  model) is refused unless ``trust_checkpoint=True`` (CLI ``--trust-checkpoint``).
* **TorchScript** archives: weights are taken from the archive's ``state_dict``; the archive's
  own code is only run when its architecture cannot be identified (then the scripted module
  itself is the backbone).

Key prefixes ``module.`` (DataParallel/DDP), ``_orig_mod.`` (torch.compile) and ``backbone.``
(a :class:`FundusClassifier` state_dict) are stripped. Tensors are mapped to the requested
device, so GPU checkpoints load on CPU-only machines and vice versa. The architecture comes
from, in order: the ``arch`` argument, the file's metadata, the checkpoint's ``arch`` field, and
a guess comparing key names and shapes with every registered architecture.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import pickle
import re
import struct
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, RBFError
from .archs import REGISTRY, classifier_key, create_model, get_spec, signature
from .wrapper import NUM_CLASSES, FundusClassifier

FORMAT_NAME = "robustbench_fundus"
FORMAT_VERSION = 1
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "state_dict_ema", "ema",
                  "model_ema", "net", "network")
EMA_KEYS = ("state_dict_ema", "ema", "model_ema")
PREFIXES = ("module.", "_orig_mod.", "backbone.")
CONFIG_FIELDS = ("arch", "num_classes", "head", "head_options", "label_names", "input_size",
                 "mean", "std", "preprocessing")
_FILE_FIELDS = ("format", "format_version", "weights_sha256")  # facts about one file
_STAT_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
TRUST_HINT = ("pass --trust-checkpoint (trust_checkpoint=True) only if you trust its source, "
              "or re-save its state_dict")


# -- hashing -------------------------------------------------------------------------------------
def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, bytes) of every tensor in key order: independent of the
    file format and of the device the tensors live on."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().to("cpu").contiguous()
        h.update(f"{k}|{str(t.dtype).replace('torch.', '')}|{list(t.shape)}\n".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# -- reading -------------------------------------------------------------------------------------
@dataclass
class RawCheckpoint:
    """What was read from a file, before it is put into a model."""

    path: Path
    format: str                       # rbf | safetensors | torch | timm | torchscript | pickle
    state_dict: dict[str, torch.Tensor]
    safe: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)   # rbf metadata or timm extras
    arch: str | None = None           # as named by the file (may not be resolvable)
    container_key: str | None = None
    prefixes: list[str] = field(default_factory=list)
    module: nn.Module | None = None   # TorchScript / trusted pickled module
    wrapper: dict[str, Any] = field(default_factory=dict)  # mean/std from a wrapper state_dict


def _fail(path: Path, msg: str) -> CheckpointError:
    return CheckpointError(f"{path}: {msg}")


def _sniff(path: Path) -> str:
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path} (check the path)")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    size = path.stat().st_size
    if size == 0:
        raise _fail(path, "is empty (0 bytes), not a checkpoint; the download or save failed")
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, UnicodeDecodeError, ValueError, OSError, EOFError,
                struct.error, NotImplementedError):
            raise _fail(path, "is a damaged or truncated zip/torch file; save or download it "
                              "again") from None
        if any("/code/" in n or n.endswith("constants.pkl") for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        raise _fail(path, "is a zip archive but not a PyTorch checkpoint (no data.pkl inside)")
    if len(head) >= 10 and head[8:9] == b"{":
        n = struct.unpack("<Q", head[:8])[0]
        if 0 < n <= size - 8:
            return "safetensors"
    if head[:1] == b"\x80":  # pickle protocol >= 2: legacy torch.save
        return "pickle"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype", b"<html", b"<head", b"<?xml", b"<")):
        raise _fail(path, "is not a checkpoint: it is an HTML/XML page (often a download "
                          "or login page saved instead of the file); download the file itself")
    if text.startswith((b"version https://git-lfs",)):
        raise _fail(path, "is a Git LFS pointer, not a checkpoint; run `git lfs pull`")
    printable = sum(32 <= c < 127 or c in (9, 10, 13) for c in head) / max(1, len(head))
    kind = "a text file" if printable > 0.95 else "of an unknown binary format"
    raise _fail(path, f"is not a checkpoint: it is {kind} (expected safetensors, a torch.save "
                      "file or a TorchScript archive)")


def _unsafe_error(path: Path, exc: BaseException) -> CheckpointError:
    found = re.findall(r"GLOBAL ([\w.]+)", str(exc))
    what = f"Python object {found[0]}" if found else "arbitrary Python objects"
    return _fail(path, f"refused to load: it needs arbitrary unpickling (it contains the {what}, "
                       "e.g. a whole pickled model), which can run code from the file; nothing "
                       f"was loaded. {TRUST_HINT[0].upper()}{TRUST_HINT[1:]}")


def _torch_load(path: Path, trust: bool, map_location: Any) -> Any:
    try:
        if trust:
            return torch.load(path, map_location=map_location, weights_only=False)
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if not trust and ("GLOBAL" in msg or "Unsupported" in msg or "weights only" in msg.lower()):
            raise _unsafe_error(path, exc) from None
        raise _fail(path, f"could not be unpickled ({_short(exc)}); the file is damaged or not "
                          "a checkpoint") from None
    except CheckpointError:
        raise
    except (AttributeError, ModuleNotFoundError) as exc:
        if trust:  # a pickled object whose class is not importable here
            raise _fail(path, f"is a pickled model whose code is not importable here "
                              f"({_short(exc)}); import or install the package defining it, or "
                              "re-save its state_dict where it was made") from None
        raise _fail(path, f"could not be read as a torch file ({_short(exc)})") from None
    except Exception as exc:
        raise _fail(path, f"could not be read as a torch file ({_short(exc)}); it is damaged, "
                          "truncated or not a checkpoint") from None


def _short(exc: BaseException, n: int = 160) -> str:
    s = " ".join(str(exc).split())
    return s if len(s) <= n else s[: n - 3] + "..."


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and \
        all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _find_weights(obj: Any, prefer_ema: bool, depth: int = 0) -> tuple[Any, str | None]:
    """Return (state_dict-or-module, container key path) inside a loaded object."""
    if isinstance(obj, nn.Module) or _is_state_dict(obj):
        return obj, None
    if isinstance(obj, dict) and depth < 3:
        keys = list(CONTAINER_KEYS)
        if prefer_ema:
            keys = [k for k in keys if k in EMA_KEYS] + [k for k in keys if k not in EMA_KEYS]
        for k in keys:
            if k in obj and obj[k] is not None:
                found, sub = _find_weights(obj[k], prefer_ema, depth + 1)
                if found is not None:
                    return found, k if sub is None else f"{k}.{sub}"
        # a state_dict with a few non-tensor entries mixed in (e.g. a stored version number)
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if len(tensors) >= max(1, len(obj) // 2):
            return tensors, None
    return None, None


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str],
                                                            dict[str, Any]]:
    stripped: list[str] = []
    wrapper: dict[str, Any] = {}
    while True:
        # a FundusClassifier.state_dict(): backbone.* plus the mean/std buffers
        if "mean" in sd and "std" in sd and any(k.startswith("backbone.") for k in sd):
            wrapper = {"mean": sd["mean"].flatten().tolist(), "std": sd["std"].flatten().tolist()}
            sd = {k: v for k, v in sd.items() if k not in ("mean", "std")}
        for p in PREFIXES:
            if sd and all(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items()}
                stripped.append(p)
                break
        else:
            return sd, stripped, wrapper


def _check_metadata(path: Path, meta: Any) -> None:
    """The library's metadata has the types this version reads; else a one-line error."""
    def bad(field: str, v: Any) -> CheckpointError:
        return _fail(path, f"has robustbench_fundus metadata this version cannot use "
                           f"({field}: {str(v)[:40]!r}); re-save it with save_checkpoint")

    if not isinstance(meta, dict):
        raise bad("metadata", type(meta).__name__)

    def num(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    checks = {
        "arch": lambda v: isinstance(v, str) and v,
        "num_classes": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "input_size": lambda v: (isinstance(v, int) and not isinstance(v, bool) and v > 0) or (
            isinstance(v, (list, tuple)) and len(v) == 2 and all(
                isinstance(u, int) and not isinstance(u, bool) and u > 0 for u in v)),
        "mean": lambda v: isinstance(v, (list, tuple)) and len(v) == 3 and all(map(num, v)),
        "std": lambda v: isinstance(v, (list, tuple)) and len(v) == 3 and all(
            num(u) and u > 0 for u in v),
        "label_names": lambda v: isinstance(v, (list, tuple)) and all(
            isinstance(u, str) for u in v),
        "preprocessing": lambda v: isinstance(v, str),
        "head": lambda v: v is None or isinstance(v, str),
        "head_options": lambda v: v is None or isinstance(v, dict),
    }
    for key, ok in checks.items():
        if key in meta and meta[key] is not None and not ok(meta[key]):
            raise bad(key, meta[key])
    if meta.get("head") is not None:
        from ..heads import make_head
        try:
            make_head(meta["head"], **(meta.get("head_options") or {}))
        except RBFError:
            raise bad("head", meta["head"]) from None
    names, n = meta.get("label_names"), meta.get("num_classes")
    if names is not None and n is not None and len(names) != n:
        raise bad("label_names", f"{len(names)} names for {n} outputs")


def read_checkpoint(path: str | os.PathLike, *, trust_checkpoint: bool = False,
                    map_location: Any = "cpu", prefer_ema: bool = False) -> RawCheckpoint:
    """Read a checkpoint file into a :class:`RawCheckpoint` (weights + what the file says)."""
    path = Path(path)
    kind = _sniff(path)
    device = torch.device(map_location) if map_location is not None else torch.device("cpu")
    if kind == "safetensors":
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file
        try:
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
            sd = load_file(str(path), device=str(device))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise _fail(path, f"is a damaged safetensors file ({_short(exc)})") from None
        meta: dict[str, Any] = {}
        fmt = "safetensors"
        if "rbf" in header:
            try:
                meta = json.loads(header["rbf"])
            except json.JSONDecodeError:
                raise _fail(path, "has unreadable robustbench_fundus metadata (bad JSON)") from None
            _check_metadata(path, meta)
            fmt = "rbf"
        raw = RawCheckpoint(path, fmt, sd, metadata=meta, arch=meta.get("arch"))
    elif kind == "torchscript":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # "jit.load is deprecated"
                module = torch.jit.load(str(path), map_location=device)
        except Exception as exc:
            raise _fail(path, f"is a damaged TorchScript archive ({_short(exc)})") from None
        sd = {k: v for k, v in module.state_dict().items()}
        raw = RawCheckpoint(path, "torchscript", sd, module=module,
                            metadata={"original_name": getattr(module, "original_name", None)})
    else:
        obj = _torch_load(path, trust_checkpoint, device)
        found, key = _find_weights(obj, prefer_ema)
        if found is None:
            what = f"a dict with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, dict) \
                else f"a {type(obj).__name__}"
            raise _fail(path, f"holds no model weights ({what}); expected a state_dict or a dict "
                              f"with one of {', '.join(CONTAINER_KEYS[:5])}")
        extras = {}
        if isinstance(obj, dict):
            for k in ("epoch", "metric", "version", "best_metric"):
                if isinstance(obj.get(k), (int, float, str)):
                    extras[k] = obj[k]
            if isinstance(obj.get("args"), argparse.Namespace):
                extras["args"] = {k: v for k, v in vars(obj["args"]).items()
                                  if isinstance(v, (int, float, str, bool, type(None), list, tuple))}
        module = found if isinstance(found, nn.Module) else None
        sd = dict(found.state_dict()) if module is not None else dict(found)
        arch = obj.get("arch") if isinstance(obj, dict) and isinstance(obj.get("arch"), str) else None
        is_timm = isinstance(obj, dict) and "arch" in obj and ("saver" in obj or "epoch" in obj)
        fmt = "pickle" if module is not None else ("timm" if is_timm else "torch")
        raw = RawCheckpoint(path, fmt, sd, safe=not (trust_checkpoint and module is not None),
                            metadata=extras, arch=arch, container_key=key, module=module)
        if module is not None and arch is None:
            raw.metadata["class"] = type(module).__name__
    raw.state_dict, raw.prefixes, raw.wrapper = _strip_prefixes(raw.state_dict)
    if not raw.state_dict:
        raise _fail(path, "contains no tensors")
    return raw


# -- matching a state_dict to an architecture ------------------------------------------------------
def _head_key(arch: str, sig: dict[str, tuple[int, ...]]) -> str | None:
    key = classifier_key(arch)
    if key and key in sig:
        return key
    mats = [k for k, s in sig.items() if k.endswith(".weight") and len(s) == 2]
    return mats[-1] if mats else None


def _num_params(sd: dict[str, torch.Tensor]) -> int:
    return int(sum(v.numel() for k, v in sd.items() if not k.endswith(_STAT_SUFFIXES)))


def _head_classes(sd: dict[str, torch.Tensor], arch: str | None) -> int | None:
    if arch is not None:
        try:
            key = _head_key(arch, signature(arch))
            if key in sd and sd[key].dim() == 2:
                return int(sd[key].shape[0])
        except RBFError:
            pass
    mats = [k for k, v in sd.items() if k.endswith(".weight") and v.dim() == 2]
    return int(sd[mats[-1]].shape[0]) if mats else None


def _match(sd: dict[str, torch.Tensor], arch: str) -> tuple[bool, float]:
    """(exact match up to the head's size, fraction of the architecture's keys matched)."""
    sig = signature(arch)
    head = _head_key(arch, sig)
    head_prefix = head.rsplit(".", 1)[0] + "." if head else None
    same = 0
    for k, shape in sig.items():
        if k in sd and (tuple(sd[k].shape) == shape or
                        (head_prefix and k.startswith(head_prefix) and sd[k].dim() == len(shape))):
            same += 1
    exact = same == len(sig) and set(sd) == set(sig)
    return exact, same / max(len(sig), len(sd))


def guess_arch(sd: dict[str, torch.Tensor]) -> tuple[str | None, list[tuple[str, float]]]:
    """Compare key names and shapes with every registered architecture (meta-device builds,
    cached). Returns (the architecture that matches exactly, or None; candidates by score)."""
    scores = []
    for name in REGISTRY.names():
        try:
            exact, frac = _match(sd, name)
        except Exception:  # a plugin that cannot be built on the meta device
            continue
        scores.append((name, frac, exact))
    scores.sort(key=lambda t: -t[1])
    exact = [n for n, _, e in scores if e]
    return (exact[0] if len(exact) >= 1 else None), [(n, round(f, 3)) for n, f, _ in scores]


def check_state_dict(sd: dict[str, torch.Tensor], arch: str, num_classes: int = NUM_CLASSES,
                     path: str | os.PathLike = "checkpoint") -> None:
    """Raise a one-line CheckpointError if ``sd`` does not fit ``arch`` with ``num_classes``
    outputs."""
    sig = signature(arch, num_classes)
    head = _head_key(arch, sig)
    if head and head in sd and sd[head].dim() == 2 and sd[head].shape[0] != sig[head][0]:
        raise CheckpointError(
            f"{path}: checkpoint has {sd[head].shape[0]} outputs where {num_classes} were "
            f"expected ({head} is {tuple(sd[head].shape)})")
    missing = [k for k in sig if k not in sd]
    unexpected = [k for k in sd if k not in sig]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
        raise CheckpointError(f"{path}: weights do not fit architecture {arch!r}: "
                              f"{'; '.join(parts)}; is --arch right?")
    bad = [f"{k} {tuple(sd[k].shape)} vs {sig[k]}" for k in sig if tuple(sd[k].shape) != sig[k]]
    if bad:
        raise CheckpointError(f"{path}: weights do not fit architecture {arch!r}: {len(bad)} "
                              f"tensors of the wrong shape ({_few(bad)}); is --arch right?")


def _few(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f", ... (+{len(items) - n} more)" if len(items) > n else "")


def check_finite(sd: dict[str, torch.Tensor], path: str | os.PathLike = "checkpoint") -> None:
    """Raise a CheckpointError naming the tensors holding NaN or infinite values."""
    bad = []
    for k, v in sd.items():
        if v.is_floating_point() or v.is_complex():
            finite = torch.isfinite(v)
            if not bool(finite.all()):
                nan = int(torch.isnan(v).sum())
                bad.append(f"{k} ({nan} NaN, {int((~finite).sum()) - nan} inf)")
    if bad:
        raise CheckpointError(f"{path}: has non-finite weights in {len(bad)} tensors: {_few(bad)}; "
                              "the training diverged or the file is damaged")


def _resolve_arch(raw: RawCheckpoint, arch: str | None) -> tuple[str | None, str | None, list]:
    """(architecture, where it came from, guess candidates)."""
    if arch:
        get_spec(arch)  # unknown -> RBFError with close names
        return arch, "given", []
    if raw.format == "rbf" and raw.arch:
        return raw.arch, "metadata", []
    if raw.arch:
        try:
            get_spec(raw.arch)
            return raw.arch, "checkpoint", []
        except RBFError:
            pass  # e.g. timm's saver without args stores the class name ("resnet")
    guessed, cands = guess_arch(raw.state_dict)
    if guessed:
        return guessed, "guessed", cands
    return None, None, cands


# -- loading ---------------------------------------------------------------------------------------
def _declared_head(raw: RawCheckpoint, head: str | None, head_options: dict | None
                   ) -> tuple[str | None, dict]:
    """The head a checkpoint is read with: given, recorded in the library's metadata (files
    written before heads were recorded are classifiers), or None (not declared)."""
    if head is not None:
        return head, dict(head_options or {})
    if raw.format == "rbf":
        m = raw.metadata
        return (m.get("head", "classification") if "head" in m else "classification",
                dict(m.get("head_options") or {}))
    return None, dict(head_options or {})


def _check_head_width(path: Path, head: str | None, opts: dict, width: int | None) -> None:
    if head is None or width is None:
        return
    from ..heads import check_output, make_head
    try:
        check_output(torch.zeros(1, int(width)), make_head(head, **opts))
    except RBFError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def load_model(path: str | os.PathLike, arch: str | None = None, trust_checkpoint: bool = False,
               device: str | torch.device = "cpu", *, num_classes: int | None = None,
               head: str | None = None, head_options: dict | None = None,
               prefer_ema: bool = False) -> FundusClassifier:
    """Load any supported checkpoint into an eval-mode :class:`FundusClassifier` on ``device``.

    The output width comes from the file (its metadata, or the classifier weights), ``head``
    (see :mod:`robustbench_fundus.heads`) from the argument, else from the library's metadata;
    a foreign file's head is left undeclared (None: the benchmark then reads it as a classifier
    and refuses a width that does not fit, naming the heads that would).

    Errors are :class:`~robustbench_fundus.errors.CheckpointError` / ``RBFError`` with a one-line
    message (missing file, not a checkpoint, unsafe pickle, unknown or unidentifiable
    architecture, a head that does not fit the width, missing/unexpected keys, NaN/inf
    weights)."""
    path = Path(path)
    raw = read_checkpoint(path, trust_checkpoint=trust_checkpoint, map_location="cpu",
                          prefer_ema=prefer_ema)
    check_finite(raw.state_dict, path)
    name, source, cands = _resolve_arch(raw, arch)
    meta = dict(raw.metadata) if raw.format == "rbf" else {}
    if raw.format == "rbf":
        want = meta.get("weights_sha256")
        if want and weights_sha256(raw.state_dict) != want:
            raise CheckpointError(f"{path}: weights do not match the sha256 in its metadata; the "
                                  "file was modified or damaged")
    head, head_opts = _declared_head(raw, head, head_options)
    if name is None:
        if raw.module is not None:  # TorchScript or trusted pickled module of unknown arch
            backbone = raw.module
            width = num_classes or NUM_CLASSES
            _check_head_width(path, head, head_opts, num_classes)
            kw = _wrapper_kw(raw, None)
            try:
                model = FundusClassifier(backbone, arch=f"{raw.format}:{type(backbone).__name__}",
                                         num_classes=width, head=head, head_options=head_opts,
                                         **kw)
            except ValueError as exc:
                raise CheckpointError(f"{path}: {exc}; pass num_classes or --head") from None
            model.meta["loaded_from"] = _provenance(raw, None)
            return model.to(device).eval()
        best = ", ".join(f"{n} {f:.0%}" for n, f in cands[:2] if f > 0)
        hint = f" (closest: {best})" if best else ""
        raise CheckpointError(f"{path}: cannot tell which architecture these weights are for"
                              f"{hint}; pass --arch NAME (see `rbf list models`)")
    width = meta.get("num_classes") if raw.format == "rbf" else None
    width = int(width or _head_classes(raw.state_dict, name) or NUM_CLASSES)
    if num_classes is not None and int(num_classes) != width:
        raise CheckpointError(f"{path}: checkpoint has {width} outputs; {num_classes} were "
                              "asked for")
    _check_head_width(path, head, head_opts, width)
    check_state_dict(raw.state_dict, name, width, path)
    kw = _wrapper_kw(raw, name)
    extra = {k: v for k, v in meta.items() if k not in CONFIG_FIELDS + _FILE_FIELDS}
    model = create_model(name, num_classes=width, meta=extra, head=head,
                         head_options=head_opts, **kw)
    model.backbone.load_state_dict(raw.state_dict, strict=True)
    model.meta["loaded_from"] = _provenance(raw, source)
    return model.to(device).eval()


def _wrapper_kw(raw: RawCheckpoint, arch: str | None) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if raw.format == "rbf":
        m = raw.metadata
        for k in ("input_size", "mean", "std", "preprocessing", "label_names"):
            if m.get(k) is not None:
                kw[k] = m[k]
    elif raw.wrapper:
        kw.update(raw.wrapper)
    return kw


def _provenance(raw: RawCheckpoint, source: str | None) -> dict[str, Any]:
    return {"path": str(raw.path), "file_sha256": file_sha256(raw.path), "format": raw.format,
            "arch_source": source,
            "container_key": raw.container_key, "prefixes": raw.prefixes}


# -- saving ----------------------------------------------------------------------------------------
def save_checkpoint(model: FundusClassifier, path: str | os.PathLike, **metadata: Any) -> Path:
    """Write ``model`` in the library's format: safetensors weights (the backbone's state_dict,
    loadable by any safetensors reader) with JSON metadata under the header key ``"rbf"``:
    the model's config (arch, classes, label names, input size, mean/std, preprocessing), its
    ``meta`` dict, the given ``metadata`` (e.g. ``recipe=``, ``data_fingerprint=``, ``epochs=``,
    ``val_metrics=``), versions, a timestamp and ``weights_sha256``. Written atomically."""
    from safetensors.torch import save_file

    from .. import __version__
    if not isinstance(model, FundusClassifier):
        raise TypeError("save_checkpoint expects a FundusClassifier (see create_model)")
    path = Path(path)
    sd = {k: v.detach().to("cpu").contiguous().clone()
          for k, v in model.backbone.state_dict().items()}
    meta: dict[str, Any] = {k: v for k, v in model.meta.items() if k != "loaded_from"}
    meta.update(metadata)
    meta.update(model.config())
    try:
        import timm
        timm_version = timm.__version__
    except Exception:  # pragma: no cover
        timm_version = None
    meta.update({"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                 "library_version": __version__, "torch_version": torch.__version__,
                 "timm_version": timm_version,
                 "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                 "weights_sha256": weights_sha256(sd)})
    try:
        header = json.dumps(meta, default=_json_default, sort_keys=True)
    except TypeError as exc:
        raise RBFError(f"checkpoint metadata must be JSON-able: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(sd, str(tmp), metadata={"format": "pt", "rbf": header})
    os.replace(tmp, path)
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, (Path, torch.device, torch.dtype)):
        return str(o)
    if isinstance(o, torch.Tensor) and o.numel() <= 64:
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if hasattr(o, "__dataclass_fields__"):
        import dataclasses
        return dataclasses.asdict(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


# -- inspecting ------------------------------------------------------------------------------------
_FORMAT_LABELS = {
    "rbf": "robustbench_fundus (safetensors + metadata)",
    "safetensors": "safetensors",
    "torch": "torch.save state_dict",
    "timm": "timm CheckpointSaver",
    "torchscript": "TorchScript archive",
    "pickle": "pickled model (unsafe)",
}


def inspect_checkpoint(path: str | os.PathLike, arch: str | None = None,
                       trust_checkpoint: bool = False) -> dict[str, Any]:
    """Describe a checkpoint without building the model: format, architecture (given, from the
    file, or guessed), classes, parameter count, input size, sha256, safety and whether it loads.

    A missing file or a file that is not a checkpoint raises; a checkpoint that is unsafe or does
    not fit its architecture is reported (``loads: False`` with ``error``)."""
    path = Path(path)
    _sniff(path)  # raises on missing / not-a-checkpoint
    info: dict[str, Any] = {"path": str(path), "format": None, "format_label": None,
                            "arch": None, "arch_source": None, "num_classes": None,
                            "head": None, "head_source": None, "heads_that_fit": None,
                            "num_params": None, "input_size": None, "mean": None, "std": None,
                            "preprocessing": None, "file_sha256": file_sha256(path),
                            "weights_sha256": None, "safe": None, "loads": False, "error": None,
                            "container_key": None, "prefixes": [], "num_tensors": None,
                            "metadata": {}}
    try:
        raw = read_checkpoint(path, trust_checkpoint=trust_checkpoint)
    except CheckpointError as exc:
        if "arbitrary unpickling" in str(exc):
            info.update(format="pickle", format_label=_FORMAT_LABELS["pickle"], safe=False,
                        error=str(exc))
            return info
        raise
    info.update(format=raw.format, format_label=_FORMAT_LABELS.get(raw.format, raw.format),
                safe=raw.safe and not (raw.format == "pickle"),
                container_key=raw.container_key, prefixes=raw.prefixes,
                num_tensors=len(raw.state_dict), num_params=_num_params(raw.state_dict),
                weights_sha256=weights_sha256(raw.state_dict),
                metadata={k: v for k, v in raw.metadata.items() if k not in CONFIG_FIELDS})
    try:
        name, source, cands = _resolve_arch(raw, arch)
    except RBFError as exc:
        info["error"] = str(exc)
        return info
    info["arch"], info["arch_source"] = name, source
    if not name and cands:
        info["candidates"] = cands[:3]
    m = raw.metadata if raw.format == "rbf" else {}
    info["num_classes"] = m.get("num_classes") or _head_classes(raw.state_dict, name)
    from ..heads import fitting_heads
    declared, _ = _declared_head(raw, None, None)
    width = info["num_classes"]
    if width is not None:
        info["heads_that_fit"] = fitting_heads(int(width))
    if declared is not None:
        info["head"], info["head_source"] = declared, "metadata"
    elif width is not None and "classification" in fitting_heads(int(width)):
        info["head"], info["head_source"] = "classification", "assumed"
    if name:
        spec = get_spec(name)
        info["input_size"] = list(m.get("input_size") or spec.input_size)
        info["mean"] = list(m.get("mean") or raw.wrapper.get("mean") or spec.mean)
        info["std"] = list(m.get("std") or raw.wrapper.get("std") or spec.std)
        info["preprocessing"] = m.get("preprocessing", spec.preprocessing)
    try:
        check_finite(raw.state_dict, path)
        if name is None:
            if raw.module is None:
                raise CheckpointError(f"{path}: cannot tell which architecture these weights are "
                                      "for; pass --arch NAME")
        else:
            check_state_dict(raw.state_dict, name, int(width or NUM_CLASSES), path)
        if width is not None and not info["heads_that_fit"]:
            raise CheckpointError(f"{path}: {width} outputs per image: no head fits "
                                  "(classification 5, regression 1, ordinal 4, binary 1 or 2)")
        if raw.format == "rbf" and m.get("weights_sha256") not in (None, info["weights_sha256"]):
            raise CheckpointError(f"{path}: weights do not match the sha256 in its metadata")
        info["loads"] = True
    except RBFError as exc:
        info["error"] = str(exc)
    return info
