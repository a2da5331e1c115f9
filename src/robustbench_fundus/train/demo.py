"""The bundled demo model: ``tiny_cnn`` at 128 px with Graham preprocessing, trained by
``rbf train`` on synthetic fundus images (the command is :data:`DEMO_COMMAND`, also in
docs/training.md). ``rbf bench`` with no arguments benchmarks it."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

DEMO_FILENAME = "demo_model.safetensors"

#: The exact command that produced the bundled file (run from the repository root).
DEMO_COMMAND = ("rbf train --arch tiny_cnn --data synthetic:3000 --size 128 --epochs 12 "
                "--batch-size 32 --lr 2e-3 --seed 0 "
                "--out src/robustbench_fundus/assets/demo_model.safetensors")


def demo_model_path() -> Path:
    """Path of the bundled demo checkpoint (inside the installed package)."""
    return Path(str(resources.files("robustbench_fundus") / "assets" / DEMO_FILENAME))
