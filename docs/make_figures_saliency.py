"""Figures for docs/saliency.md: a baseline and a PGD-trained model side by side on a real photo.

Usage (from the repository root)::

    .venv/bin/python docs/make_figures_saliency.py                    # train if needed, render
    .venv/bin/python docs/make_figures_saliency.py --baseline-ckpt A --robust-ckpt B   # use yours
    .venv/bin/python docs/make_figures_saliency.py --retrain          # ignore cached models

Without checkpoints it trains two small ``tiny_cnn`` models on synthetic fundus images
(``data.synth.make_synthetic``, Graham preprocessing, 96 px; a few minutes on 2 CPU cores):

- ``baseline``: plain cross-entropy;
- ``pgd``: the reference's recipe, loss 0.5 clean + 0.5 adversarial, PGD (L-inf, eps 2.5/255,
  step eps/2, random start) with 3 steps instead of 5 to keep it quick.

The synthetic set and the two checkpoints are cached under ``$RBF_CACHE_DIR`` (default
``~/.cache/robustbench_fundus``)/``docs_saliency`` so re-running only re-renders. Writes
``docs/img/saliency_compare.png`` (both models, one real photograph from
``../shared/data/fundus-real``), ``docs/img/saliency_baselines.png`` (one model, four IG
baselines) and prints the saliency scores of both models on held-out synthetic images (the
numbers quoted in docs/saliency.md). Only the PNGs are committed.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from robustbench_fundus.data.geometry import crop_resize, estimate_geometry  # noqa: E402
from robustbench_fundus.data.graham import graham  # noqa: E402
from robustbench_fundus.data.synth import make_synthetic  # noqa: E402
from robustbench_fundus.interpret import saliency_figure, saliency_scores  # noqa: E402
from robustbench_fundus.interpret.figure import render_panels, prepare_image  # noqa: E402
from robustbench_fundus.interpret import attribute  # noqa: E402
from robustbench_fundus.models import create_model, load_model, save_checkpoint  # noqa: E402
from robustbench_fundus.seeding import torch_generator  # noqa: E402

SIZE = 96
N_TRAIN, N_VAL = 600, 60
EPOCHS = 6
EPS, PGD_STEPS = 2.5 / 255, 3
REAL = REPO.parent / "shared" / "data" / "fundus-real"
IMG = REPO / "docs" / "img"


def code_key() -> str:
    """Short hash of the code the cached data and models depend on (synthetic generator,
    geometry, Graham, tiny_cnn, this script): an edit there invalidates the cache."""
    import hashlib
    h = hashlib.sha256()
    src = REPO / "src" / "robustbench_fundus"
    for f in ("data/synth.py", "preprocessing/geometry.py", "preprocessing/graham.py", "models/tiny.py"):
        h.update((src / f).read_bytes())
    h.update(Path(__file__).read_bytes().split(b"def main()")[0])
    return h.hexdigest()[:10]


def cache_dir() -> Path:
    root = Path(os.environ.get("RBF_CACHE_DIR", Path.home() / ".cache" / "robustbench_fundus"))
    d = root / "docs_saliency" / code_key()
    d.mkdir(parents=True, exist_ok=True)
    return d


def preprocess(images_u8: torch.Tensor, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 photos -> (Graham model input, fundus mask), batched, as the benchmark does."""
    x = images_u8.float() / 255
    crop = crop_resize(x, estimate_geometry(x), size)
    g = estimate_geometry(crop)
    return graham(crop, g), g.mask


def synthetic(n: int, seed: int, balanced: bool) -> dict:
    path = cache_dir() / f"synth_{n}_{SIZE}_{seed}_{int(balanced)}.pt"
    if path.is_file():
        return torch.load(path)
    t0 = time.time()
    grades = torch.arange(n) % 5 if balanced else None
    b = make_synthetic(n, SIZE, seed=seed, grades=grades)
    x, mask = preprocess(b.images)
    # crop_resize is the identity-ish resample here (synthetic discs fill the frame); the lesion
    # masks are used at the same size, so resample them the same way
    lm = crop_resize(b.lesion_masks.float().expand(-1, 3, -1, -1),
                     estimate_geometry(b.images.float() / 255), SIZE)[:, :1] > 0.5
    d = {"x": x, "y": b.grades, "fundus": mask, "lesion": lm}
    torch.save(d, path)
    print(f"  synthetic {n} images in {time.time() - t0:.0f} s -> {path}")
    return d


