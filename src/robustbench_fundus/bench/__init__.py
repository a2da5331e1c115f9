"""The benchmark: :func:`evaluate`, typed reports, the SQLite results store and the leaderboard.

::

    from robustbench_fundus import evaluate
    report = evaluate("model.safetensors", "path/to/photos", corruptions="all", attack="pgd",
                      eps=["1/255", "2/255"], store="rbf-results/results.sqlite")
    report.to_dict()["clean"]["kappa"]

CLI: ``rbf bench`` and ``rbf leaderboard`` (see docs/bench.md).
"""
from __future__ import annotations

from ..attacks import parse_eps
from ..corruptions import parse_severities
from .conditions import (DEFAULT_EPS, DEFAULT_SEVERITIES, Condition, eps_sweep, format_eps,
                         format_eps_255, resolve_corruptions)
from .evaluate import build_conditions, evaluate
from .leaderboard import FORMATS, LeaderboardEntry, load_entries, render
from .options import DataOptions, RunOptions
from .plots import plot_confusion, plot_severity_curves, plot_success_curves, write_plots
from .report import (SCHEMA_VERSION, AttackResult, BenchReport, CleanResult, CorruptionResult,
                     Flag)
from .resolve import model_sha256
from .store import DEFAULT_STORE, STORE_SCHEMA_VERSION, ResultStore

__all__ = [
    "evaluate", "build_conditions", "model_sha256", "BenchReport", "CleanResult",
    "CorruptionResult", "AttackResult", "Flag", "SCHEMA_VERSION", "ResultStore", "DEFAULT_STORE",
    "STORE_SCHEMA_VERSION", "LeaderboardEntry", "load_entries", "render", "FORMATS",
    "write_plots", "plot_success_curves", "plot_severity_curves", "plot_confusion", "Condition",
    "DEFAULT_EPS", "DEFAULT_SEVERITIES", "parse_eps", "parse_severities", "eps_sweep",
    "resolve_corruptions", "format_eps", "format_eps_255", "DataOptions", "RunOptions",
]
