"""The classifier wrapper: the one place where normalisation happens.

Every stage hands the model float32 RGB in [0, 1], shape (B, 3, H, W) (the flow of an image; see docs/architecture.md).
:class:`FundusClassifier` subtracts the mean and divides by the std *inside* ``forward`` and then
runs the backbone, so attacks and corruptions never see a normalised tensor and a checkpoint
carries its own normalisation constants.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

from ..grades import GRADE_NAMES, NUM_GRADES
from ..preprocessing.stage import DEFAULT_ENHANCEMENT

#: Outputs of a five-grade classification head (DR grades 0-4, the ICDR scale).
NUM_CLASSES = NUM_GRADES


class FundusClassifier(nn.Module):
    """A backbone plus the facts needed to feed it: ``forward(x)`` takes [0, 1] input.

    Attributes: ``backbone`` (an ``nn.Module`` mapping normalised images to logits), ``mean`` and
    ``std`` (buffers of shape (1, 3, 1, 1), so they follow ``.to(device)``), ``input_size``
    (H, W), ``num_classes`` (the output width), ``head`` (how the outputs are read:
    ``"classification"``, ``"regression"``, ``"ordinal"``, ``"binary"``, see
    :mod:`robustbench_fundus.heads`; the default ``"auto"`` means classification for five
    outputs and not declared (None) otherwise, e.g. weights loaded from a foreign file) and
    ``head_options`` (e.g. regression thresholds), ``label_names``, ``preprocessing``
    (the preprocessing the model expects its input to have had, default ``"graham"``), ``arch``
    (registry name) and ``meta`` (free-form provenance: training recipe, data fingerprint,
    metrics, ...; written into the checkpoint by
    :func:`~robustbench_fundus.models.save_checkpoint`).
    """

    def __init__(self, backbone: nn.Module, *, arch: str, num_classes: int = NUM_CLASSES,
                 input_size: Sequence[int] | int = (224, 224),
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 label_names: Sequence[str] | None = None,
                 preprocessing: str = DEFAULT_ENHANCEMENT,
                 meta: dict[str, Any] | None = None, head: str | None = "auto",
                 head_options: dict[str, Any] | None = None):
        super().__init__()
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {list(mean)} and {list(std)}")
        if any(float(s) <= 0 for s in std):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.backbone = backbone
        self.arch = str(arch)
        self.num_classes = int(num_classes)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        if head == "auto":  # a five-logit model is a classifier; other widths: not declared
            head = "classification" if self.num_classes == NUM_GRADES else None
        self.head = None if head is None else str(head)
        self.head_options = dict(head_options or {})
        if self.head is not None:
            from ..heads import make_head
            h = make_head(self.head, **self.head_options)   # validates name and options
            if self.num_classes not in h.widths:
                raise ValueError(f"a {h.name} head has {' or '.join(map(str, h.widths))} "
                                 f"outputs, not {self.num_classes}")
            self.head_options = h.options()
        if label_names is None:
            label_names = _default_label_names(self.head, self.num_classes)
        if len(label_names) != self.num_classes:
            raise ValueError(f"{len(label_names)} label names for {self.num_classes} classes")
        self.label_names = tuple(str(n) for n in label_names)
        self.preprocessing = str(preprocessing)
        self.meta: dict[str, Any] = dict(meta or {})
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images to the backbone's input space (keeps x's dtype and memory format)."""
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"FundusClassifier expects (B, 3, H, W) RGB in [0, 1], got shape "
                             f"{tuple(x.shape)}")
        return self.backbone(self.normalize(x))

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax of the outputs (B, num_classes) for [0, 1] input (no gradient): class
        probabilities for a classification head (other heads: see
        :meth:`robustbench_fundus.heads.Head.grade_probs`)."""
        return torch.softmax(self(x).float(), dim=1)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def config(self) -> dict[str, Any]:
        """The JSON-able facts stored in a checkpoint's metadata."""
        return {
            "arch": self.arch,
            "num_classes": self.num_classes,
            "label_names": list(self.label_names),
            "input_size": list(self.input_size),
            "mean": [round(float(v), 6) for v in self.mean.flatten().tolist()],
            "std": [round(float(v), 6) for v in self.std.flatten().tolist()],
            "preprocessing": self.preprocessing,
            "head": self.head,
            "head_options": dict(self.head_options),
        }

    def extra_repr(self) -> str:
        h, w = self.input_size
        return (f"arch={self.arch!r}, num_classes={self.num_classes}, head={self.head!r}, "
                f"input_size={h}x{w}, preprocessing={self.preprocessing!r}")


def _default_label_names(head: str | None, n: int) -> tuple[str, ...]:
    """Names of the outputs: the grades for a classification head, the score, the cumulative
    thresholds, the referral decision."""
    if n == len(GRADE_NAMES) and head in (None, "classification"):
        return GRADE_NAMES
    if head == "regression":
        return ("grade_score",)
    if head == "ordinal":
        return tuple(f"grade_above_{k}" for k in range(n))
    if head == "binary":
        return ("referable",) if n == 1 else ("not_referable", "referable")
    return tuple(f"class_{i}" for i in range(n))
