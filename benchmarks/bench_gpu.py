"""The full benchmark on one GPU: how fast ``robustbench_fundus.evaluate`` runs, where its time
goes, and how close it comes to the model's own throughput.

What runs: ``efficientnet_b0`` (timm, in the library's wrapper; **random weights**, seeded) at
512 px on ``--n`` real fundus photographs (``../shared/data/fundus-real`` from the repo root,
``$RBF_REAL_DATA`` overrides; ``"synthetic:N"`` images when the folder is missing), the full
bench: clean + 4 fundus corruptions x 4 severities + PGD-10 over 6 eps, in two settings:

* ``fp32``: ``RunOptions(amp="off", channels_last=False)``, and the attack in float32 too
  (``attack_options={"amp": "off", "channels_last": False}``; the attack's own default, "auto",
  would run it under bf16 autocast and channels-last on CUDA);
* ``bf16cl``: ``RunOptions(amp="bf16", channels_last=True)``, the attack at its default
  ("auto": bf16 autocast and channels-last on CUDA, float32 on the CPU).

Beside each setting, the model's own measured throughput at the same input and batch size and
in the same precision / memory format: forward-only (no_grad) and forward + backward to the
input (as an attack step does), and an "ideal" time: the forward passes and the forward +
backward passes ``evaluate`` actually made (counted by a forward pre-hook on the model) at those
throughputs. Each setting gets a fresh crop cache (its photographs are decoded from JPEG) and a
small untimed warm-up ``evaluate`` first (CUDA context, cuDNN, lazy initialisation).

Random weights: the timing of the clean and corrupted passes does not depend on them, but the
attack's does (PGD stops each sample at its first break, and an untrained model breaks at tiny
eps), as do all the accuracies. The JSON gives the attack's upper bound too: every image
attacked for all 10 steps at all 6 eps. ``--checkpoint CKPT`` benchmarks a trained model
instead (its input size is its own), whose attack timing is representative.

    .venv/bin/python benchmarks/bench_gpu.py [--n 256] [--size 512] [--batch 64]
        [--settings fp32,bf16cl] [--device cuda] [--max-seconds 270] [--out-dir DIR]

Writes ``<out-dir>/gpu_<card>.json`` and ``gpu_<card>.md`` (card: the slugified
``torch.cuda.get_device_name()``, or ``cpu``) and prints the markdown. Runtime: under 5 minutes
on an H100-class card with the defaults (efficientnet_b0 at 512 px does thousands of forward
images/s in bf16 there; 256 images x (17 forward conditions + at most 60 attack forward +
backward passes) is well under a minute per setting, plus ~15 s of throughput measurement).
``--max-seconds`` (270) keeps it so: a setting is skipped, with the reason recorded, when the
time so far plus the previous setting's time would pass it. A CPU smoke test:

    .venv/bin/python benchmarks/bench_gpu.py --device cpu --n 8 --size 96 --arch tiny_cnn \
        --out-dir /tmp/gpu_smoke
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REAL = Path(os.environ.get("RBF_REAL_DATA", REPO.parent / "shared" / "data" / "fundus-real"))
EPS = [0.5 / 255, 1 / 255, 2 / 255, 2.5 / 255, 4 / 255, 8 / 255]
STEPS = 10
N_CORRUPTION_CONDITIONS = 16        # 4 corruptions x severities 1-4
SETTINGS = {
    "fp32": {"amp": "off", "channels_last": False,
             "attack_options": {"amp": "off", "channels_last": False}},
    "bf16cl": {"amp": "bf16", "channels_last": True, "attack_options": None},
}
WEIGHTS_NOTE = ("random weights (torch.manual_seed(0)): the clean and corrupted passes' timing "
                "does not depend on them; the attack's timing (samples stop at their first "
                "break) and every accuracy and success rate do")


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


def card_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _finite(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def build_model(arch: str, size: int, dev: torch.device, checkpoint: str | None = None):
    """A fresh model with the same random weights on every call, or ``checkpoint`` (a trained
    model: its attack timing is representative, see the module docstring)."""
    from robustbench_fundus.models import create_model, load_model
    if checkpoint:
        return load_model(checkpoint, device=dev).eval()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        m = create_model(arch, input_size=size)
    return m.to(dev).eval()


def resolve_data(spec: str, n: int) -> tuple[str, dict]:
    """(data for evaluate, description). spec: auto (the real folder, else synthetic),
    synthetic, or a folder."""
    if spec == "synthetic":
        return f"synthetic:{n}", {"kind": "synthetic", "source": f"synthetic:{n}",
                                  "note": "synthetic images (--data synthetic)"}
    folder = REAL if spec == "auto" else Path(spec)
    if (folder / "labels.csv").is_file() or (spec != "auto" and folder.is_dir()):
        return str(folder), {"kind": "folder", "source": str(folder),
                             "note": f"real photographs, {n} evenly spaced (limit={n})"}
    if spec != "auto":
        raise SystemExit(f"--data {spec}: no such folder")
    return f"synthetic:{n}", {"kind": "synthetic", "source": f"synthetic:{n}",
                              "note": f"{folder} not found: synthetic images instead"}


class PassCounter:
    """Counts the images through the model's forward: with an input that requires grad (an
    attack's forward + backward pass) and without (a forward-only pass)."""

    def __init__(self, model: torch.nn.Module):
        self.fwd = 0
        self.fwdbwd = 0
        self._h = model.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        x = args[0] if args else None
        if isinstance(x, torch.Tensor):
            if torch.is_grad_enabled() and x.requires_grad:
                self.fwdbwd += int(x.shape[0])
            else:
                self.fwd += int(x.shape[0])

    def remove(self) -> None:
        self._h.remove()


