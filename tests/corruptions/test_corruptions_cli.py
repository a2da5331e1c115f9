"""`rbf corrupt`: the severity grid and corrupted copies of an image and of a data folder."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from _corruption_helpers import fundus_like
from robustbench_fundus.cli import main as rbf_main
from robustbench_fundus.corruptions import get_corruption
from robustbench_fundus.data.geometry import estimate_geometry


def _write(path, x):
    arr = (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _read(path):
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255


def test_grid(tmp_path, capsys):
    img = tmp_path / "eye.png"
    _write(img, fundus_like(1, 60, 80, seed=1, cut=True)[0])
    for extra in ([], ["--preprocessed"]):
        out = tmp_path / f"grid{len(extra)}.png"
        assert rbf_main(["corrupt", str(img), "--out", str(out), "--size", "48", *extra]) == 0
        assert out.is_file() and Image.open(out).size[0] > 200
    assert "wrote" in capsys.readouterr().out


def test_single_image_copy_at_input_size(tmp_path):
    x = fundus_like(1, 56, 72, seed=2)[0]
    img = tmp_path / "eye.png"
    _write(img, x)
    out = tmp_path / "blur.png"
    assert rbf_main(["corrupt", str(img), "--name", "motion_blur", "--severity", "3",
                     "--out", str(out), "--seed", "5"]) == 0
    y = _read(out)
    assert y.shape == x.shape
    ref = get_corruption("motion_blur")(x[None], 3, seed=5, sample_ids=torch.tensor([0]))[0]
    assert torch.equal(y, ref)
    # severity 0 writes the clean image; all -> one file per fundus corruption
    assert rbf_main(["corrupt", str(img), "--name", "all", "--severity", "0",
                     "--out", str(tmp_path / "all")]) == 0
    files = sorted(p.name for p in (tmp_path / "all").iterdir())
    assert len(files) == 4 and files[0] == "eye_light_leakage_s0.png"
    assert torch.equal(_read(tmp_path / "all" / files[0]), x)


def test_folder_keeps_layout_and_labels(tmp_path):
    src = tmp_path / "data"
    xs = fundus_like(3, 48, seed=3)
    names = ["train/a.png", "train/b.png", "c.png"]
    for n, x in zip(names, xs):
        _write(src / n, x)
    (src / "trainLabels.csv").write_text("image,level\na,0\nb,2\nc,4\n")
    (src / "broken.png").write_bytes(b"")
    out = tmp_path / "out"
    rc = rbf_main(["corrupt", str(src), "--name", "under_exposure", "--severity", "4",
                   "--out", str(out), "--size", "40"])
    assert rc == 1  # the unreadable file is reported, the others written
    assert (out / "trainLabels.csv").read_text() == (src / "trainLabels.csv").read_text()
    for n in names:
        y = _read(out / n)
        assert y.shape == (3, 40, 40)
    assert not (out / "broken.png").exists()
    # sample ids follow the sorted file list: recomputing one image gives the same file
    rc = rbf_main(["corrupt", str(src), "--name", "light_leakage", "--severity", "2",
                   "--out", str(tmp_path / "ll")])
    ordered = sorted(["broken.png", "c.png", "train/a.png", "train/b.png"])
    i = ordered.index("train/b.png")
    x = _read(src / "train/b.png")[None]
    ref = get_corruption("light_leakage")(x, 2, sample_ids=torch.tensor([i]),
                                          geom=estimate_geometry(x))[0]
    assert torch.equal(_read(tmp_path / "ll" / "train/b.png"), ref)


def test_cli_errors(tmp_path, capsys):
    img = tmp_path / "eye.png"
    _write(img, fundus_like(1, 40, seed=1)[0])
    assert rbf_main(["corrupt", str(img), "--name", "motion_blur", "--out", str(tmp_path)]) == 2
    assert "--severity is required" in capsys.readouterr().err
    assert rbf_main(["corrupt", str(img), "--name", "motion_blr", "--severity", "1",
                     "--out", str(tmp_path / "o.png")]) == 2
    assert "did you mean motion_blur" in capsys.readouterr().err
    assert rbf_main(["corrupt", str(img), "--name", "motion_blur", "--severity", "7",
                     "--out", str(tmp_path / "o.png")]) == 2
    assert rbf_main(["corrupt", str(tmp_path / "missing.png"), "--name", "all", "--severity", "1",
                     "--out", str(tmp_path / "o")]) == 2
