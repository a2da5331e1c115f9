"""The training configuration (one typed dataclass) and the parsers for its CLI spellings."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import RBFError
from .augment import AugmentConfig

RECIPES = ("baseline", "corruption", "adversarial")
BALANCE = ("none", "sampler", "loss")
ADV_MODES = ("madry", "early-stop")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the checkpoint's metadata).

    ``data``: a data-set folder (any layout ``rbf`` reads) or ``"synthetic"`` /
    ``"synthetic:N"`` (N generated images for training, plus a held-out synthetic validation
    set of ``val_fraction`` x N from another seed). ``size`` defaults to the architecture's
    input size. ``pretrained="imagenet"`` starts the backbone from ImageNet weights (only for the
    architectures with packaged weights, efficientnet_lite0/1/2) with a fresh head, and feeds it
    the weights' normalisation (mean = std = 0.5). ``eps`` is in [0, 1] pixel units (2.5/255 by
    default, the reference's); it and ``severities`` may be given in their CLI spellings
    (``"2.5/255"``, ``"1-4"``), read by the attack and corruption stages' parsers.
    """

    arch: str = "tiny_cnn"
    # "imagenet": start from the ImageNet weights of an installed package (efficientnet_lite0/1/2;
    # see robustbench_fundus.models.pretrained); None: random init
    pretrained: str | None = None
    data: str = "synthetic"
    recipe: str = "baseline"
    head: str = "classification"   # classification | regression | ordinal | binary
    head_options: dict = field(default_factory=dict)  # thresholds (regression), threshold
    out: str = "model.safetensors"
    epochs: int = 10
    size: int | None = None
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    balance: str = "loss"
    seed: int = 0
    val_fraction: float = 0.3
    labels: str | None = None
    # corruption recipe
    severities: tuple[int, ...] = (1, 2, 3, 4)
    corruptions: tuple[str, ...] | None = None   # None: the benchmark's default set
    corruption_prob: float = 1.0                 # fraction of samples corrupted (the rest clean)
    # adversarial recipe
    eps: float = 2.5 / 255
    steps: int = 5
    adv_weight: float = 0.5
    adv_mode: str = "madry"        # "madry" (every sample, every step) | "early-stop"
    # augmentation
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # machinery
    device: str | None = None      # None: cuda when available, else cpu
    amp: bool | None = None        # None: on for cuda
    channels_last: bool | None = None  # None: on for cuda
    num_workers: int = 0
    cache_dir: str | None = None
    max_steps: int | None = None   # stop after this many optimizer steps (tests, smoke runs)
    resume: bool = False
    log_every: int = 0             # print a line every N steps (0: only per epoch)
    quiet: bool = False

    def __post_init__(self) -> None:
        from ..heads import make_head
        h = make_head(self.head, **dict(self.head_options or {}))  # one-line error if bad
        self.head, self.head_options = h.name, h.options()
        if self.pretrained is not None:  # source and architecture; the package is checked later
            from ..models.pretrained import get_pretrained
            self.pretrained = get_pretrained(self.arch, self.pretrained,
                                             what="--pretrained").source
        if self.recipe not in RECIPES:
            raise RBFError(f"--recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        if self.balance not in BALANCE:
            raise RBFError(f"--balance must be one of {', '.join(BALANCE)}, got {self.balance!r}")
        if self.epochs < 1:
            raise RBFError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise RBFError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.adv_mode not in ADV_MODES:
            raise RBFError(f"--adv-mode must be one of {', '.join(ADV_MODES)}, got "
                           f"{self.adv_mode!r}")
        if not 0.0 <= self.adv_weight <= 1.0:
            raise RBFError(f"--adv-weight must be in [0, 1], got {self.adv_weight}")
        if isinstance(self.eps, str):  # the CLI spelling, read by the attack stage's parser
            from ..attacks import parse_eps
            vals = parse_eps(self.eps, what="--eps")
            if len(vals) != 1:
                raise RBFError(f"--eps: training uses one radius, got {self.eps!r}; write e.g. "
                               "2.5/255")
            self.eps = vals[0]
        if not 0.0 <= self.eps <= 1.0:
            raise RBFError(f"--eps must be in [0, 1] (pixel units; write 2.5/255), got {self.eps}")
        if self.steps < 1:
            raise RBFError(f"--steps must be at least 1, got {self.steps}")
        if not 0.0 < self.val_fraction < 1.0:
            raise RBFError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        if isinstance(self.severities, (str, int)):  # read by the corruption stage's parser
            from ..corruptions import parse_severities
            self.severities = parse_severities(self.severities, max_severity=4)
        self.severities = tuple(int(s) for s in self.severities)
        if not self.severities or any(s < 1 or s > 4 for s in self.severities):
            raise RBFError(f"--severities must be within 1-4, got {list(self.severities)}")
        if self.corruptions is not None:
            self.corruptions = tuple(self.corruptions)
        if isinstance(self.augment, dict):
            aug = dict(self.augment)
            if "scale" in aug:
                aug["scale"] = tuple(aug["scale"])
            self.augment = AugmentConfig(**aug)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (lists for tuples), for checkpoint metadata and the training state."""
        d = asdict(self)
        d["augment"] = self.augment.to_dict()
        d["severities"] = list(self.severities)
        d["corruptions"] = list(self.corruptions) if self.corruptions is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    # Fields that may differ between an interrupted run and its resumption.
    RESUMABLE_CHANGES = ("out", "resume", "num_workers", "cache_dir", "log_every", "quiet",
                         "device", "max_steps", "epochs")


def parse_data_spec(spec: str | None) -> tuple[str, int | None]:
    """None, "synthetic", "synthetic:N" -> ("synthetic", N or None); else ("dir", None).
    ``synthetic:N`` is read by :func:`robustbench_fundus.data.synth.parse_synthetic_spec`."""
    from ..data.synth import parse_synthetic_spec
    if spec is None or spec == "synthetic":
        return "synthetic", None
    n = parse_synthetic_spec(spec, what="--data")
    if n is None:
        return "dir", None
    if n < 2:
        raise RBFError(f"--data {spec}: need at least 2 synthetic images")
    return "synthetic", n
