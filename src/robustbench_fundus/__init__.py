"""robustbench_fundus: how far to trust a diabetic-retinopathy fundus classifier.

The flow of one image (one subpackage per stage)::

    data -> corruptions -> (Graham preprocessing) -> attacks -> models -> metrics -> bench
                                                                 train, interpret

``from robustbench_fundus import evaluate`` is the one-call entry point.
"""
from __future__ import annotations

__version__ = "0.2.0"

__all__ = ["__version__", "evaluate"]


def __getattr__(name: str):
    # Lazy so that `import robustbench_fundus` (and the CLI) stays fast.
    if name == "evaluate":
        from .bench import evaluate
        return evaluate
    raise AttributeError(name)
