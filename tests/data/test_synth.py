"""Synthetic fundus generator: determinism, grade prior, lesions carry the grade, geometry,
dataset and the Kaggle-layout writer / ``rbf synth``."""
from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from PIL import Image

from robustbench_fundus.cli import main as rbf_main
from robustbench_fundus.data.geometry import estimate_geometry
from robustbench_fundus.data.synth import (EYEPACS_PRIOR, SynthBatch, SyntheticDataset,
                                           make_synthetic, synthetic_grades, synthetic_id,
                                           write_synthetic)
from robustbench_fundus.errors import RBFError


@pytest.fixture(autouse=True)
def _one_thread():
    # many small tensor ops: one thread is much faster on the shared 2-core machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_prior_is_eyepacs_and_normalised():
    assert sum(EYEPACS_PRIOR) == pytest.approx(1.0)
    assert EYEPACS_PRIOR == pytest.approx((0.73, 0.07, 0.15, 0.025, 0.025), abs=1e-9)


def test_batch_shapes_dtypes_ids():
    b = make_synthetic(4, 40, seed=3, start=7)
    assert isinstance(b, SynthBatch) and len(b) == 4
    assert b.images.shape == (4, 3, 40, 40) and b.images.dtype == torch.uint8
    assert b.grades.shape == (4,) and b.grades.dtype == torch.long
    assert b.lesion_masks.shape == (4, 1, 40, 40) and b.lesion_masks.dtype == torch.bool
    assert b.ids == [synthetic_id(i) for i in range(7, 11)] == [f"synth_{i:06d}" for i in
                                                                 range(7, 11)]
    assert b.radius.shape == (4,) and b.center.shape == (4, 2)
    # black outside the disc, orange-red inside (red > green > blue at the centre)
    assert int(b.images[:, :, 0, 0].max()) == 0
    c = b.images[:, :, 20, 20].float()
    assert (c[:, 0] > c[:, 1]).all() and (c[:, 1] > c[:, 2]).all()


def test_deterministic_and_seed_dependent():
    a = make_synthetic(3, 48, seed=11)
    b = make_synthetic(3, 48, seed=11)
    c = make_synthetic(3, 48, seed=12)
    assert torch.equal(a.images, b.images) and torch.equal(a.lesion_masks, b.lesion_masks)
    assert torch.equal(a.grades, b.grades)
    assert not torch.equal(a.images, c.images)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2 ** 31), start=st.integers(0, 10_000), n=st.integers(1, 4),
       i=st.integers(0, 3))
def test_sample_depends_only_on_seed_and_index(seed, start, n, i):
    i = min(i, n - 1)
    batch = make_synthetic(n, 32, seed=seed, start=start)
    one = make_synthetic(1, 32, seed=seed, start=start + i)
    assert torch.equal(batch.images[i], one.images[0])
    assert torch.equal(batch.lesion_masks[i], one.lesion_masks[0])
    assert int(batch.grades[i]) == int(one.grades[0]) and batch.ids[i] == one.ids[0]


def test_grades_follow_prior_chi_square():
    from scipy.stats import chisquare

    n = 40_000
    g = synthetic_grades(n, seed=0)
    counts = torch.bincount(g, minlength=5).double().numpy()
    expected = np.array(EYEPACS_PRIOR) * n
    assert chisquare(counts, expected).pvalue > 1e-3
    assert np.abs(counts / n - np.array(EYEPACS_PRIOR)).max() < 0.01
    # a skewed prior is followed too, and make_synthetic draws the same grades
    g2 = synthetic_grades(4000, seed=5, prior=(1, 1, 0, 0, 2))
    frac = torch.bincount(g2, minlength=5).double() / 4000
    assert frac[2] == 0 and frac[3] == 0
    assert frac.tolist() == pytest.approx([0.25, 0.25, 0, 0, 0.5], abs=0.03)
    assert torch.equal(make_synthetic(6, 24, seed=5, prior=(1, 1, 0, 0, 2)).grades, g2[:6])


def test_grades_do_not_depend_on_start_slicing():
    full = synthetic_grades(50, seed=9)
    assert torch.equal(full[20:30], synthetic_grades(10, seed=9, start=20))


@pytest.mark.parametrize("bad", [(1, 2), (0.5, -0.1, 0.2, 0.2, 0.2), (0, 0, 0, 0, 0), "abc",
                                 (float("nan"), 1, 1, 1, 1)])
