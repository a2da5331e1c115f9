"""The attack stage's modules are layered without import cycles: the contract (base.py) never
imports a concrete attack, and every module imports on its own in a fresh interpreter."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import robustbench_fundus.attacks as A

PKG = Path(A.__file__).parent
MODULES = sorted(p.stem for p in PKG.glob("*.py") if p.stem != "__init__")

# module -> the attack-stage modules it may import (the layering, bottom to top)
ALLOWED = {
    "context": set(),
    "results": set(),
    "options": set(),
    "identity": set(),
    "eps": {"context"},
    "engine": {"context"},
    "base": {"context", "results", "eps", "options", "identity", "engine"},
    "pgd": {"base", "context", "engine"},
    "external": {"base", "context", "identity", "options"},
    "callable": {"base", "context"},
    "listing": {"base", "external"},
}


def _stage_imports(module: str) -> set[str]:
    """Attack-stage modules imported by ``module`` (relative ``from .x import`` or absolute)."""
    tree = ast.parse((PKG / f"{module}.py").read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                if node.module:
                    out.add(node.module.split(".")[0])
                else:
                    out.update(a.name for a in node.names)
            elif node.level == 0 and node.module and \
                    node.module.startswith("robustbench_fundus.attacks."):
                out.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("robustbench_fundus.attacks."):
                    out.add(a.name.split(".")[2])
    return out


def test_base_imports_no_concrete_attack():
    imported = _stage_imports("base")
    assert "pgd" not in imported and "external" not in imported, imported
    # not even inside a function (the former local import of pgd for the huge-eps check)
    text = (PKG / "base.py").read_text()
    assert "from .pgd" not in text and "from .external" not in text


def test_every_module_has_a_layer():
    assert set(MODULES) == set(ALLOWED), "add the new module to ALLOWED (its layer)"


@pytest.mark.parametrize("module", MODULES)
def test_layering(module):
    extra = _stage_imports(module) - ALLOWED[module]
    assert not extra, f"{module} imports {sorted(extra)} outside its layer"


def test_layering_is_acyclic():
    graph = {m: _stage_imports(m) & set(MODULES) for m in MODULES}
    done: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, f"import cycle: {' -> '.join(path + (m,))}"
        if m in done:
            return
        for d in graph[m]:
            visit(d, path + (m,))
        done.add(m)

    for m in MODULES:
        visit(m, ())


def test_each_module_imports_in_a_fresh_interpreter():
    """One interpreter per module (started together: importing torch dominates the time)."""
    procs = {m: subprocess.Popen([sys.executable, "-c",
                                  f"import robustbench_fundus.attacks.{m} as m; print(m.__name__)"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for m in MODULES}
    failed = {}
    for m, p in procs.items():
        out, err = p.communicate(timeout=300)
        if p.returncode != 0 or out.strip() != f"robustbench_fundus.attacks.{m}":
            failed[m] = err.strip().splitlines()[-1:] if err.strip() else out
    assert not failed, failed


def test_compatible_names():
    """Names users' scripts and the other stages import keep working."""
    from robustbench_fundus.attacks import base, pgd
    for n in ("parse_eps", "SweepCounts", "SweepResult", "EpsResult", "Context", "project",
              "distance", "predict", "eval_mode", "ModuleFn", "SCHEMA_VERSION"):
        assert hasattr(base, n), n
    for n in ("unit_noise", "pgd_sweep", "sanity_pgd", "attack_loss", "PGDConfig", "FGSMConfig"):
        assert hasattr(pgd, n), n
    for n in A.__all__:
        assert hasattr(A, n), n
