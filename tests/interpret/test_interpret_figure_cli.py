"""Saliency figures and the `rbf saliency` command."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from robustbench_fundus.cli import main
from robustbench_fundus.errors import RBFError
from robustbench_fundus.interpret import prepare_image, render_panels, saliency_figure
from robustbench_fundus.models import create_model, save_checkpoint

S = 48


def disc_photo(h: int = 90, w: int = 120) -> torch.Tensor:
    """A reddish disc on black, uint8 (3,H,W), with a few bright spots."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    r = ((xs - w / 2) ** 2 + (ys - h / 2) ** 2).sqrt()
    inside = (r < 0.42 * h).float()
    img = torch.stack([0.75 * inside, 0.35 * inside, 0.15 * inside])
    img[:, 40:43, 50:53] = 1.0
    img[:, 30:32, 70:72] = 0.9
    return (img * 255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def models():
    a = create_model("tiny_cnn", input_size=S).eval()
    b = create_model("tiny_cnn", input_size=S, preprocessing="none").eval()
    with torch.no_grad():
        for p in b.parameters():
            p.mul_(1.1)
    return a, b


@pytest.fixture()
def photo_path(tmp_path):
    p = tmp_path / "eye.png"
    Image.fromarray(disc_photo().permute(1, 2, 0).numpy()).save(p)
    return p


def test_prepare_image(photo_path):
    g = prepare_image(photo_path, S, "graham")
    assert g.x.shape == g.photo.shape == (1, 3, S, S)
    assert g.mask.shape == (1, 1, S, S) and 0.5 < g.mask.mean() < 0.95
    assert torch.allclose(g.x[0, :, 0, 0], torch.full((3,), 0.5))  # Graham's grey surround
    raw = prepare_image(disc_photo(), S, "none")
    assert torch.equal(raw.x, raw.photo) and raw.x[0, :, 0, 0].max() < 0.05
    with pytest.raises(RBFError, match="preprocessing"):
        prepare_image(disc_photo(), S, "clahe")


def test_saliency_figure_two_models(tmp_path, photo_path, models):
    out = tmp_path / "fig.png"
    res = saliency_figure([("base", models[0]), ("robust", models[1])], photo_path, out,
                          steps=8, baseline="grey")
    assert out.is_file() and out.stat().st_size > 5000
    im = Image.open(out)
    assert im.size[0] > 2.5 * im.size[1]  # one row of four panels (photo, input, 2 maps)
    for r in res:
        assert r["pred"] == int(np.argmax(r["probs"])) and r["target"] == r["pred"]
        assert r["heat"].shape == (S, S) and (r["heat"] >= 0).all()
        assert abs(sum(r["probs"]) - 1) < 1e-5
    # a given grade is attributed instead of the prediction
    res2 = saliency_figure([("base", models[0])], photo_path, None, target=3, steps=4)
    assert res2[0]["target"] == 3


def test_saliency_figure_size_mismatch(photo_path, models):
    other = create_model("tiny_cnn", input_size=32)
    with pytest.raises(RBFError, match="px"):
        saliency_figure([("a", models[0]), ("b", other)], photo_path, None, steps=2)


def test_render_panels_handles_empty_heat(tmp_path):
    out = tmp_path / "p.png"
    render_panels(torch.rand(3, 16, 16), [{"heat": torch.zeros(16, 16), "title": "zero"}], out)
    assert out.is_file()


def test_cli_saliency(tmp_path, photo_path, models, capsys):
    a = save_checkpoint(models[0], tmp_path / "base.safetensors")
    b = save_checkpoint(models[1], tmp_path / "robust.safetensors")
    out = tmp_path / "cmp.png"
    rc = main(["saliency", "--model", str(a), "--compare", str(b), "--image", str(photo_path),
               "--steps", "6", "--baseline", "blur", "--device", "cpu", "--out", str(out),
               "--json"])
    assert rc == 0 and out.is_file()
    info = json.loads(capsys.readouterr().out)
    assert [m["label"] for m in info["models"]] == ["base", "robust"]
    rc = main(["saliency", "--model", str(a), "--image", str(photo_path), "--target", "2",
               "--method", "grad", "--out", str(tmp_path / "g.png"), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert rc == 0 and info["models"][0]["target"] == 2 and info["models"][0]["delta"] == 0


def test_cli_errors(tmp_path, photo_path, models, capsys):
    a = save_checkpoint(models[0], tmp_path / "m.safetensors")
    assert main(["saliency", "--model", str(tmp_path / "nope.pt"), "--image", str(photo_path),
                 "--out", str(tmp_path / "x.png")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["saliency", "--model", str(a), "--image", str(tmp_path / "none.png"),
                 "--out", str(tmp_path / "x.png")]) == 2
    assert main(["saliency", "--model", str(a), "--image", str(photo_path),
                 "--baseline", "white", "--out", str(tmp_path / "x.png")]) == 2
    assert "baseline" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["saliency", "--model", str(a), "--image", str(photo_path), "--target", "x",
              "--out", str(tmp_path / "x.png")])


def test_real_photograph(real_data_dir, tmp_path, models):
    import csv
    with open(real_data_dir / "labels.csv") as f:
        row = next(csv.DictReader(f))
    path = real_data_dir / "images" / row["image"]
    p = prepare_image(path, 64, "graham")
    assert p.x.shape == (1, 3, 64, 64) and 0.4 < p.mask.mean() < 0.9
    m = create_model("tiny_cnn", input_size=64).eval()
    res = saliency_figure([("m", m)], path, tmp_path / "real.png", steps=4)
    assert (tmp_path / "real.png").is_file() and 0 <= res[0]["pred"] <= 4


@pytest.mark.parametrize("baseline", ["grey", "black"])
def test_figure_scores_equal_saliency_scores(photo_path, models, baseline):
    """The figure's per-photograph scores are the saliency scores of that one photograph (same
    attribution, same deletion curve, same random order)."""
    from robustbench_fundus.interpret.scores import saliency_scores
    from robustbench_fundus.preprocessing import resolve_preprocessing
    m = models[0]
    (r,) = saliency_figure([("m", m)], photo_path, None, target=2, steps=6, baseline=baseline)
    p = prepare_image(photo_path, S, resolve_preprocessing(m))
    ref = saliency_scores(m, p.x, [2], fundus_masks=p.mask, steps=6, baseline=baseline)
    assert 0.0 <= r["disc_share"] <= 1.0
    assert r["disc_share"] == pytest.approx(ref["disc_share"], abs=1e-6)
    assert r["deletion_auc"] == pytest.approx(ref["deletion_auc"], abs=1e-6)
    assert r["deletion_auc_random"] == pytest.approx(ref["deletion_auc_random"], abs=1e-6)
