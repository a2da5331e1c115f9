"""The full benchmark (clean + 4 fundus corruptions x 4 severities + PGD-10 over 6 eps) against a
naive pipeline built from the peer tools, on the same model and the same photographs, in one run.

Ours: ``robustbench_fundus.evaluate`` -- each image decoded once (fresh crop cache), geometry
once per batch, corruptions batched in torch (all severities of a corruption in one call), the
PGD eps sweep warm-started and stopping on broken samples, metrics from confusion matrices.

Naive (what one writes with the peer tools): for every condition, decode and crop every image
again, corrupt it one by one with ``imagecorruptions-imaug`` (the ImageNet-C stand-ins for the
four fundus corruptions: fog for light leakage, motion_blur, brightness for over exposure and
contrast for under exposure; severities 1-4), Graham, predict, then scikit-learn's metrics per
condition; the attack is ``torchattacks.PGD`` (10 steps, step 2.5*eps/10, random start, the same
as ours) run from scratch at each of the 6 eps on all clean inputs, robust accuracy by
scikit-learn.

Peak memory: ``evaluate`` in a fresh subprocess at two data-set sizes (ru_maxrss).

Time budget: the report's per-stage seconds (decode and geometry, preprocessing, corruptions,
model forward, attacks, metrics and store, other) and the pipeline efficiency (model forward +
attack seconds / total), for the demo model and for a ResNet-18 at 224 px (``--budget-models``;
random weights from ``create_model``: the time per image does not depend on them, the attack's
early stop does, so its PGD share is a lower bound for a trained model).

    .venv/bin/python benchmarks/bench_full.py [--n 24] [--size 128] [--mem-sizes 16,64]

No GPU was available: every number is CPU (see the JSON's "device").
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REAL = Path(os.environ.get("RBF_REAL_DATA", REPO.parent / "shared" / "data" / "fundus-real"))
EPS = [0.5 / 255, 1 / 255, 2 / 255, 2.5 / 255, 4 / 255, 8 / 255]
PEER_CORRUPTIONS = {"light_leakage": "fog", "motion_blur": "motion_blur",
                    "over_exposure": "brightness", "under_exposure": "contrast"}


def make_model(size: int):
    """The bundled demo model when present (at its own size), else a calibrated tiny_cnn."""
    from robustbench_fundus.models import create_model, load_model
    demo = REPO / "src" / "robustbench_fundus" / "assets" / "demo_model.safetensors"
    if demo.is_file():
        return load_model(demo), "demo_model (tiny_cnn, trained)"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        m = create_model("tiny_cnn", input_size=size).eval()
        calib = torch.rand(32, 3, size // 8, size // 8)
        calib = torch.nn.functional.interpolate(calib, size=(size, size), mode="bilinear")
        with torch.no_grad():
            f = m.backbone.forward_features(m.normalize(calib))
            p = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], 1)
            w = torch.randn(5, p.shape[1]) / p.std(0).clamp_min(1e-4) / p.shape[1] ** 0.5 * 3
            m.backbone.head.weight.copy_(w)
            m.backbone.head.bias.copy_(-(w @ p.mean(0)))
    return m, "tiny_cnn (random weights, calibrated head)"


def run_ours(model, n: int, batch: int, size: int | None = None) -> tuple[float, dict]:
    from robustbench_fundus import evaluate
    from robustbench_fundus.bench import DataOptions, RunOptions
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        rep = evaluate(model, str(REAL), corruptions="all", severities="1-4", attack="pgd",
                       eps=EPS, steps=10, seed=0, device="cpu", limit=n,
                       data_options=DataOptions(size=size, cache_dir=cache),
                       run=RunOptions(batch_size=batch))
        return time.perf_counter() - t, rep.to_dict()


def budget_model(name: str):
    """(model, description) of a --budget-models name: demo, or an architecture at NAME@SIZE."""
    from robustbench_fundus.models import create_model
    if name == "demo":
        return make_model(128)
    arch, _, px = name.partition("@")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        m = create_model(arch, input_size=int(px or 224)).eval()
    return m, f"{arch} at {int(px or 224)} px (random weights)"


def budget(name: str, n: int, batch: int) -> dict:
    model, desc = budget_model(name)
    secs, rep = run_ours(model, n, batch, size=model.input_size[0])
    t = rep["provenance"]["timings"]
    return {"model": desc, "n_images": n, "seconds": round(secs, 2),
            "images_per_s": round(n / secs, 3), "stages_s": t["stages_s"],
            "shares": t["shares"], "pipeline_efficiency": t["pipeline_efficiency"],
            "pgd_success": {a["eps_255"]: a["success_rate"] for a in rep["attacks"]}}


def run_naive(model, n: int, batch: int) -> tuple[float, dict]:
    import torchattacks
    from imagecorruptions import corrupt
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score

    from robustbench_fundus.data import graham, load_working, read_records

    size = model.input_size[0]
    recs = read_records(REAL).records
    idx = [i * len(recs) // n for i in range(n)]
    y = np.array([recs[i].label for i in idx])

    def images(peer: str | None, sev: int):
        out = []
        for i in idx:  # decode + crop again for every condition (no cache)
            crop = load_working(recs[i].path, size, cache_dir=False)
            if peer:
                hwc = crop.permute(1, 2, 0).numpy()
                hwc = np.asarray(corrupt(hwc, corruption_name=peer, severity=sev)).astype(np.uint8)
                crop = torch.from_numpy(np.ascontiguousarray(hwc)).permute(2, 0, 1)
            out.append(graham(crop.unsqueeze(0).float() / 255.0)[0])
        return torch.stack(out)

    def predict(x):
        with torch.no_grad():
            return torch.cat([model(x[b:b + batch]).argmax(1) for b in range(0, len(x), batch)])

    res = {}
    t = time.perf_counter()
    x_clean = images(None, 0)
    p = predict(x_clean).numpy()
    res["clean"] = {"accuracy": accuracy_score(y, p),
                    "balanced_accuracy": balanced_accuracy_score(y, p),
                    "kappa": cohen_kappa_score(y, p, weights="quadratic", labels=range(5))}
    for ours, peer in PEER_CORRUPTIONS.items():
        for s in (1, 2, 3, 4):
            p = predict(images(peer, s)).numpy()
            res[f"{peer}/{s}"] = {"accuracy": accuracy_score(y, p),
                                  "balanced_accuracy": balanced_accuracy_score(y, p),
                                  "kappa": cohen_kappa_score(y, p, weights="quadratic",
                                                             labels=range(5))}
    yt = torch.as_tensor(y)
    for e in EPS:
        atk = torchattacks.PGD(model, eps=e, alpha=2.5 * e / 10, steps=10, random_start=True)
        torch.manual_seed(0)
        adv = torch.cat([atk(x_clean[b:b + batch], yt[b:b + batch])
                         for b in range(0, n, batch)])
        p = predict(adv).numpy()
        res[f"pgd/{e:.7f}"] = {"robust_accuracy": accuracy_score(y, p)}
    return time.perf_counter() - t, res


MEM_CHILD = r"""
import resource, sys, time, torch
torch.set_num_threads(1)
from robustbench_fundus import evaluate
from robustbench_fundus.bench import DataOptions, RunOptions
sys.path.insert(0, {here!r})
from bench_full import make_model
m, _ = make_model({size})
import tempfile
with tempfile.TemporaryDirectory() as cache:
    t = time.perf_counter()
    evaluate(m, {data!r}, corruptions="all", attack="pgd", eps={eps!r}, steps=10, limit={n},
             data_options=DataOptions(cache_dir=cache), run=RunOptions(batch_size={batch}),
             device="cpu")
    dt = time.perf_counter() - t
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, dt)
"""


def peak_memory(n: int, size: int, batch: int) -> dict:
    code = MEM_CHILD.format(here=str(HERE), size=size, data=str(REAL), eps=EPS, n=n, batch=batch)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.strip().splitlines()[-1].split()
    return {"n_images": n, "peak_rss_mib": round(int(out[0]) / 1024, 1),
            "seconds": round(float(out[1]), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mem-sizes", default="16,64")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--budget-models", default="demo,resnet18@224",
                    help="models of the time-budget table (demo, or ARCH@SIZE)")
    ap.add_argument("--budget-n", type=int, default=24)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, model_desc = make_model(args.size)
    size = model.input_size[0]

    t_ours, rep = run_ours(model, args.n, args.batch)
    out = {
        "benchmark": "full bench: clean + 4 corruptions x 4 severities + PGD-10 x 6 eps",
        "device": "cpu (no GPU available)", "cpu_threads": args.threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs)",
        "torch": torch.__version__, "model": model_desc, "input_size": size,
        "data": f"{args.n} photographs of fundus-real (evenly spaced)",
        "n_images": args.n, "conditions": 1 + 16 + 6,
        "ours": {"seconds": round(t_ours, 2), "images_per_s": round(args.n / t_ours, 3),
                 "timings": rep["provenance"]["timings"],
                 "clean_accuracy": rep["clean"]["accuracy"],
                 "pgd_success": {a["eps_255"]: a["success_rate"] for a in rep["attacks"]}},
    }
    if not args.skip_naive:
        t_naive, res = run_naive(model, args.n, args.batch)
        out["naive"] = {"seconds": round(t_naive, 2), "images_per_s": round(args.n / t_naive, 3),
                        "clean_accuracy": res["clean"]["accuracy"],
                        "pgd_robust_accuracy": {k: v["robust_accuracy"] for k, v in res.items()
                                                if k.startswith("pgd/")}}
        out["speedup"] = round(t_naive / t_ours, 2)
        out["clean_accuracy_agrees"] = abs(res["clean"]["accuracy"] -
                                           rep["clean"]["accuracy"]) < 1e-12
        out["robust_accuracy_ours"] = {a["eps_255"]: a["robust_accuracy"] for a in rep["attacks"]}
    out["peak_memory"] = [peak_memory(int(k), size, args.batch)
                          for k in args.mem_sizes.split(",")]
    out["budget"] = [budget(b, args.budget_n, args.batch)
                     for b in args.budget_models.split(",") if b]
    out["load_average_end"] = round(os.getloadavg()[0], 2)
    res_dir = HERE / "results"
    res_dir.mkdir(exist_ok=True)
    (res_dir / "full.json").write_text(json.dumps(out, indent=2))
    md = [f"# Full bench vs naive peer pipeline ({out['device']})", "",
          f"{out['data']}, model {model_desc} at {size} px, {args.threads} CPU thread(s), "
          f"{out['conditions']} conditions.", "",
          "| pipeline | seconds | images/s |", "|---|---|---|",
          f"| ours (evaluate) | {out['ours']['seconds']} | {out['ours']['images_per_s']} |"]
    if "naive" in out:
        md.append(f"| naive (imagecorruptions + torchattacks per eps + scikit-learn) | "
                  f"{out['naive']['seconds']} | {out['naive']['images_per_s']} |")
        md += ["", f"Speed-up: **{out['speedup']}x** (target >= 3x). Clean accuracy identical: "
               f"{out['clean_accuracy_agrees']}."]
    md += ["", "Peak memory of `evaluate` (fresh process, ru_maxrss):", "",
           "| images | peak RSS MiB | seconds |", "|---|---|---|"]
    md += [f"| {m['n_images']} | {m['peak_rss_mib']} | {m['seconds']} |"
           for m in out["peak_memory"]]
    if out["budget"]:
        stages = list(out["budget"][0]["shares"])
        md += ["", "## Where the time goes", "",
               "Share of each run's wall time per stage (the report's `timings`), full bench "
               f"as above on {args.budget_n} photographs, batch {args.batch}. Pipeline "
               "efficiency = (model forward + attack) / total; the attack stage is the "
               "model's forward and backward passes of every PGD step with the attack's own "
               "arithmetic.", "",
               "| model | seconds | images/s | " + " | ".join(stages) + " | efficiency |",
               "|---|---:|---:|" + "---:|" * len(stages) + "---:|"]
        for b in out["budget"]:
            md.append(f"| {b['model']} | {b['seconds']} | {b['images_per_s']} | "
                      + " | ".join(f"{100 * b['shares'][k]:.1f}%" for k in stages)
                      + f" | **{b['pipeline_efficiency']:.2f}** |")
    md += ["", f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} cores shared "
           f"with other jobs (load average {out['load_average_end']} at the end); absolute "
           "times vary with the load, the ratios and shares are from the same run."]
    (res_dir / "full.md").write_text("\n".join(md) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
