"""The last epoch's weights of an ``rbf train`` run as a checkpoint of their own.

``rbf train`` keeps the epoch with the best validation kappa in ``--out`` and the full training
state of the last epoch in ``<out>.last``. docs/experiments.md benchmarks the last epoch of the
adversarial recipe beside the kept one, to tell the epoch choice from the recipe:

    .venv/bin/python docs/study_last_epoch.py CKPT.safetensors OUT.safetensors
"""
from __future__ import annotations

import sys

import torch

from robustbench_fundus.models import load_model, save_checkpoint


def main() -> None:
    best, out = sys.argv[1], sys.argv[2]
    model = load_model(best)                       # architecture, preprocessing, head, meta
    state = torch.load(best + ".last", map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    save_checkpoint(model, out, recipe=state["config"].get("recipe"), epoch=int(state["epoch"]),
                    note=f"the last epoch ({state['epoch']}) of the run that wrote {best}")
    print(f"{out}: epoch {state['epoch']} of {best}")


if __name__ == "__main__":
    main()
