"""The corruption registry: entries, schema, duplicates, globs, `rbf list corruptions`, and a
third-party plugin found through a real entry point (importlib.metadata)."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap

import pytest
import torch

import robustbench_fundus.corruptions as C
from _plugin import plugin_env
from robustbench_fundus.cli import main as rbf_main
from robustbench_fundus.errors import RBFError
from robustbench_fundus.registry import Registry


def test_public_names():
    assert C.FUNDUS_CORRUPTIONS == ("light_leakage", "motion_blur", "under_exposure",
                                    "over_exposure")
    assert len(C.IMAGENET_C_CORRUPTIONS) == 19
    assert all(n.startswith("imagenet_c/") for n in C.IMAGENET_C_CORRUPTIONS)
    assert isinstance(C.REGISTRY, Registry)
    assert C.REGISTRY.kind == "corruption" and C.REGISTRY.group == "robustbench_fundus.corruptions"
    assert set(C.FUNDUS_CORRUPTIONS + C.IMAGENET_C_CORRUPTIONS) <= set(C.REGISTRY.names())


@pytest.mark.parametrize("name", sorted(set(C.FUNDUS_CORRUPTIONS + C.IMAGENET_C_CORRUPTIONS)))
def test_entry_schema(name):
    c = C.get_corruption(name)
    assert isinstance(c, C.Corruption)
    assert c.name == name
    assert c.family in ("fundus", "imagenet-c")
    assert dataclasses.is_dataclass(c.config)
    assert c.max_severity == (4 if c.family == "fundus" else 5)
    assert c.severities == tuple(range(1, c.max_severity + 1))
    assert c.reference
    for s in c.severities:
        assert c.params(s)
    if c.family == "fundus":
        # per-severity parameters are data: one value per level
        for f in dataclasses.fields(c.config):
            if f.metadata.get("per_severity"):
                assert len(getattr(c.config, f.name)) == c.max_severity, f.name
            assert f.metadata.get("help"), f"{name}.{f.name} has no description"


def test_design_table_values():
    ll = C.get_corruption("light_leakage").config
    assert ll.amplitude == (1.0, 1.5, 2.0, 2.5) and ll.inner_radius == (0.90, 0.85, 0.80, 0.75)
    assert ll.softness == (0.1,) * 4 and ll.max_offset == 0.25
    mb = C.get_corruption("motion_blur").config
    assert mb.radius == (10, 15, 15, 15) and mb.sigma == (3, 5, 8, 12)
    ue = C.get_corruption("under_exposure").config.gain
    oe = C.get_corruption("over_exposure").config.gain
    assert [round(g, 3) for g in ue] == [0.854, 0.730, 0.623, 0.533]
    assert [round(g, 3) for g in oe] == [1.171, 1.370, 1.604, 1.878]


def test_describe_rows():
    rows = C.describe()
    assert [r["name"] for r in rows] == C.REGISTRY.names()
    for r in rows:
        assert list(r)[0] == "name"
        assert set(r) == {"name", "family", "severities", "source"}
        json.dumps(r)
    assert [r["name"] for r in C.describe("*exposure")] == ["over_exposure", "under_exposure"]
    assert len(C.describe("imagenet_c/*")) == 19


def test_duplicates_refused_unless_override():
    reg = C.REGISTRY
    with pytest.raises(ValueError, match="already registered"):
        reg.register(C.MotionBlur())
    custom = C.MotionBlur(C.MotionBlurConfig(radius=(5,), sigma=(2,)))
    original = reg.get("motion_blur")
    try:
        reg.register(custom, override=True)
        assert C.get_corruption("motion_blur").max_severity == 1
    finally:
        reg.register(original, override=True)
    assert C.get_corruption("motion_blur").max_severity == 4


def test_register_by_decorator_and_call():
    @C.REGISTRY.register
    class Invert(C.Corruption):
        name = "test_invert"

        @property
        def max_severity(self):
            return 1

        def _apply(self, x, severity, geom, draws):
            return 1 - x

    try:
        c = C.get_corruption("test_invert")  # a class registered: instantiated
        x = torch.full((1, 3, 32, 32), 0.25)
        assert abs(float(c(x, 1).max()) - round(0.75 * 255) / 255) < 1e-7
        assert "test_invert" in [r["name"] for r in C.describe("test_*")]
    finally:
        C.REGISTRY.unregister("test_invert")


def test_get_corruption_config_overrides_and_errors():
    c = C.get_corruption("motion_blur", angle_range=(0.0, 0.0))
    assert c.config.angle_range == (0.0, 0.0)
    assert C.get_corruption("motion_blur").config.angle_range == (0.0, 180.0)
    with pytest.raises(RBFError, match="did you mean motion_blur"):
        C.get_corruption("motion_blurr")
    with pytest.raises(ValueError):
        C.LightLeakageConfig(amplitude=(1.0, 2.0))


def test_rbf_list_corruptions(capsys):
    assert rbf_main(["list", "corruptions"]) == 0
    out = capsys.readouterr().out
    assert "motion_blur" in out and "imagenet_c/frost" in out and "1-4" in out
    assert rbf_main(["list", "corruptions", "*exposure", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["over_exposure", "under_exposure"]
    assert rows[0]["source"] == "builtin" and rows[0]["severities"] == "1-4"


PLUGIN = textwrap.dedent('''
    import torch
    from dataclasses import dataclass
    from robustbench_fundus.corruptions import Corruption
    from robustbench_fundus.corruptions.base import per_severity

    @dataclass(frozen=True)
    class VeilConfig:
        strength: tuple = per_severity((0.1, 0.2, 0.3), "grey veil weight")

    class Veil(Corruption):
        name = "veil"
        family = "plugin-test"
        reference = "a throw-away test plugin"
        Config = VeilConfig

        def _apply(self, x, severity, geom, draws):
            w = self._per_severity(self.config.strength, severity, x.dtype).view(-1, 1, 1, 1)
            return (1 - w) * x + w * 0.5
''')

SCRIPT = textwrap.dedent('''
    import json, sys, torch
    from robustbench_fundus.cli import main
    rc = main(["list", "corruptions", "veil*", "--json"])
    from robustbench_fundus.corruptions import get_corruption
    c = get_corruption("veil")
    x = torch.zeros(2, 3, 32, 32); x[:, :, 4:28, 4:28] = 0.8
    y = c(x, torch.tensor([0, 3]))
    print("RESULT", rc, c.max_severity, round(float(y[1, 0, 16, 16]), 4), bool(torch.equal(y[0], x[0])))
''')


def test_plugin_through_entry_point(tmp_path):
    """A package made here (module + *.dist-info with entry_points.txt) on sys.path of a fresh
    interpreter: importlib.metadata finds it, `rbf list corruptions` shows it and it runs."""
    env = plugin_env(tmp_path, "rbf_veil_plugin", PLUGIN, "robustbench_fundus.corruptions",
                     "veil = rbf_veil_plugin:Veil", "rbf-veil-plugin")
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    listing = json.loads(res.stdout[: res.stdout.index("RESULT")])
    assert listing == [{"name": "veil", "family": "plugin-test", "severities": "1-3",
                        "source": "plugin:rbf-veil-plugin"}]
    result = res.stdout.split("RESULT")[1].split()
    assert result == ["0", "3", str(round(round((0.7 * 0.8 + 0.3 * 0.5) * 255) / 255, 4)), "True"]
    # and the plugin is not visible without its path (nothing was installed for good)
    res2 = subprocess.run([sys.executable, "-m", "robustbench_fundus", "list", "corruptions",
                           "veil*"], capture_output=True, text=True, timeout=300)
    assert res2.returncode == 0 and "veil" not in res2.stdout.replace("no corruptions match", "")
