"""PGD-10 eps sweep: our engine against torchattacks.PGD run once per eps.

Measured in one run, same model, data, device and batches, eps = 0.5, 1, 2, 2.5, 4, 8 /255:
  ours         get_attack("pgd", steps=10): one ascending sweep (broken samples counted for free
               at larger eps and no longer stepped; survivors warm-started, full step budget)
  ours_warm    the same sweep with warm_start=True (survivors continue from their perturbation)
  ours_indep   our PGD called once per eps (no reuse): the "independent runs" reference
  torchattacks torchattacks.PGD(model, eps, alpha=2.5*eps/10, steps=10, random_start=True) once
               per eps, then one forward pass to score it (success needs it)
Success rate = broken among clean-correct (denominator n_attacked), robust accuracy = correct
after the attack over all n. Writes benchmarks/results/attacks.json and attacks.md.

Model: "toy" (a small CNN with normalisation inside, trained here for a few seconds on the toy
5-class disc images of tests/attacks/_attack_toy.py) or any architecture of
robustbench_fundus.models.create_model (e.g. tiny_cnn, resnet18), trained the same way.

    .venv/bin/python benchmarks/bench_attacks.py [--n 256] [--size 32] [--batch 128]
        [--model toy] [--device cpu|cuda] [--train-steps 150]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "attacks"))

from _attack_toy import ToyNet, make_toy  # noqa: E402

import robustbench_fundus  # noqa: E402
from robustbench_fundus.attacks import SweepCounts, get_attack  # noqa: E402

EPS_255 = [0.5, 1, 2, 2.5, 4, 8]


def build_model(name: str, size: int, steps: int, device: torch.device, seed: int = 0):
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        if name == "toy":
            model = ToyNet()
        else:
            from robustbench_fundus.models import create_model
            model = create_model(name, input_size=(size, size))
        model = model.to(device)
        x, y = make_toy(1024, size, seed=seed + 1)
        x, y = x.to(device), y.to(device)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        model.train()
        g = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            idx = torch.randint(0, x.shape[0], (64,), generator=g).to(device)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_ours(model, batches, eps, device, **cfg):
    atk = get_attack("pgd", steps=10, keep_adv=False, **cfg)
    total = None
    _sync(device)
    t = time.perf_counter()
    for i, (x, y, ids) in enumerate(batches):
        r = atk(model, x, y, eps, seed=0, sample_ids=ids)
        total = r.counts if total is None else total + r.counts
    _sync(device)
    return time.perf_counter() - t, total


def run_ours_indep(model, batches, eps, device):
    atk = get_attack("pgd", steps=10, keep_adv=False, sanity_samples=0)
    n_succ = [0] * len(eps)
    n_rob = [0] * len(eps)
    work = 0
    n_att = n = 0
    _sync(device)
    t = time.perf_counter()
    for x, y, ids in batches:
        for k, e in enumerate(eps):
            c = atk(model, x, y, [e], seed=0, sample_ids=ids).counts
            n_succ[k] += c.n_success[0]
            n_rob[k] += c.n_robust[0]
            work += c.work
            if k == 0:
                n_att += c.n_attacked
                n += c.n
    _sync(device)
    return time.perf_counter() - t, SweepCounts(eps=eps, n=n, n_attacked=n_att, n_success=n_succ,
                                                n_robust=n_rob, work=work)


def run_torchattacks(model, batches, eps, device):
    import torchattacks
    n_succ = [0] * len(eps)
    n_rob = [0] * len(eps)
    n_att = n = 0
    _sync(device)
    t = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        for x, y, _ in batches:
            with torch.no_grad():
                clean = model(x).argmax(1) == y
            n_att += int(clean.sum())
            n += x.shape[0]
            for k, e in enumerate(eps):
                atk = torchattacks.PGD(model, eps=e, alpha=2.5 * e / 10, steps=10,
                                       random_start=True)
                xa = atk(x, y)
                with torch.no_grad():
                    ok = model(xa).argmax(1) == y
                n_succ[k] += int((clean & ~ok).sum())
                n_rob[k] += int((clean & ok).sum())
    _sync(device)
    return time.perf_counter() - t, SweepCounts(eps=eps, n=n, n_attacked=n_att, n_success=n_succ,
                                                n_robust=n_rob,
                                                work=n * len(eps) * 10)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--model", default="toy")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--train-steps", type=int, default=150)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved repeats (median time)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--out", default=str(HERE / "results" / "attacks"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    eps = [e / 255 for e in EPS_255]

    t0 = time.perf_counter()
    model = build_model(args.model, args.size, args.train_steps, device)
    t_train = time.perf_counter() - t0
    x, y = make_toy(args.n, args.size, seed=99)
    ids = torch.arange(args.n)
    batches = [(x[i:i + args.batch].to(device), y[i:i + args.batch].to(device),
                ids[i:i + args.batch].to(device)) for i in range(0, args.n, args.batch)]
    # warm-up (first-call overheads, cudnn autotune) on a few samples
    wb = [(batches[0][0][:8], batches[0][1][:8], batches[0][2][:8])]
    run_ours(model, wb, eps, device)
    run_torchattacks(model, wb, eps, device)

    # interleaved repeats, median time: the CPU is shared, so single timings are noisy
    runs = {
        "ours": lambda: run_ours(model, batches, eps, device),
        "torchattacks": lambda: run_torchattacks(model, batches, eps, device),
        "ours_warm": lambda: run_ours(model, batches, eps, device, warm_start=True),
        "ours_indep": lambda: run_ours_indep(model, batches, eps, device),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    rows = {}
    for _ in range(args.repeat):
        for name, fn in runs.items():
            t, c = fn()
            times[name].append(t)
            rows[name] = (t, c)  # counts are identical across repeats (seeded)
    rows = {k: (sorted(times[k])[len(times[k]) // 2], c) for k, (_, c) in rows.items()}

    t_ta = rows["torchattacks"][0]
    result = {
        "benchmark": "attacks", "schema_version": 1,
        "library_version": robustbench_fundus.__version__, "torch": torch.__version__,
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})"
                                 if device.type == "cuda" else f" ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"),
        "amp": "bf16 autocast + channels_last (ours); fp32 (torchattacks)"
        if device.type == "cuda" else "fp32",
        "repeat": args.repeat, "model": args.model, "size": args.size, "n": args.n, "batch": args.batch,
        "train_steps": args.train_steps, "train_s": round(t_train, 2),
        "eps": eps, "eps_255": EPS_255, "steps": 10, "step_size": "2.5*eps/10",
        "methods": {},
    }
    for name, (t, c) in rows.items():
        result["methods"][name] = {
            "seconds": round(t, 3), "seconds_all": [round(v, 3) for v in times[name]],
            "speedup_vs_torchattacks": round(t_ta / t, 3),
            "n": c.n, "n_attacked": c.n_attacked, "n_success": c.n_success,
            "n_robust": c.n_robust, "success_rate": c.success_rate,
            "robust_accuracy": c.robust_accuracy, "forward_backward_sample_passes": c.work,
            "flags": c.flags(),
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))

    lines = ["# PGD-10 eps sweep: ours vs torchattacks.PGD per eps", "",
             f"device {result['device']}, model {args.model} at {args.size} px, n={args.n}, "
             f"batch {args.batch}, torch {torch.__version__}, {result['amp']}; clean accuracy "
             f"{rows['ours'][1].clean_accuracy:.3f} (n_attacked={rows['ours'][1].n_attacked}).", "",
             f"Median of {args.repeat} interleaved repeats.", "",
             "| method | seconds | speed-up vs torchattacks | f+b sample passes |",
             "|---|---|---|---|"]
    for name, m in result["methods"].items():
        lines.append(f"| {name} | {m['seconds']:.2f} | {m['speedup_vs_torchattacks']:.2f}x | "
                     f"{m['forward_backward_sample_passes']} |")
    lines += ["", "Success rate (broken among clean-correct) per eps (/255):", "",
              "| eps/255 | " + " | ".join(result["methods"]) + " |",
              "|---|" + "---|" * len(result["methods"])]
    for k, e in enumerate(EPS_255):
        lines.append(f"| {e:g} | " + " | ".join(
            f"{m['success_rate'][k]:.3f} ({m['n_success'][k]})"
            for m in result["methods"].values()) + " |")
    lines += ["", "Robust accuracy (correct after attack over all n) per eps (/255):", "",
              "| eps/255 | " + " | ".join(result["methods"]) + " |",
              "|---|" + "---|" * len(result["methods"])]
    for k, e in enumerate(EPS_255):
        lines.append(f"| {e:g} | " + " | ".join(
            f"{m['robust_accuracy'][k]:.3f}" for m in result["methods"].values()) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
