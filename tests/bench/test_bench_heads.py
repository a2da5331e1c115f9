"""Scoring any DR model: the four heads end to end (train -> bench, against predictions decoded
here from the raw outputs), outputs no head reads, and the data a user already has."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score
from sklearn.metrics import confusion_matrix as sk_confusion

from _bench_helpers import tensor_data, tiny_model
from robustbench_fundus import evaluate
from robustbench_fundus.bench import DataOptions, RunOptions
from robustbench_fundus.bench.resolve import DEFAULT_SYNTH_SEED
from robustbench_fundus.cli import main
from robustbench_fundus.errors import RBFError
from robustbench_fundus.heads import HEADS

SIZE = 32
N = 16


def _decode(head: str, out: np.ndarray) -> np.ndarray:
    """Each head's decision, written out here independently of the library."""
    if head == "classification":
        return out.argmax(1)
    if head == "regression":
        return (out[:, :1] > np.array([0.5, 1.5, 2.5, 3.5])[None]).sum(1)
    if head == "ordinal":
        return (1.0 / (1.0 + np.exp(-out)) > 0.5).sum(1)
    return (out[:, 0] > 0).astype(int)           # binary, one logit: referable


@pytest.fixture(scope="module", params=HEADS)
def trained(request, tmp_path_factory):
    head = request.param
    out = tmp_path_factory.mktemp(f"head_{head}") / "model.safetensors"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    rc = main(["train", "--arch", "tiny_cnn", "--data", "synthetic:48", "--size", str(SIZE),
               "--epochs", "1", "--batch-size", "16", "--head", head, "--out", str(out),
               "--quiet", "--seed", "1"])
    torch.set_num_threads(n)
    assert rc == 0
    return head, out


def _images():
    from robustbench_fundus.data.dataset import collate
    from robustbench_fundus.data.synth import SyntheticDataset
    b = collate([SyntheticDataset(N, SIZE, seed=DEFAULT_SYNTH_SEED)[i] for i in range(N)])
    return b["image"].float() / 255.0, b["label"], b["index"]