# ------------------------------------------------------------------------------------------------
# the model's own throughput
# ------------------------------------------------------------------------------------------------
def _timed_loop(step, dev: torch.device, target_s: float, warmup: int = 3) -> tuple[float, int]:
    """(seconds per call, calls timed) of ``step()``: ``warmup`` calls, a 2-call estimate, then
    enough calls for about ``target_s`` seconds."""
    for _ in range(warmup):
        step()
    sync(dev)
    t = time.perf_counter()
    for _ in range(2):
        step()
    sync(dev)
    per = max((time.perf_counter() - t) / 2, 1e-6)
    iters = max(3, min(10000, math.ceil(target_s / per)))
    t = time.perf_counter()
    for _ in range(iters):
        step()
    sync(dev)
    return (time.perf_counter() - t) / iters, iters


def model_throughput(model, dev: torch.device, size: int, batch: int, fwd_amp: bool,
                     fwd_cl: bool, bwd_amp: bool, bwd_cl: bool, target_s: float) -> dict:
    """Forward-only images/s (no_grad) and forward + backward-to-the-input images/s (the summed
    cross-entropy, as an attack step), each in its own precision / memory format."""
    g = torch.Generator(device="cpu").manual_seed(1)
    x0 = torch.rand(batch, 3, size, size, generator=g).to(dev)
    y = torch.randint(0, 5, (batch,), generator=g).to(dev)

    def prep(cl: bool) -> torch.Tensor:
        return x0.contiguous(memory_format=torch.channels_last) if cl else x0.contiguous()

    def ac(on: bool):
        return torch.autocast(dev.type, dtype=torch.bfloat16) if on else nullcontext()

    xf = prep(fwd_cl)
    model.to(memory_format=torch.channels_last if fwd_cl else torch.contiguous_format)

    def fwd():
        with torch.no_grad(), ac(fwd_amp):
            model(xf)

    per_f, it_f = _timed_loop(fwd, dev, target_s)
    xb = prep(bwd_cl)
    model.to(memory_format=torch.channels_last if bwd_cl else torch.contiguous_format)

    def fwdbwd():
        xa = xb.detach().requires_grad_(True)
        with torch.enable_grad():
            with ac(bwd_amp):
                out = model(xa)
            loss = F.cross_entropy(out.float()[:, :5], y, reduction="sum")
            torch.autograd.grad(loss, xa)

    per_b, it_b = _timed_loop(fwdbwd, dev, target_s)
    model.to(memory_format=torch.contiguous_format)
    return {"batch": batch, "input_size": size,
            "fwd_images_per_s": round(batch / per_f, 2), "fwd_iters": it_f,
            "fwd_precision": "bf16-autocast" if fwd_amp else "float32",
            "fwd_channels_last": fwd_cl,
            "fwdbwd_images_per_s": round(batch / per_b, 2), "fwdbwd_iters": it_b,
            "fwdbwd_precision": "bf16-autocast" if bwd_amp else "float32",
            "fwdbwd_channels_last": bwd_cl}


