"""``rbf bench`` and ``rbf leaderboard``.

::

    rbf bench                                   # the bundled demo model on synthetic images,
                                                # then the store's leaderboard
    rbf bench --saliency 16                     # + integrated-gradients saliency scores
    rbf bench --model m.safetensors --data DIR --corruptions all --attack pgd \\
              --eps 0.5/255,1/255,2/255,2.5/255,4/255,8/255 --steps 10 --limit 200
    rbf bench --attack pgd_l2 --eps 0.5,1,2 --attack-opt step_ratio=2 --attack-opt loss=margin
    rbf bench --attack torchattacks:APGD --attack-opt n_restarts=2
    torchrun --nproc-per-node 2 -m robustbench_fundus bench --model m.safetensors --data DIR
    rbf leaderboard --format md                 # table + two PNG plots beside the store
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import RBFError


_SOURCE = {"model": "declared by the model", "default": "library default: the model declares "
           "none", "caller": "given by --preprocessing"}


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _err(msg: str) -> None:
    if _is_main():
        print(msg, file=sys.stderr, flush=True)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="benchmark a model: clean, corrupted and attacked (writes the store)",
        description="Benchmark a DR classifier on clean, corrupted (severities) and "
                    "attacked (eps sweep) images; results go to a resumable SQLite store.")
    p.add_argument("--model", default=None, help="checkpoint file, or demo (the default: the "
                   "bundled demo model)")
    p.add_argument("--arch", default=None, help="architecture, when the checkpoint does not say "
                   "(see `rbf list models`)")
    p.add_argument("--data", default=None, help="folder of labelled photographs, or "
                   "synthetic:N (default: synthetic images)")
    p.add_argument("--corruptions", default="all", help="all (the 4 fundus corruptions), "
                   "imagenet-c (the 19 others), none, or comma-separated names (mixable)")
    p.add_argument("--severities", default="1-4", help="e.g. 1-4 or 2,4 (default 1-4)")
    p.add_argument("--attack", default="pgd", metavar="NAME",
                   help="a registered attack (see `rbf list attacks`: pgd, pgd_l2, fgsm, "
                   "autoattack, plugins), torchattacks:<Class>, or none (default pgd)")
    p.add_argument("--attack-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the attack's config, e.g. steps=20, loss=margin, "
                   "version=plus (repeatable; `rbf list attacks --json` lists them)")
    p.add_argument("--eps", default=None,
                   help="comma-separated eps: L-inf 2/255-style or decimals in (0,1]; L2 the "
                   "norm, e.g. 0.5,1,2 (default: the attack's sweep; L-inf "
                   "0.5/255,1/255,2/255,2.5/255,4/255,8/255)")
    p.add_argument("--steps", type=int, default=None,
                   help="attack steps, for attacks that have steps (default: the attack's own, "
                   "10 for pgd)")
    p.add_argument("--head", default=None,
                   choices=["classification", "regression", "ordinal", "binary"],
                   help="how the model's output is read (default: what the checkpoint records, "
                   "else classification): 5 logits / 1 score / 4 cumulative logits / referable "
                   "DR from 1 or 2 logits")
    p.add_argument("--head-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a head option: thresholds=0.5,1.5,2.5,3.5 (regression), threshold=2 "
                   "(binary: the lowest referable grade)")
    p.add_argument("--preprocessing", default=None, choices=["graham", "none"],
                   help="override the preprocessing the model declares (default: the model's; "
                   "graham for a model that declares none)")
    p.add_argument("--limit", type=int, default=None, help="evaluate N images spread evenly "
                   "over the set (with synthetic data: N images)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--chunk-size", type=int, default=256, help="images per committed chunk "
                   "(the unit of resumption; default 256)")
    p.add_argument("--workers", type=int, default=0, help="data-loading worker processes")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if present)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--store", default=None, help="results store (default "
                   "rbf-results/results.sqlite under the current folder)")
    p.add_argument("--no-store", action="store_true", help="do not read or write a store")
    p.add_argument("--name", default=None, help="model name on the leaderboard (default: the "
                   "checkpoint's file name)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow checkpoints that need arbitrary unpickling (trusted files only)")
    p.add_argument("--saliency", type=int, default=0, metavar="N",
                   help="also score integrated-gradients saliency (lesion share, disc share, "
                   "deletion AUC) on N images spread evenly over the set (default 0: off)")
    p.add_argument("--saliency-steps", type=int, default=32, metavar="S",
                   help="integrated-gradients steps for --saliency (default 32)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_bench)

    q = subparsers.add_parser("leaderboard", help="leaderboard of a results store (md, csv, "
                              "json, html) with two PNG plots")
    q.add_argument("--store", default=None, help="results store (default "
                   "rbf-results/results.sqlite)")
    q.add_argument("--format", default="md", choices=["md", "csv", "json", "html"])
    q.add_argument("--out", default=None, help="write to FILE (plots beside it); default: print "
                   "(plots beside the store)")
    q.add_argument("--no-plots", action="store_true")
    q.set_defaults(func=cmd_leaderboard)


def _default_store() -> Path:
    from .store import DEFAULT_STORE
    return Path.cwd() / DEFAULT_STORE


def cmd_bench(args: argparse.Namespace) -> int:
    from ..attacks import parse_option_assignments
    from .evaluate import evaluate
    from .options import RunOptions

    from ..heads import parse_head_options
    # None: the bundled demo model
    model = Path(args.model) if args.model and args.model != "demo" else None
    attack_options = parse_option_assignments(args.attack_opt, what="--attack-opt")
    run = RunOptions(batch_size=args.batch_size, chunk_size=args.chunk_size,
                     num_workers=args.workers, progress=not args.no_progress and not args.json,
                     log=_err)
    store = None
    if not args.no_store:
        store = Path(args.store) if args.store else _default_store()
        _err(f"rbf bench: results store {store.resolve()}")
    report = evaluate(
        model, args.data, corruptions=args.corruptions, severities=args.severities,
        attack=args.attack, eps=args.eps, steps=args.steps, seed=args.seed, device=args.device,
        limit=args.limit, store=store, attack_options=attack_options,
        preprocessing=args.preprocessing, head=args.head,
        head_options=parse_head_options(args.head_opt), name=args.name, arch=args.arch,
        trust_checkpoint=args.trust_checkpoint, saliency=args.saliency,
        saliency_steps=args.saliency_steps, run=run)
    if not _is_main():
        return 0
    if args.json:
        print(report.to_json())
    else:
        print(f"model {report.model['name']} ({report.model['sha256'][:12]}), data "
              f"{report.dataset['name']}, seed {report.provenance['seed']}, device "
              f"{report.provenance['device']}")
        pre = report.provenance.get("preprocessing")
        if pre:
            size = pre.get("input_size")
            print(f"preprocessing {pre['enhancement']} ({_SOURCE.get(pre.get('source'), '')})"
                  + (f", model input {size[0]}x{size[1]}" if size else ""))
        print(report.summary_table())
        t = report.provenance["timings"]
        sal = f"; saliency {t['saliency_s']:.1f} s" if t.get("saliency_s") else ""
        print(f"time {t['total_s']:.1f} s ({report.provenance['conditions_computed']} conditions "
              f"computed, {report.provenance['conditions_from_store']} from the store{sal})")
        if store is not None:
            _print_leaderboard(store)
    return 0


def _print_leaderboard(store: Path) -> None:
    """The store's leaderboard (as ``rbf leaderboard --format md``), its plots beside the store,
    and where both are."""
    from .leaderboard import load_entries, render
    from .plots import write_plots

    entries = load_entries(str(store))
    plots = {}
    try:
        plots = write_plots(entries, store.parent, stem="leaderboard")
    except Exception as exc:  # a plot must not lose the results
        _err(f"rbf bench: plots not written ({type(exc).__name__}: {exc})")
    print()
    print(f"leaderboard of {store.resolve()} ({len(entries)} "
          f"entr{'y' if len(entries) == 1 else 'ies'}):")
    print()
    sys.stdout.write(render(entries, "md", plots=plots))
    print()
    print(f"store: {store.resolve()}")
    if plots:
        print("plots: " + ", ".join(str((store.parent / p).resolve()) for p in plots.values()))
    print(f"other formats: rbf leaderboard --store {store} --format md|csv|json|html")


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from .leaderboard import load_entries, render
    from .plots import write_plots

    store = Path(args.store) if args.store else _default_store()
    entries = load_entries(str(store))
    if not entries:
        raise RBFError(f"--store {store}: no results yet; run `rbf bench` first")
    plots = {}
    if not args.no_plots:
        out_dir = Path(args.out).parent if args.out else store.parent
        stem = Path(args.out).stem if args.out else "leaderboard"
        plots = write_plots(entries, out_dir, stem=stem)
    text = render(entries, args.format, plots=plots)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}" + (f" and {', '.join(plots.values())} beside it"
                                     if plots else ""), file=sys.stderr)
    else:
        sys.stdout.write(text)
        if plots:
            print(f"plots: {', '.join(str(store.parent / p) for p in plots.values())}",
                  file=sys.stderr)
    return 0
