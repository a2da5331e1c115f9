"""Typed option groups of :func:`~robustbench_fundus.bench.evaluate`: the settings that only
some inputs or runs need, kept out of its main signature."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..errors import RBFError


SPLITS = ("all", "train", "val")


@dataclass(frozen=True)
class DataOptions:
    """How the data is read.

    size: working size in pixels (default: the model's input size, else 224); cache_dir: the
    working-crop cache of a folder (default ``$RBF_CACHE_DIR`` or ``~/.cache/robustbench_fundus``);
    synthetic_n: images of ``data=None`` / ``"synthetic"`` (default 64).

    split: ``"all"`` (default), or ``"train"``/``"val"``: one side of the subject-grouped split
    that ``rbf train`` makes of a folder with the same ``val_fraction`` and ``split_seed`` (its
    ``--val-fraction`` and ``--seed``; defaults 0.3 and 0, as there), so a model trained on a
    folder is benchmarked on the photographs it never saw.
    """
    size: int | None = None
    cache_dir: Any = None
    synthetic_n: int = 64
    split: str = "all"
    val_fraction: float = 0.3
    split_seed: int = 0

    def __post_init__(self) -> None:
        if self.size is not None and int(self.size) < 8:
            raise RBFError(f"size {self.size}: the working size must be at least 8 pixels")
        if int(self.synthetic_n) < 1:
            raise RBFError(f"synthetic_n {self.synthetic_n}: must be at least 1 image")
        if self.split not in SPLITS:
            raise RBFError(f"--split {self.split!r}: give one of {', '.join(SPLITS)}")
        if not 0.0 < float(self.val_fraction) < 1.0:
            raise RBFError(f"--val-fraction {self.val_fraction}: must be between 0 and 1 "
                           "(rbf train's default is 0.3)")


@dataclass(frozen=True)
class RunOptions:
    """How the run is carried out (none of these change a number, except ``amp``).

    batch_size: images per batch; chunk_size: images per committed chunk (the unit of
    resumption); num_workers: data-loading processes; progress: progress bars on stderr; log:
    a callable receiving one-line status messages (``rbf bench`` prints them).

    Two speed settings for a GPU, recorded in the report's provenance (``precision``):
    ``amp``: ``"off"`` (float32 forwards, the default) or ``"bf16"`` (the clean and corrupted
    forwards under bfloat16 autocast: a decision on the edge between two grades may differ
    from float32; attacks are unaffected by it, they confirm every break in float32 anyway);
    ``channels_last``: the model and its inputs in channels-last memory format (no number
    changes beyond float rounding order; like moving it to the device, this converts the
    module's parameters in place). The attacks keep their own execution options
    (``attack_options={"amp": ..., "channels_last": ...}``, default "auto": bf16 autocast and
    channels-last on CUDA, with every break confirmed in float32).
    """
    batch_size: int = 32
    chunk_size: int = 256
    num_workers: int = 0
    progress: bool = False
    log: Callable[[str], None] | None = None
    amp: str = "off"
    channels_last: bool = False

    def __post_init__(self) -> None:
        if int(self.batch_size) < 1:
            raise RBFError(f"--batch-size {self.batch_size}: must be at least 1")
        if int(self.chunk_size) < 1:
            raise RBFError(f"--chunk-size {self.chunk_size}: must be at least 1")
        if int(self.num_workers) < 0:
            raise RBFError(f"--workers {self.num_workers}: must be 0 (load in this process) or "
                           "more")
        if self.amp not in ("off", "bf16"):
            raise RBFError(f"amp {self.amp!r}: give 'off' (float32) or 'bf16'")