# ------------------------------------------------------------------------------------------------
# one setting
# ------------------------------------------------------------------------------------------------
def run_setting(name: str, args, dev: torch.device, data) -> dict:
    from robustbench_fundus import evaluate
    from robustbench_fundus.attacks.context import resolve_amp, resolve_channels_last
    from robustbench_fundus.bench import DataOptions, RunOptions

    cfg = SETTINGS[name]
    ropt = RunOptions(batch_size=args.batch, amp=cfg["amp"], channels_last=cfg["channels_last"])
    aopt = cfg["attack_options"]
    atk_amp = resolve_amp((aopt or {}).get("amp", "auto"), dev)
    atk_cl = resolve_channels_last((aopt or {}).get("channels_last", "auto"), dev)
    t_setting = time.perf_counter()

    model = build_model(args.arch, args.size, dev, args.checkpoint)
    t = time.perf_counter()
    batch = max(1, min(args.batch, args.n))     # the batch evaluate actually runs
    tput = model_throughput(model, dev, args.size, batch, cfg["amp"] == "bf16",
                            cfg["channels_last"], atk_amp, atk_cl, args.tput_seconds)
    tput_s = time.perf_counter() - t

    common = {"seed": 0, "device": dev, "store": None, "run": ropt, "attack_options": aopt}
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rbf_gpu_warm_") as cache:   # untimed warm-up
        evaluate(model, data, corruptions="all", severities="1", attack="pgd", eps=[1 / 255],
                 steps=1, limit=min(8, args.n),
                 data_options=DataOptions(size=args.size, cache_dir=cache), **common)
    sync(dev)
    warmup_s = time.perf_counter() - t

    counter = PassCounter(model)
    try:
        with tempfile.TemporaryDirectory(prefix="rbf_gpu_cache_") as cache:
            t = time.perf_counter()
            rep = evaluate(model, data, corruptions="all", severities="1-4", attack="pgd",
                           eps=EPS, steps=STEPS, limit=args.n,
                           data_options=DataOptions(size=args.size, cache_dir=cache), **common)
            sync(dev)
            wall = time.perf_counter() - t
    finally:
        counter.remove()

    tim = rep.provenance["timings"]
    n = rep.clean.n if rep.clean is not None else args.n
    fwd_ips, bwd_ips = tput["fwd_images_per_s"], tput["fwdbwd_images_per_s"]
    ideal_counted = counter.fwd / fwd_ips + counter.fwdbwd / bwd_ips
    n_fwd_nominal = n * (1 + N_CORRUPTION_CONDITIONS)
    n_bwd_bound = n * len(EPS) * STEPS
    attacks = [{"eps": a.eps, "eps_255": a.eps_255, "success_rate": _finite(a.success_rate),
                "robust_accuracy": _finite(a.robust_accuracy), "n_attacked": a.n_attacked,
                "n_broken": a.n_broken, "seconds": round(a.seconds, 4)} for a in rep.attacks]
    cors = [c.accuracy for c in rep.corruptions if c.accuracy is not None]
    return {
        "setting": name,
        "run_options": {"batch_size": ropt.batch_size, "amp": ropt.amp,
                        "channels_last": ropt.channels_last},
        "precision": rep.provenance.get("precision"),
        "attack_options": aopt,
        "attack_precision": {"amp_bf16": atk_amp, "channels_last": atk_cl},
        "n": n,
        "seconds": round(wall, 3),
        "images_per_s": round(n / wall, 3),
        "total_s": tim["total_s"],
        "pipeline_efficiency": tim["pipeline_efficiency"],
        "stages_s": tim["stages_s"],
        "shares": tim["shares"],
        "stages_sum_s": round(sum(tim["stages_s"].values()), 4),
        "images_evaluated": tim.get("images_evaluated"),
        "model_throughput": tput,
        "passes": {"fwd_images_counted": counter.fwd, "fwdbwd_images_counted": counter.fwdbwd,
                   "fwd_images_nominal": n_fwd_nominal,
                   "fwdbwd_images_upper_bound": n_bwd_bound,
                   "note": ("counted: images through the model's forward during the timed "
                            "evaluate (pre-hook), with grad (attack steps) and without (clean, "
                            "corrupted, attack checks and final steps); nominal: n x (1 + 16); "
                            f"upper bound: n x {len(EPS)} eps x {STEPS} steps")},
        "ideal_s": round(ideal_counted, 3),
        "ideal_s_upper_bound": round(n_fwd_nominal / fwd_ips + n_bwd_bound / bwd_ips, 3),
        "ideal_note": ("ideal_s: counted forward passes / fwd img/s + counted forward+backward "
                       "passes / fwd+bwd img/s; ideal_s_upper_bound: n x 17 / fwd img/s + "
                       "n x 60 / fwd+bwd img/s (every image attacked for every step)"),
        "clean_accuracy": _finite(rep.clean.accuracy) if rep.clean is not None else None,
        "mean_corrupted_accuracy": round(sum(cors) / len(cors), 4) if cors else None,
        "attacks": attacks,
        "flags": [f.code for f in rep.flags],
        "throughput_s": round(tput_s, 3),
        "warmup_s": round(warmup_s, 3),
        "setting_s": round(time.perf_counter() - t_setting, 3),
    }