def test_every_head_trains_and_benches_and_equals_scikit_learn(trained, tmp_path, capsys):
    head, ckpt = trained
    from robustbench_fundus.corruptions import get_corruption
    from robustbench_fundus.models import load_model
    from robustbench_fundus.preprocessing import resolve_preprocessing

    rc = main(["bench", "--model", str(ckpt), "--data", f"synthetic:{N}", "--eps",
               "1/255,8/255", "--steps", "2", "--json", "--no-store", "--no-progress"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    rep = json.loads(cap.out)
    assert rep["model"]["head"]["name"] == head            # from the checkpoint, no flag
    model = load_model(ckpt).eval()
    pre = resolve_preprocessing(model)
    x_raw, grades, ids = _images()
    geom = pre.geometry(x_raw)
    y = grades.numpy() if head != "binary" else (grades.numpy() >= 2).astype(int)
    labels = list(range(5 if head != "binary" else 2))

    def check(row, x_in):
        with torch.no_grad():
            pred = _decode(head, model(x_in).numpy())
        assert row["confusion"] == sk_confusion(y, pred, labels=labels).tolist()
        if head == "binary":  # five-grade metrics do not exist for a referral decision
            assert row["accuracy"] is None and row["kappa"] is None
        else:
            assert row["accuracy"] == pytest.approx(accuracy_score(y, pred))
            present = sorted(set(y))
            assert row["balanced_accuracy"] == pytest.approx(
                balanced_accuracy_score(y, pred)) or len(present) < 5
            assert row["kappa"] == pytest.approx(
                cohen_kappa_score(y, pred, weights="quadratic", labels=labels))
        return pred

    clean_pred = check(rep["clean"], pre.model_input(x_raw, geom))
    assert len(rep["corruptions"]) == 16
    for c in rep["corruptions"]:
        xc = get_corruption(c["name"])(x_raw, c["severity"], seed=0, sample_ids=ids, geom=geom)
        check(c, pre.model_input(xc, geom))
    correct = int((clean_pred == y).sum())
    for a in rep["attacks"]:
        assert a["n_attacked"] == correct and a["n"] == N
        assert a["robust_accuracy"] == pytest.approx((a["n_attacked"] - a["n_broken"]) / N)


class _Out(torch.nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.lin = torch.nn.Linear(3, 6)

    def forward(self, x):
        z = self.lin(x.mean(dim=(2, 3)))
        if self.kind == "six":
            return z
        if self.kind == "tuple":
            return z[:, :5], z
        return z[:, 0]                                     # 1-D


@pytest.mark.parametrize("kind, match", [
    ("six", "outputs 6 values per image, the classification head needs 5; no head fits"),
    ("tuple", "returned a tuple of 2 items"),
    ("flat", r"tensor of shape \(4,\); it must be \(B, width\)"),
])
def test_outputs_no_head_reads_are_one_line_errors(kind, match, tmp_path, capsys):
    x, y = tensor_data(4, SIZE)
    with pytest.raises(RBFError, match=match):
        evaluate(_Out(kind), (x, y), corruptions="none", attack=None)
    ts = tmp_path / f"{kind}.pt"
    torch.jit.save(torch.jit.trace(_Out(kind), torch.rand(2, 3, SIZE, SIZE)), ts)
    rc = main(["bench", "--model", str(ts), "--data", "synthetic:4", "--corruptions", "none",
               "--attack", "none", "--no-store", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "Traceback" not in err, err
    assert "rbf: error:" in err


def test_a_six_output_checkpoint_and_rbf_inspect(tmp_path, capsys):
    from robustbench_fundus.models import create_model, save_checkpoint
    ck = save_checkpoint(create_model("tiny_cnn", num_classes=6), tmp_path / "six.safetensors")
    rc = main(["bench", "--model", str(ck), "--data", "synthetic:4", "--no-store"])
    err = capsys.readouterr().err
    assert rc == 2 and "outputs 6 values per image" in err and "no head fits" in err
    assert main(["inspect", str(ck)]) == 1
    out = capsys.readouterr().out
    assert "none fits 6 outputs" in out
    reg = save_checkpoint(create_model("tiny_cnn", head="regression"), tmp_path / "r.safetensors")
    assert main(["inspect", str(reg)]) == 0
    assert "regression (from the file)" in capsys.readouterr().out


def test_head_flag_reads_a_foreign_model(capsys):
    m = tiny_model(SIZE, seed=3, preprocessing="none")
    one = torch.nn.Sequential(m, torch.nn.Linear(5, 1))    # a bare module with one output
    x, y = tensor_data(8, SIZE)
    with pytest.raises(RBFError, match="heads that fit: regression, binary"):
        evaluate(one, (x, y), corruptions="none", attack=None)
    rep = evaluate(one, (x, y), corruptions="none", attack="pgd", eps="1/255,8/255", steps=2,
                   head="regression", head_options={"thresholds": "0.5,1.5,2.5,3.5"})
    assert rep.model["head"] == {"name": "regression", "thresholds": [0.5, 1.5, 2.5, 3.5]}
    assert rep.clean.n == 8 and len(rep.attacks) == 2
    bin_rep = evaluate(one, (x, y), corruptions="none", attack=None, head="binary")
    assert len(bin_rep.clean.confusion) == 2 and bin_rep.model["sha256"] != rep.model["sha256"]


def test_evaluate_none_is_the_demo_model():
    rep = evaluate(None, "synthetic:4", corruptions="none", attack=None)
    assert rep.model["name"] == "demo_model" and rep.model.get("demo_model") is True


# -- the data a user already has ---------------------------------------------------------------
def _imagefolder(real_data_dir, root, per_grade=4):
    """A torchvision-style class-folder tree of symlinks to some real photographs."""
    import csv
    rows = list(csv.DictReader(open(real_data_dir / "labels.csv")))
    for g in range(5):
        (root / str(g)).mkdir(parents=True)
        for r in [r for r in rows if int(r["level"]) == g][:per_grade]:
            (root / str(g) / r["image"]).symlink_to(real_data_dir / "images" / r["image"])
    return root


class _Tuples(torch.utils.data.Dataset):
    """A user's own dataset: (CHW uint8 tensor, grade) tuples."""

    def __init__(self, folder):
        from torchvision.datasets import ImageFolder
        self.inner = ImageFolder(str(folder))

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        img, c = self.inner[i]
        arr = np.asarray(img)
        return torch.from_numpy(arr.transpose(2, 0, 1).copy()), int(self.inner.classes[c])


@pytest.mark.parametrize("size", [96, 384])
def test_folder_imagefolder_tuples_and_loader_give_identical_metrics(real_data_dir, tmp_path,
                                                                     size):
    """At 384 px these 765x512 photographs are decoded at full resolution whatever the input
    form, and all four agree exactly. At 96 px a file is decoded at a reduced JPEG scale: the
    folder and the ImageFolder (files) agree exactly; a dataset of images decoded in memory
    is cropped from full resolution, about one grey level apart, and may differ in a few
    borderline predictions (documented in robustbench_fundus.data.adapters)."""
    from torchvision.datasets import ImageFolder
    root = _imagefolder(real_data_dir, tmp_path / "if")
    m = tiny_model(size, seed=4)
    kw = dict(corruptions="none", attack=None, data_options=DataOptions(
        size=size, cache_dir=tmp_path / "cache"), run=RunOptions(batch_size=8))
    reps = {
        "folder": evaluate(m, str(root), **kw),
        "imagefolder": evaluate(m, ImageFolder(str(root)), **kw),
        "tuples": evaluate(m, _Tuples(root), **kw),
        "loader": evaluate(m, torch.utils.data.DataLoader(_Tuples(root), batch_size=5), **kw),
    }
    ref = reps["folder"].clean
    assert ref.n == 20
    for name, rep in reps.items():
        assert rep.provenance["data_space"] == "photo" and rep.clean.n == 20
        if size == 384 or name == "imagefolder":
            assert rep.clean.confusion == ref.confusion, name
    assert reps["tuples"].clean.confusion == reps["loader"].clean.confusion
    # a shuffled loader has no stable order: refused
    with pytest.raises(RBFError, match="shuffle=True"):
        evaluate(m, torch.utils.data.DataLoader(_Tuples(root), shuffle=True), **kw)


def test_data_space_and_bad_data_are_stated(tmp_path):
    m = tiny_model(SIZE, seed=1, preprocessing="none")
    x, y = tensor_data(6, SIZE)
    as_input = evaluate(m, (x, y), corruptions="none", attack=None)
    assert as_input.provenance["data_space"] == "model_input"
    ds = torch.utils.data.TensorDataset(x, y)
    as_photo = evaluate(m, ds, corruptions="none", attack=None,
                        data_options=DataOptions(size=SIZE))
    assert as_photo.provenance["data_space"] == "photo"
    inp = evaluate(m, ds, corruptions="none", attack=None, data_space="model_input")
    assert inp.clean.confusion == as_input.clean.confusion
    with pytest.raises(RBFError, match="data_space='model_input' does not apply"):
        evaluate(m, "synthetic:4", data_space="model_input", attack=None)
    with pytest.raises(RBFError, match="use 'photo'"):
        evaluate(m, ds, data_space="raw", attack=None)
    with pytest.raises(RBFError, match=r"labels must be grades 0-4, got 7"):
        evaluate(m, torch.utils.data.TensorDataset(x, torch.full((6,), 7)), attack=None,
                 corruptions="none", data_space="model_input")
    with pytest.raises(RBFError, match="got int"):
        evaluate(m, 42, attack=None)
    # only some grades present: metrics over the grades present, as scikit-learn does
    some = evaluate(m, (x[:4], torch.tensor([0, 2, 2, 0])), corruptions="none", attack=None)
    assert some.clean.n == 4 and "missing_grades" in {f.code for f in some.flags}


@pytest.mark.parametrize("head", ["regression", "ordinal", "binary"])
def test_saliency_and_sanity_flags_per_head(head):
    from robustbench_fundus.models import create_model
    torch.manual_seed(0)
    m = create_model("tiny_cnn", input_size=SIZE, head=head).eval()
    rep = evaluate(m, "synthetic:6", corruptions="none", attack="pgd", eps="1/255,8/255",
                   steps=2, saliency=4, saliency_steps=4, run=RunOptions(batch_size=6))
    s = rep.saliency
    assert s["n"] == 4 and s["deletion_auc"] is not None and 0 <= s["deletion_auc"] <= 1
    assert s["disc_share"] is not None and 0 <= s["disc_share"] <= 1
    codes = {f.code for f in rep.flags}
    assert "probability_outputs" not in codes   # a (B,1) score is not mistaken for softmax
