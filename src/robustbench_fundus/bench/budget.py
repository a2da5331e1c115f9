"""The time budget of a run: seconds per stage of the flow, so a report says where its time went.

Stages (``STAGES``, in the order of the flow):

- ``decode_geometry``: reading the photographs (decode, crop and resize to the working crop, or
  the crop cache), batching, and the fundus geometry of each clean crop;
- ``preprocessing``: the model's preprocessing (Graham enhancement, mask, resize to the input);
- ``corruption``: the corruptions (through the corruption contract);
- ``model_forward``: the model's forward passes on clean and corrupted images;
- ``attack``: the attacks (through the attack contract): the model's forward and backward
  passes of every step, with the attack's own arithmetic;
- ``metrics_store``: counting (confusion matrices, screening counts) and committing to the store;
- ``saliency``: integrated gradients and deletion curves (``--saliency``);
- ``other``: everything else of the run (resolving the model and data, planning, the report).

``pipeline_efficiency`` = (model_forward + attack) / total: the share of the run spent running
the model, the part no pipeline can avoid. On a GPU each stage boundary synchronises the device,
so the seconds are the device's and not just the launches'.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import torch

STAGES = ("decode_geometry", "preprocessing", "corruption", "model_forward", "attack",
          "metrics_store", "saliency", "other")
MODEL_STAGES = ("model_forward", "attack")
#: Short names of the stages for one line of terminal output.
STAGE_LABELS = {"decode_geometry": "data", "preprocessing": "preprocessing",
                "corruption": "corruptions", "model_forward": "model forward",
                "attack": "attacks", "metrics_store": "metrics+store", "saliency": "saliency",
                "other": "other"}


class StageClock:
    """Accumulates seconds per stage. ``with clock("corruption"): ...``; nested stages are
    charged to the innermost one only (the outer one is paused)."""

    def __init__(self, device: torch.device | str | None = None):
        dev = torch.device(device) if device is not None else torch.device("cpu")
        self._sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        self.seconds: dict[str, float] = {s: 0.0 for s in STAGES}
        self._stack: list[tuple[str, float]] = []

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if stage not in self.seconds:
            raise KeyError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
        self._sync()
        now = time.perf_counter()
        if self._stack:                      # pause the enclosing stage
            outer, t = self._stack[-1]
            self.seconds[outer] += now - t
        self._stack.append((stage, now))
        try:
            yield
        finally:
            self._sync()
            now = time.perf_counter()
            name, t = self._stack.pop()
            self.seconds[name] += now - t
            if self._stack:                  # resume it
                self._stack[-1] = (self._stack[-1][0], now)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] += float(seconds)

    def budget(self, total_s: float) -> dict:
        """``stages_s`` (``other`` = total minus the timed stages), ``shares`` of the total and
        ``pipeline_efficiency``."""
        sec = dict(self.seconds)
        timed = sum(v for k, v in sec.items() if k != "other")
        total = max(float(total_s), timed)
        sec["other"] = total - timed
        shares = {k: (v / total if total > 0 else 0.0) for k, v in sec.items()}
        eff = sum(sec[k] for k in MODEL_STAGES) / total if total > 0 else 0.0
        return {"stages_s": {k: round(v, 4) for k, v in sec.items()},
                "shares": {k: round(v, 4) for k, v in shares.items()},
                "pipeline_efficiency": round(eff, 4)}