def pgd(model, x, y, eps=EPS, steps=PGD_STEPS, gen=None):
    alpha = eps / 2
    delta = (torch.rand(x.shape, generator=gen) * 2 - 1) * eps
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model((x + delta).clamp(0, 1)), y)
        (g,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + alpha * g.sign()).clamp(-eps, eps)
    return (x + delta).clamp(0, 1).detach()


def train(recipe: str, data: dict, seed: int = 0):
    torch.manual_seed(seed)  # a script, not library code: init of the tiny CNN
    model = create_model("tiny_cnn", input_size=SIZE, preprocessing="graham",
                         meta={"recipe": recipe, "script": "docs/make_figures_saliency.py"})
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    x, y = data["x"], data["y"]
    n, bs = x.shape[0], 32
    steps = EPOCHS * ((n + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps, pct_start=0.15)
    gen = torch_generator(seed, "docs_saliency", recipe)
    t0 = time.time()
    for ep in range(EPOCHS):
        order = torch.randperm(n, generator=gen)
        model.train()
        tot = 0.0
        for i in range(0, n, bs):
            idx = order[i:i + bs]
            xb, yb = x[idx], y[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(3), xb)
            if recipe == "pgd":
                model.eval()  # attack with fixed BN statistics
                xa = pgd(model, xb, yb, gen=gen)
                model.train()
                loss = 0.5 * F.cross_entropy(model(xb), yb) + 0.5 * F.cross_entropy(model(xa), yb)
            else:
                loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
        print(f"  {recipe} epoch {ep + 1}/{EPOCHS} loss {tot / n:.3f} ({time.time() - t0:.0f} s)")
    return model.eval()


def accuracy(model, data) -> float:
    with torch.no_grad():
        return float((model(data["x"]).argmax(1) == data["y"]).float().mean())


def pick_real_photo() -> Path:
    with open(REAL / "labels.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["level"] in ("3", "4")]
    return REAL / "images" / sorted(rows, key=lambda r: r["image"])[0]["image"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline-ckpt", default=None)
    ap.add_argument("--robust-ckpt", default=None)
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--image", default=None, help="photograph (default: first grade 3-4 image)")
    ap.add_argument("--steps", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))

    ckpts = {}
    if args.baseline_ckpt and args.robust_ckpt:
        ckpts = {"baseline": Path(args.baseline_ckpt), "pgd": Path(args.robust_ckpt)}
        models = {k: load_model(p) for k, p in ckpts.items()}
        val = None
    else:
        val = synthetic(N_VAL, seed=101, balanced=True)
        models = {}
        for recipe in ("baseline", "pgd"):
            p = cache_dir() / f"{recipe}_tiny_cnn_{SIZE}.safetensors"
            if p.is_file() and not args.retrain:
                models[recipe] = load_model(p)
            else:
                data = synthetic(N_TRAIN, seed=0, balanced=True)
                models[recipe] = train(recipe, data)
                save_checkpoint(models[recipe], p)
            ckpts[recipe] = p
            print(f"{recipe}: {p}")
    if val is not None:
        for k, m in models.items():
            print(f"{k}: synthetic val accuracy {accuracy(m, val):.3f}")
            s = saliency_scores(m, val["x"], val["y"], val["lesion"], val["fundus"], steps=32,
                                baseline="grey")
            print("  saliency (grey baseline, true class): "
                  + json.dumps({k2: (round(v, 3) if isinstance(v, float) else v)
                                for k2, v in s.items() if k2 != "per_sample"}))

    photo = Path(args.image) if args.image else pick_real_photo()
    IMG.mkdir(parents=True, exist_ok=True)
    out = IMG / "saliency_compare.png"
    res = saliency_figure([("baseline", models["baseline"]), ("PGD-trained", models["pgd"])],
                          photo, out, steps=args.steps, baseline="grey")
    for r in res:
        print(f"{r['label']}: pred {r['pred']} p={r['prob']:.2f} delta={r['delta']:+.3g}")
    print(f"wrote {out}")

    # One model, four baselines: what the choice of baseline does.
    m = models["pgd"]
    p = prepare_image(photo, SIZE, "graham")
    panels = []
    for b in ("black", "grey", "blur", "noise"):
        a, d = attribute(m, p.x, "pred", baseline=b, steps=args.steps, return_delta=True)
        panels.append({"heat": a[0].sum(0).clamp_min(0), "title": f"baseline {b}\n"
                       f"sum={float(a.sum()):+.2f}, delta={float(d[0]):+.2g}"})
    out2 = IMG / "saliency_baselines.png"
    render_panels(p.photo[0], panels, out2, extra=[("model input (graham)", p.x[0])],
                  title=f"{photo.name}  PGD-trained model, IG {args.steps} steps, predicted class")
    print(f"wrote {out2}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