# ------------------------------------------------------------------------------------------------
# output
# ------------------------------------------------------------------------------------------------
def markdown(res: dict) -> str:
    m, d = res["model"], res["data"]
    md = [f"# GPU benchmark: {res['card']}", ""]
    add = md.append
    add(f"- model: {m['arch']} at {m['input_size']} px, {m['weights']}")
    add(f"- data: {d['source']} ({d['note']}); n = {res['n']}, working size {res['size']} px, "
        f"batch {res['batch']}")
    add("- conditions: clean + 4 corruptions x 4 severities + PGD-10 x 6 eps "
        "(0.5, 1, 2, 2.5, 4, 8 /255)")
    add(f"- torch {res['torch_version']}, robustbench_fundus {res['library_version']}, "
        f"device {res['device']} ({res['card']}), {res['date_utc']}")
    add("")
    for name, s in res["settings"].items():
        t, ap, ro = s["model_throughput"], s["attack_precision"], s["run_options"]
        add(f"## {name}: amp={ro['amp']}, channels_last={ro['channels_last']}; attack "
            f"{'bf16' if ap['amp_bf16'] else 'fp32'}"
            f"{', channels-last' if ap['channels_last'] else ''}")
        add("")
        rows = [("seconds", f"{s['seconds']:.2f}"),
                ("images/s", f"{s['images_per_s']:.2f}"),
                ("pipeline efficiency (model fwd + attack / total)",
                 f"{s['pipeline_efficiency']:.2f}"),
                (f"model fwd img/s ({t['fwd_precision']})", f"{t['fwd_images_per_s']:.1f}"),
                (f"model fwd+bwd img/s ({t['fwdbwd_precision']})",
                 f"{t['fwdbwd_images_per_s']:.1f}"),
                ("ideal s (counted passes at those rates)", f"{s['ideal_s']:.2f}"),
                ("ideal s, upper bound (n x 17 fwd + n x 60 fwd+bwd)",
                 f"{s['ideal_s_upper_bound']:.2f}")]
        rows += [(f"share: {k}", f"{v:.1%}") for k, v in s["shares"].items()]
        md += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
        p, acc = s["passes"], s["clean_accuracy"]
        sr = ", ".join("-" if a["success_rate"] is None else f"{a['success_rate']:.2f}"
                       for a in s["attacks"])
        add("")
        add(f"Passes counted: {p['fwd_images_counted']} forward, "
            f"{p['fwdbwd_images_counted']} forward+backward images (upper bound "
            f"{p['fwdbwd_images_upper_bound']}). Clean accuracy "
            f"{'-' if acc is None else f'{acc:.3f}'}; PGD success per eps: {sr} "
            "(random weights).")
        add("")
    for name, why in res["skipped"].items():
        md += [f"## {name}: skipped", "", why, ""]
    return "\n".join(md).rstrip() + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=256, help="images (evenly spaced over the set)")
    p.add_argument("--size", type=int, default=512, help="working and model input size")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--arch", default="efficientnet_b0")
    p.add_argument("--checkpoint", default=None, help="a trained checkpoint instead of --arch's "
                   "random weights (e.g. one of docs/run_study_real.sh with PRESET=gpu)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--settings", default="fp32,bf16cl", help="comma-separated: fp32, bf16cl")
    p.add_argument("--data", default="auto",
                   help="auto (the real photographs, else synthetic), synthetic, or a folder")
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    p.add_argument("--max-seconds", type=float, default=270.0,
                   help="skip a setting when the time so far plus the last setting's would "
                        "pass this")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's own; 1 for a smoke test on a busy "
                        "machine)")
    p.add_argument("--tput-seconds", type=float, default=3.0,
                   help="seconds of each model throughput measurement")
    a = p.parse_args(argv)
    a.settings = [s.strip() for s in a.settings.split(",") if s.strip()]
    bad = [s for s in a.settings if s not in SETTINGS]
    if bad or not a.settings:
        p.error(f"--settings: unknown {bad}; give some of {', '.join(SETTINGS)}")
    return a