def test_bad_prior_raises(bad):
    with pytest.raises(RBFError, match="prior"):
        make_synthetic(1, 32, prior=bad)


def test_bad_arguments_raise():
    with pytest.raises(RBFError, match="size"):
        make_synthetic(1, 8)
    with pytest.raises(RBFError, match="n must"):
        make_synthetic(-1, 32)
    with pytest.raises(RBFError, match="grades"):
        make_synthetic(2, 32, grades=[0, 5])
    with pytest.raises(RBFError, match="grades"):
        make_synthetic(2, 32, grades=[0])


def test_grade_lives_in_the_lesions_only():
    """Same eye at grades 0-4: pixels change only at (and right next to) lesion pixels, and
    grade 0 has no lesions; the global colour is the same whatever the grade."""
    S = 96
    for idx in (0, 1, 2):
        # the same eye (index idx) rendered at each grade
        eye = [make_synthetic(1, S, seed=4, start=idx, grades=[g]) for g in range(5)]
        assert not eye[0].lesion_masks.any()
        for g in range(1, 5):
            assert eye[g].lesion_masks.any(), f"grade {g} without lesions"
            diff = (eye[g].images[0].int() - eye[0].images[0].int()).abs().amax(0)  # (S,S)
            near = F.max_pool2d(eye[g].lesion_masks[0].float()[None], 7, 1, 3)[0, 0] > 0
            assert int(diff[~near].max()) <= 12, (idx, g)
            assert int(diff[near].max()) > 40
            # global colour: each channel's mean within 3 levels of the grade-0 rendering
            m0 = eye[0].images[0].float().mean((1, 2))
            mg = eye[g].images[0].float().mean((1, 2))
            assert (mg - m0).abs().max() < 3.0, (m0, mg)
            assert torch.equal(eye[g].radius, eye[0].radius)


def test_lesion_load_increases_with_grade():
    g = torch.arange(5).repeat_interleave(6)
    b = make_synthetic(30, 64, seed=2, grades=g)
    area = b.lesion_masks.float().mean((1, 2, 3)).view(5, 6).mean(1)
    assert area[0] == 0
    assert area[1] < area[2] < area[3]
    assert area[4] > area[2]
    assert torch.equal(b.grades, g)


def test_microaneurysms_visible_at_224():
    """Grade 1 (microaneurysms only): mask pixels are clearly darker in green than the same
    eye's grade-0 rendering."""
    for idx in range(3):
        g0 = make_synthetic(1, 224, seed=1, start=idx, grades=[0])
        g1 = make_synthetic(1, 224, seed=1, start=idx, grades=[1])
        m = g1.lesion_masks[0, 0]
        assert m.sum() >= 2 * 5  # at least two microaneurysms of >= ~5 px each
        drop = g0.images[0, 1].float()[m] - g1.images[0, 1].float()[m]
        assert drop.mean() > 15


@pytest.mark.parametrize("size", [96, 224])
def test_estimate_geometry_finds_the_true_radius(size):
    b = make_synthetic(16, size, seed=8)
    geom = estimate_geometry(b.images.float() / 255)
    rel = (geom.radius - b.radius).abs() / b.radius
    assert rel.max() < 0.03, rel
    assert ((geom.center[:, 0] - b.center[:, 0]).abs() / b.radius).max() < 0.03


def test_some_discs_are_cut_by_the_frame():
    """Like real cameras, some discs are cut flat at the top: the first lit rows are then a wide
    chord (>= 0.45 R), where a round disc's cap is narrow."""
    b = make_synthetic(24, 256, seed=0)
    lit = b.images.amax(1) > 30                                 # (n,S,S)
    widths = lit.sum(2).float()                                 # (n,S)
    first = (widths > 0).float().argmax(1)
    top_width = torch.stack([widths[i, first[i]:first[i] + 2].max() for i in range(24)])
    cut = top_width / b.radius > 0.45
    assert 3 <= int(cut.sum()) <= 20, top_width / b.radius
    geom = estimate_geometry(b.images.float() / 255)
    assert ((geom.radius - b.radius).abs() / b.radius).max() < 0.03


def test_lesion_masks_inside_the_fundus():
    b = make_synthetic(8, 64, seed=6, grades=[3, 4, 3, 4, 2, 2, 4, 3])
    lit = b.images.amax(1, keepdim=True) > 0
    assert not (b.lesion_masks & ~lit).any()


