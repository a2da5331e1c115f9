"""Every caller goes through the stage: the same model gets the same input in training, in
saliency figures and from the stage itself; no module keeps its own copy of the flow."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

from _datastage_helpers import disc_image
from robustbench_fundus.preprocessing import Preprocessing, resolve_preprocessing

SRC = Path(__file__).resolve().parents[2] / "src" / "robustbench_fundus"
S = 40


class Recorder(nn.Module):
    """A bare classifier (no ``preprocessing``): remembers the first input it is given."""

    def __init__(self, input_size=None):
        super().__init__()
        self.head = nn.Linear(3, 5)
        self.seen: list[torch.Tensor] = []
        if input_size is not None:
            self.input_size = input_size

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.head(x.mean(dim=(2, 3)))


def _photo(seed: int = 0) -> torch.Tensor:
    return disc_image(66, 90, 44.5, 32.5, 42.0, seed=seed)  # uint8, cut top and bottom


def _stage_input(model: nn.Module, photo: torch.Tensor, size: int) -> torch.Tensor:
    pre = resolve_preprocessing(model)
    crop = pre.working_crop(photo, size)
    return pre.model_input(crop, pre.geometry(crop))


@pytest.mark.parametrize("declared", [None, "none", "graham"])
def test_train_pipeline_equals_the_stage(declared):
    from robustbench_fundus.train import AugmentConfig, TrainConfig
    from robustbench_fundus.train.recipes import BatchPipeline

    model = Recorder()
    if declared is not None:
        model.preprocessing = declared
    u = torch.stack([Preprocessing().working_crop(_photo(i), S)[0] for i in range(3)])
    u = (u * 255).round().to(torch.uint8)  # loader batches are 8-bit working crops
    cfg = TrainConfig(arch="tiny_cnn", recipe="baseline")
    cfg.augment = AugmentConfig.none()
    pipe = BatchPipeline(model, cfg, torch.device("cpu"))
    got = pipe.inputs(u, torch.arange(3), train=False)
    pre = resolve_preprocessing(model)
    x = u.float() / 255
    assert pre.source == ("default" if declared is None else "model")
    assert torch.equal(got, pre.model_input(x, pre.geometry(x)))
    assert pipe.stage == pre and pipe.preprocessing == pre.enhancement


@pytest.mark.parametrize("declared", [None, "none"])
def test_prepare_image_and_saliency_figure_equal_the_stage(declared):
    from robustbench_fundus.interpret import prepare_image, saliency_figure

    model = Recorder(input_size=S)
    if declared is not None:
        model.preprocessing = declared
    photo = _photo(4)
    want = _stage_input(model, photo, S)
    p = prepare_image(photo, S, resolve_preprocessing(model))
    assert torch.equal(p.x, want)
    assert p.preprocessing == resolve_preprocessing(model).enhancement
    assert p.meta["preprocessing"] == resolve_preprocessing(model).to_dict()
    model.seen.clear()
    saliency_figure([("m", model)], photo, None, steps=2)
    assert torch.equal(model.seen[0], want)


def test_bare_module_is_fed_graham_everywhere():
    """The bare module of the issue: Graham in training, in saliency and from the stage."""
    from robustbench_fundus.interpret import saliency_figure
    from robustbench_fundus.preprocessing import graham

    model = Recorder()
    photo = _photo(7)
    crop = Preprocessing().working_crop(photo, S)
    want = graham(crop, Preprocessing().geometry(crop))
    saliency_figure([("bare", model)], photo, None, steps=2, size=S)
    assert torch.equal(model.seen[0], want)
    assert torch.equal(_stage_input(model, photo, S), want)


def test_model_specs_declare_one_default():
    from robustbench_fundus.errors import RBFError
    from robustbench_fundus.models import REGISTRY, create_model, get_spec, register_model

    assert get_spec("tiny_cnn").preprocessing == "graham"
    assert get_spec("resnet18").preprocessing == "graham"
    assert get_spec("test_resnet").preprocessing == "graham"  # timm pass-through
    try:
        @register_model("unit_test_raw_net", input_size=32, preprocessing="none")
        def raw_net(num_classes: int = 5, **kw):
            return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, num_classes))

        REGISTRY.register(raw_net, name="unit_test_raw_plain", input_size=32,
                          preprocessing="None")
        assert get_spec("unit_test_raw_net").preprocessing == "none"
        assert get_spec("unit_test_raw_plain").preprocessing == "none"
        assert "preprocessing" not in get_spec("unit_test_raw_plain").info
        m = create_model("unit_test_raw_net")
        assert m.preprocessing == "none" and resolve_preprocessing(m).enhancement == "none"
        assert create_model("unit_test_raw_net", preprocessing="graham").preprocessing == "graham"
        assert create_model("unit_test_raw_plain").preprocessing == "none"
    finally:
        for n in ("unit_test_raw_net", "unit_test_raw_plain"):
            REGISTRY.unregister(n)
    with pytest.raises(RBFError, match="preprocessing='clahe'") as info:
        register_model("unit_test_bad_pre", preprocessing="clahe")
    assert "\n" not in str(info.value)


# -- the guard: no copy of the flow outside the stage ----------------------------------------
FORBIDDEN_CALLS = {"graham", "crop_resize", "estimate_geometry"}
# estimate_geometry: corruptions/base.py estimates the geometry when none is passed
ALLOWED_CALLS = {"corruptions/base.py": {"estimate_geometry"}}
# modules that re-export the moved names for backward compatibility (they call nothing)
REEXPORTS = {"data/__init__.py", "data/geometry.py", "data/graham.py"}
SKIP_DIRS = ("preprocessing/", "bench/")  # the stage itself; the bench (migrated by the lead)


def _violations(tree: ast.AST, rel: str) -> list[str]:
    allowed = ALLOWED_CALLS.get(rel, set())
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) \
                else None
            if name in FORBIDDEN_CALLS and name not in allowed:
                bad.append(f"{rel}:{node.lineno} calls {name}()")
        elif isinstance(node, ast.ImportFrom) and rel not in REEXPORTS:
            for a in node.names:
                if a.name in FORBIDDEN_CALLS and a.name not in allowed:
                    bad.append(f"{rel}:{node.lineno} imports {a.name}")
    return bad


def test_guard_detects_a_copy():
    snippet = ("from ..preprocessing.graham import graham as g\n"
               "def f(x, geom):\n    return pp.crop_resize(x, geom, 4), g(x)\n")
    bad = _violations(ast.parse(snippet), "train/x.py")
    assert len(bad) == 2 and "imports graham" in bad[0] and "crop_resize" in bad[1]
    assert _violations(ast.parse("estimate_geometry(x)"), "corruptions/base.py") == []
    assert _violations(ast.parse("estimate_geometry(x)"), "corruptions/grid.py")


def test_no_module_outside_the_stage_runs_its_own_preprocessing():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 30
    bad = []
    for path in files:
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(SKIP_DIRS):
            continue
        bad += _violations(ast.parse(path.read_text(), filename=str(path)), rel)
    assert not bad, "\n".join(bad)