def run(argv: list[str] | None = None) -> dict:
    """Run the benchmark; write the JSON and markdown; return the results."""
    import robustbench_fundus
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    dev = torch.device(args.device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    data, data_info = resolve_data(args.data, args.n)
    weights = WEIGHTS_NOTE
    if args.checkpoint:   # its architecture and input size are its own
        m = build_model(args.arch, args.size, torch.device("cpu"), args.checkpoint)
        args.arch = getattr(m, "arch", None) or type(m).__name__
        args.size = int(max(m.input_size))
        weights = f"trained checkpoint {Path(args.checkpoint).name}"
        del m
    card = card_name(dev)
    res = {
        "benchmark": "bench_gpu",
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch_version": torch.__version__,
        "library_version": robustbench_fundus.__version__,
        "python_version": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "device": str(dev), "card": card,
        "cuda": ({"version": torch.version.cuda,
                  "cudnn_benchmark": torch.backends.cudnn.benchmark,
                  "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                  "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}
                 if dev.type == "cuda" else None),
        "model": {"arch": args.arch, "input_size": args.size, "weights": weights},
        "data": data_info, "n": args.n, "size": args.size, "batch": args.batch,
        "conditions": {"clean": 1, "corruptions": "all (4) x severities 1-4",
                       "attack": f"pgd linf, {STEPS} steps",
                       "eps": EPS, "eps_255": [round(e * 255, 2) for e in EPS]},
        "max_seconds": args.max_seconds,
        "settings": {}, "skipped": {},
    }
    last = 0.0
    for name in args.settings:
        spent = time.perf_counter() - t0
        if res["settings"] and spent + last > args.max_seconds:
            res["skipped"][name] = (f"{spent:.0f} s spent and the last setting took {last:.0f} s: "
                                    f"running {name} would pass --max-seconds "
                                    f"{args.max_seconds:g}")
            continue
        t = time.perf_counter()
        res["settings"][name] = run_setting(name, args, dev, data)
        last = time.perf_counter() - t
        print(f"bench_gpu: {name} done in {last:.1f} s", file=sys.stderr)
    res["elapsed_s"] = round(time.perf_counter() - t0, 3)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"gpu_{slug(card) if dev.type == 'cuda' else 'cpu'}"
    md = markdown(res)
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / f"{stem}.md").write_text(md)
    res["paths"] = [str(out / f"{stem}.json"), str(out / f"{stem}.md")]
    print(md)
    return res


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
