"""Architecture registry: timm-backed reference architectures plus custom ones.

Each registry entry is a :class:`ModelSpec` (a typed config: builder, default input size,
mean/std, classifier key, the preprocessing its models are declared with, ``"graham"`` unless
registered otherwise). Custom architectures register with :func:`register_model` (a
decorator on a factory ``fn(num_classes=5, **kw) -> nn.Module``) or through the
``robustbench_fundus.models`` entry-point group; a plain factory registered with
``REGISTRY.register(fn, input_size=..., mean=..., std=...)`` works too. Any other timm model
name passes through to :func:`timm.create_model` with timm's own default input size and
mean/std.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..errors import RBFError
from ..preprocessing.stage import DEFAULT_ENHANCEMENT, enhancement_name
from ..registry import Registry
from .wrapper import (IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD, NUM_CLASSES,
                      FundusClassifier)

REGISTRY: Registry = Registry("model", "robustbench_fundus.models")


@dataclass(frozen=True)
class ModelSpec:
    """How to build one architecture and feed it."""

    name: str
    builder: Callable[..., nn.Module]  # builder(num_classes=..., **kw) -> backbone
    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    classifier: str | None = None  # module name of the final linear layer, e.g. "fc"
    description: str = ""
    source: str = "builtin"
    info: dict[str, Any] = field(default_factory=dict)
    #: the preprocessing models of this architecture declare (``"graham"`` or ``"none"``); what
    #: :func:`create_model` gives the FundusClassifier unless the caller passes ``preprocessing=``
    preprocessing: str = DEFAULT_ENHANCEMENT

    def __post_init__(self) -> None:
        # validated (one-line RBFError) and normalised through the preprocessing stage
        object.__setattr__(self, "preprocessing",
                           enhancement_name(self.preprocessing, f"{self.name}: preprocessing"))

    def build(self, num_classes: int = NUM_CLASSES, **kw: Any) -> nn.Module:
        return self.builder(num_classes=num_classes, **kw)


def register_model(name: str | None = None, *, input_size: tuple[int, int] | int = (224, 224),
                   mean=IMAGENET_MEAN, std=IMAGENET_STD, classifier: str | None = None,
                   description: str = "", override: bool = False,
                   preprocessing: str = DEFAULT_ENHANCEMENT, **info: Any):
    """Decorator registering a backbone factory ``fn(num_classes=5, **kw) -> nn.Module``.

    ``preprocessing``: the preprocessing the architecture's models declare (``"graham"`` or
    ``"none"``; see :mod:`robustbench_fundus.preprocessing`)."""
    pre = enhancement_name(preprocessing, "preprocessing")  # fail here, not later

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        doc = description or (fn.__doc__ or "").strip().split("\n")[0]
        spec = ModelSpec(key, fn, (int(size[0]), int(size[1])), tuple(mean), tuple(std),
                         classifier, doc, REGISTRY._current_source, dict(info), pre)
        REGISTRY.register(spec, name=key, override=override, **info)
        return fn

    return deco


def _timm_builder(timm_name: str, **fixed: Any) -> Callable[..., nn.Module]:
    def build(num_classes: int = NUM_CLASSES, **kw: Any) -> nn.Module:
        import timm
        kw.setdefault("pretrained", False)
        try:
            return timm.create_model(timm_name, num_classes=num_classes, **{**fixed, **kw})
        except (RuntimeError, OSError) as exc:
            if kw.get("pretrained"):
                raise RBFError(f"could not get pretrained weights for {timm_name!r} "
                               f"({type(exc).__name__}); without internet access use "
                               "pretrained=False or load a checkpoint") from None
            raise
    build.__name__ = timm_name
    return build


# -- the reference architectures -----------------------------------------------------------------
# Input sizes are each network's native resolution (EfficientNet paper: b0 224, b1 240, b2 260,
# b3 300; Inception-v3 299). Mean/std: ImageNet's, Inception's (0.5) for inception_v3.
_REFERENCE = [
    ("resnet18", 224, IMAGENET_MEAN, IMAGENET_STD, "fc", "ResNet-18 (timm)"),
    ("resnet50", 224, IMAGENET_MEAN, IMAGENET_STD, "fc", "ResNet-50 (timm)"),
    ("inception_v3", 299, INCEPTION_MEAN, INCEPTION_STD, "fc", "Inception-v3 (timm, 299 px)"),
    ("efficientnet_b0", 224, IMAGENET_MEAN, IMAGENET_STD, "classifier", "EfficientNet-B0 (timm)"),
    ("efficientnet_b1", 240, IMAGENET_MEAN, IMAGENET_STD, "classifier", "EfficientNet-B1 (timm)"),
    ("efficientnet_b2", 260, IMAGENET_MEAN, IMAGENET_STD, "classifier", "EfficientNet-B2 (timm)"),
    ("efficientnet_b3", 300, IMAGENET_MEAN, IMAGENET_STD, "classifier", "EfficientNet-B3 (timm)"),
]
REFERENCE_ARCHS = tuple(r[0] for r in _REFERENCE)

for _name, _size, _mean, _std, _cls, _desc in _REFERENCE:
    register_model(_name, input_size=_size, mean=_mean, std=_std, classifier=_cls,
                   description=_desc, backend="timm")(_timm_builder(_name))


@register_model("tiny_cnn", input_size=224, classifier="head",
                description="5-stage conv+BN CNN, avg+max pooling, 0.19 M params (tests, demo)")
def tiny_cnn(num_classes: int = NUM_CLASSES, **kw: Any) -> nn.Module:
    from .tiny import TinyCNN
    kw.pop("pretrained", None)
    return TinyCNN(num_classes=num_classes, **kw)


# -- lookup --------------------------------------------------------------------------------------
def _spec_from_entry(name: str) -> ModelSpec:
    entry = REGISTRY.entry(name)
    obj = entry.obj
    if isinstance(obj, ModelSpec):
        return obj
    if isinstance(obj, nn.Module):
        raise RBFError(f"model {name!r} is registered as a module instance; register a factory "
                       "fn(num_classes=5, **kw) -> nn.Module or a ModelSpec instead")
    if callable(obj):
        info = dict(entry.info)
        size = info.pop("input_size", (224, 224))
        size = (size, size) if isinstance(size, int) else tuple(size)
        pre = info.pop("preprocessing", DEFAULT_ENHANCEMENT)
        return ModelSpec(name, obj, (int(size[0]), int(size[1])),
                         tuple(info.pop("mean", IMAGENET_MEAN)), tuple(info.pop("std", IMAGENET_STD)),
                         info.pop("classifier", None), str(info.pop("description", "")),
                         entry.source, info, pre)
    raise RBFError(f"model {name!r} is registered as {type(obj).__name__}, which is neither a "
                   "ModelSpec nor a factory")


@functools.lru_cache(maxsize=None)
def _timm_names() -> tuple[str, ...]:
    import timm
    return tuple(timm.list_models())


def _timm_spec(name: str) -> ModelSpec | None:
    import timm
    if not timm.is_model(name):
        return None
    cfg = timm.models.get_pretrained_cfg(name) if hasattr(timm.models, "get_pretrained_cfg") else None
    cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else (cfg or {})
    size = tuple(cfg.get("input_size", (3, 224, 224)))[-2:]
    return ModelSpec(name, _timm_builder(name), (int(size[0]), int(size[1])),
                     tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD)),
                     cfg.get("classifier"), "timm model (pass-through)", "timm")


def get_spec(arch: str) -> ModelSpec:
    """The :class:`ModelSpec` for a registered name or any timm model name.

    Unknown names raise :class:`RBFError` naming the closest registered and timm names."""
    if not isinstance(arch, str) or not arch:
        raise RBFError(f"architecture name must be a non-empty string, got {arch!r}")
    if arch in REGISTRY:
        return _spec_from_entry(arch)
    try:
        spec = _timm_spec(arch)
    except ImportError:  # pragma: no cover - timm is a dependency
        spec = None
    if spec is not None:
        return spec
    pool = list(REGISTRY.names()) + list(_timm_names())
    from ..registry import close_matches
    close = close_matches(arch, pool, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `rbf list models`"
    raise RBFError(f"unknown architecture {arch!r} (neither registered nor a timm model){hint}")


def create_model(arch: str, num_classes: int | None = None, **kw: Any) -> FundusClassifier:
    """Build ``arch`` (random init unless ``pretrained=True``) wrapped in a FundusClassifier.

    Wrapper keywords: ``input_size``, ``mean``, ``std``, ``label_names``, ``preprocessing``
    (default: the spec's), ``head`` (default ``"classification"``; see
    :mod:`robustbench_fundus.heads`) and ``head_options``, ``meta``; every other keyword goes to
    the architecture's builder (e.g. ``drop_rate``). ``num_classes``: the output width
    (default: the head's, 5 for classification, 1 for regression and binary, 4 for ordinal)."""
    spec = get_spec(arch)
    wrap = {k: kw.pop(k) for k in ("input_size", "mean", "std", "label_names", "preprocessing",
                                   "meta", "head", "head_options") if k in kw}
    if num_classes is None:
        from ..heads import head_width, make_head
        num_classes = head_width(make_head(wrap.get("head") or "classification",
                                           **(wrap.get("head_options") or {})))
    wrap.setdefault("head", "auto")
    backbone = spec.build(num_classes=num_classes, **kw)
    return FundusClassifier(backbone, arch=spec.name, num_classes=num_classes,
                            input_size=wrap.pop("input_size", spec.input_size),
                            mean=wrap.pop("mean", spec.mean), std=wrap.pop("std", spec.std),
                            preprocessing=wrap.pop("preprocessing", spec.preprocessing), **wrap)


@functools.lru_cache(maxsize=64)
def _signature(arch: str, num_classes: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """(key, shape) of the architecture's state_dict, built on the meta device (no memory)."""
    spec = get_spec(arch)
    with torch.device("meta"):
        m = spec.build(num_classes=num_classes)
    return tuple((k, tuple(v.shape)) for k, v in m.state_dict().items())


def signature(arch: str, num_classes: int = NUM_CLASSES) -> dict[str, tuple[int, ...]]:
    """{state_dict key: shape} of ``arch`` with ``num_classes`` outputs (cached)."""
    return dict(_signature(arch, int(num_classes)))


def classifier_key(arch: str) -> str | None:
    """The state_dict key of the final linear layer's weight, if known."""
    spec = get_spec(arch)
    if spec.classifier:
        return f"{spec.classifier}.weight"
    return None


def describe(pattern: str = "*", full: bool = False) -> list[dict[str, Any]]:
    """Rows for ``rbf list models``: registered architectures (timm pass-through not listed);
    ``full`` (``--json``) adds mean, std and the declared preprocessing."""
    rows = []
    for name in REGISTRY.names(pattern):
        spec = _spec_from_entry(name)
        try:
            params = sum(int(torch.Size(s).numel()) for k, s in signature(name).items()
                         if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
        except Exception:  # a plugin that cannot build on the meta device
            params = None
        row = {"name": name, "input_size": f"{spec.input_size[0]}x{spec.input_size[1]}",
               "params_m": round(params / 1e6, 3) if params is not None else None}
        if full:
            row.update(mean=list(spec.mean), std=list(spec.std),
                       preprocessing=spec.preprocessing)
        row.update(classifier=spec.classifier or "", source=spec.source,
                   description=spec.description)
        rows.append(row)
    return rows