def test_dataset_items_match_make_synthetic():
    ds = SyntheticDataset(5, 40, seed=7)
    b = make_synthetic(5, 40, seed=7)
    assert len(ds) == 5 and ds.labels == b.grades.tolist() and ds.ids == b.ids
    for i in (0, 3, -1):
        it = ds[i]
        j = i % 5
        assert set(it) == {"image", "label", "index", "id", "lesion_mask"}
        assert it["image"].dtype == torch.uint8 and it["image"].shape == (3, 40, 40)
        assert it["lesion_mask"].dtype == torch.bool and it["lesion_mask"].shape == (1, 40, 40)
        assert isinstance(it["label"], int) and it["index"] == j and it["id"] == b.ids[j]
        assert torch.equal(it["image"], b.images[j])
        assert torch.equal(it["lesion_mask"], b.lesion_masks[j])
    with pytest.raises(IndexError):
        ds[5]
    ds4 = SyntheticDataset(3, 32, seed=1, grades=[4, 4, 0])
    assert ds4.labels == [4, 4, 0] and ds4[0]["label"] == 4


def test_dataloader_collates():
    from torch.utils.data import DataLoader

    batch = next(iter(DataLoader(SyntheticDataset(4, 32, seed=0), batch_size=4)))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["label"].shape == (4,)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_write_synthetic_layout_and_identical_bytes(tmp_path):
    a = write_synthetic(tmp_path / "a", 6, 48, seed=3)
    write_synthetic(tmp_path / "b", 6, 48, seed=3)
    ta, tb = _tree_bytes(a), _tree_bytes(tmp_path / "b")
    assert ta == tb
    assert len(ta) == 1 + 6 + 6
    b = make_synthetic(6, 48, seed=3)
    lines = (a / "trainLabels.csv").read_text().splitlines()
    assert lines[0] == "image,level"
    assert lines[1:] == [f"{i},{int(g)}" for i, g in zip(b.ids, b.grades)]
    for k, iid in enumerate(b.ids):
        im = Image.open(a / "train" / f"{iid}.jpeg")
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (48, 48)
        assert not im.info.get("exif")
        arr = torch.from_numpy(np.array(im)).permute(2, 0, 1).float()
        assert (arr - b.images[k].float()).abs().mean() < 3  # quality-95 JPEG of the image
        m = np.asarray(Image.open(a / "masks" / f"{iid}.png"))
        assert m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255}
        assert np.array_equal(m > 0, b.lesion_masks[k, 0].numpy())


def test_written_folder_reads_as_eyepacs(tmp_path):
    layouts = pytest.importorskip("robustbench_fundus.data.layouts")
    out = write_synthetic(tmp_path / "s", 5, 32, seed=1)
    rs = layouts.read_records(out)
    assert rs.layout == "eyepacs"
    got = {r.image_id: r.label for r in rs.records}
    b = make_synthetic(5, 32, seed=1)
    assert got == dict(zip(b.ids, b.grades.tolist()))


def test_write_synthetic_rejects_a_file_as_out(tmp_path):
    f = tmp_path / "x"
    f.write_text("")
    with pytest.raises(RBFError, match="not a folder"):
        write_synthetic(f, 2, 32)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert rbf_main(["synth", "--out", str(tmp_path / "o"), "--n", "0"]) == 2
    assert "rbf: error: --n" in capsys.readouterr().err
    assert rbf_main(["synth", "--out", str(tmp_path / "o"), "--n", "2", "--size", "4"]) == 2


@pytest.mark.slow
def test_rbf_synth_200_at_256_twice_is_byte_identical(tmp_path, capsys):
    """The issue's acceptance check: ``rbf synth --out D --n 200 --size 256 --seed 0`` twice."""
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    for d in (d1, d2):
        assert rbf_main(["synth", "--out", str(d), "--n", "200", "--size", "256",
                         "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "wrote 200 synthetic images" in out
    cmp = filecmp.dircmp(d1, d2)
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    t1, t2 = _tree_bytes(d1), _tree_bytes(d2)
    assert len(t1) == 401 and t1 == t2
    # the 200 grades follow the prior within sampling error
    levels = [int(l.split(",")[1]) for l in (d1 / "trainLabels.csv").read_text().splitlines()[1:]]
    frac0 = levels.count(0) / 200
    assert 0.6 < frac0 < 0.85 and len(set(levels)) == 5
