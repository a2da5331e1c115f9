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
    rbf leaderboard                             # compact table (100 columns), plots beside
    rbf leaderboard --format html --out lb.html # the self-contained report
    rbf leaderboard --format md|csv|json        # every column; --format latex for a paper
    rbf bench --quiet --log run.log             # only warnings on stderr, everything in run.log
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ..errors import RBFError
from ..logs import add_log_options

log = logging.getLogger("robustbench_fundus.bench")


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0




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
    p.add_argument("--size", type=int, default=None, help="working size in px (default: the "
                   "model's input size, else 224)")
    p.add_argument("--split", default="all", choices=["all", "train", "val"],
                   help="a folder's side of rbf train's subject-grouped split (default all); "
                        "val: the photographs a model trained on the folder never saw")
    p.add_argument("--val-fraction", type=float, default=0.3,
                   help="--split: rbf train's --val-fraction (0.3)")
    p.add_argument("--split-seed", type=int, default=0, help="--split: rbf train's --seed (0)")
    p.add_argument("--cache-dir", default=None, help="working-crop cache (default "
                   "$RBF_CACHE_DIR or ~/.cache/robustbench_fundus)")
    p.add_argument("--limit", type=int, default=None, help="evaluate N images spread evenly "
                   "over the set (with synthetic data: N images)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--chunk-size", type=int, default=256, help="images per committed chunk "
                   "(the unit of resumption; default 256)")
    p.add_argument("--workers", type=int, default=0, help="data-loading worker processes")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if present)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast for the clean and "
                   "corrupted forwards (GPU speed; attacks confirm every break in float32)")
    p.add_argument("--channels-last", action="store_true",
                   help="model and inputs in channels-last memory format (GPU speed)")
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
    p.add_argument("--referable-threshold", type=int, default=2, metavar="G",
                   help="lowest grade that is referable DR (default 2: more than mild)")
    p.add_argument("--referral-flip", action="store_true",
                   help="also run the attack aimed at the referral decision: referable eyes "
                   "pushed to not referred, and the reverse, with flip rates per eps")
    p.add_argument("--screening-line", default=None, metavar="SENS,SPEC",
                   help="screening line of the card and the screening_line_crossed flag "
                   "(default 0.85,0.825)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    add_log_options(p)
    p.set_defaults(func=cmd_bench)

    q = subparsers.add_parser("leaderboard", help="leaderboard of a results store: a compact "
                              "table, or md, csv, json, latex, a self-contained html report")
    q.add_argument("--store", default=None, help="results store (default "
                   "rbf-results/results.sqlite)")
    q.add_argument("--format", default="text",
                   choices=["text", "md", "csv", "json", "html", "latex"],
                   help="text (default: the headline columns, one table per comparable group, "
                   "100 columns wide), md/csv/json (every column), html (one self-contained "
                   "page: sortable tables, plots, a section per model), latex (booktabs)")
    q.add_argument("--columns", default="headline", choices=["headline", "all"],
                   help="text and latex: the headline columns (default) or all (text: the "
                   "full markdown table)")
    q.add_argument("--out", default=None, help="write to FILE (plots beside it); default: print "
                   "(plots beside the store)")
    q.add_argument("--no-plots", action="store_true", help="do not write the PNG plots")
    q.set_defaults(func=cmd_leaderboard)


def _default_store() -> Path:
    from .store import DEFAULT_STORE
    return Path.cwd() / DEFAULT_STORE


def cmd_bench(args: argparse.Namespace) -> int:
    from ..logs import command_logging
    with command_logging("bench", args.quiet, args.log, terminal=_is_main(), options=args):
        return _bench(args)


def _bench(args: argparse.Namespace) -> int:
    from ..attacks import parse_option_assignments
    from .evaluate import evaluate
    from .options import DataOptions, RunOptions

    from ..heads import parse_head_options
    # None: the bundled demo model
    model = Path(args.model) if args.model and args.model != "demo" else None
    attack_options = parse_option_assignments(args.attack_opt, what="--attack-opt")
    run = RunOptions(batch_size=args.batch_size, chunk_size=args.chunk_size,
                     num_workers=args.workers,
                     # --quiet: no bar, but the progress lines still go to a --log file
                     progress=not (args.no_progress or args.json
                                   or (args.quiet and not args.log)),
                     log=log.info, amp="bf16" if args.amp else "off",
                     channels_last=args.channels_last)
    store = None
    if not args.no_store:
        store = Path(args.store) if args.store else _default_store()
        from .terminal import wrap
        for line in wrap(f"rbf bench: results store {_shown(store)}"):
            log.info(line)
    report = evaluate(
        model, args.data, corruptions=args.corruptions, severities=args.severities,
        attack=args.attack, eps=args.eps, steps=args.steps, seed=args.seed, device=args.device,
        limit=args.limit, store=store, attack_options=attack_options,
        preprocessing=args.preprocessing, head=args.head,
        head_options=parse_head_options(args.head_opt), name=args.name, arch=args.arch,
        trust_checkpoint=args.trust_checkpoint, saliency=args.saliency,
        referable_threshold=args.referable_threshold, referral_flip=args.referral_flip,
        screening_line=_screening_line(args.screening_line),
        saliency_steps=args.saliency_steps, run=run,
        data_options=DataOptions(size=args.size, cache_dir=args.cache_dir, split=args.split,
                                 val_fraction=args.val_fraction, split_seed=args.split_seed))
    if not _is_main():
        return 0
    if args.json:
        print(report.to_json())
        return 0
    from .leaderboard import load_entries
    from .terminal import bench_summary
    entries, plots = [], {}
    if store is not None:
        entries = load_entries(str(store))
        try:
            plots = _write_plots(entries, store.parent, "leaderboard")
        except Exception as exc:  # a plot must not lose the results
            log.warning(f"rbf bench: plots not written ({type(exc).__name__}: {exc})")
    sys.stdout.write(bench_summary(report, store, entries, plots))
    return 0


def _screening_line(text: str | None) -> dict | None:
    """``--screening-line 0.85,0.825`` -> {"sensitivity": 0.85, "specificity": 0.825}."""
    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",")]
    try:
        sens, spec = (float(p) for p in parts)
    except ValueError:
        raise RBFError(f"--screening-line {text}: give sensitivity,specificity, two numbers "
                       "in [0,1], e.g. 0.85,0.825") from None
    if not (0.0 <= sens <= 1.0 and 0.0 <= spec <= 1.0):
        raise RBFError(f"--screening-line {text}: both numbers must lie in [0,1]")
    return {"sensitivity": sens, "specificity": spec}


def _shown(path: Path) -> str:
    """``path`` as the terminal shows it: relative to the working directory when inside it."""
    p = path.resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _write_plots(entries, out_dir: Path, stem: str) -> dict[str, str]:
    from .plots import write_plots
    return write_plots(entries, out_dir, stem=stem)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from .leaderboard import load_entries, render

    store = Path(args.store) if args.store else _default_store()
    entries = load_entries(str(store))
    if not entries:
        raise RBFError(f"--store {store}: no results yet; run `rbf bench` first")
    plots = {}
    if not args.no_plots:
        out_dir = Path(args.out).parent if args.out else store.parent
        stem = Path(args.out).stem if args.out else "leaderboard"
        plots = _write_plots(entries, out_dir, stem)
    text = render(entries, args.format, plots=plots, columns=args.columns)
    from .terminal import wrap
    if args.out:
        from ..files import write_atomic
        write_atomic(args.out, text, what="--out")
        msg = f"wrote {args.out}" + (f" and {', '.join(plots.values())} beside it"
                                     if plots else "")
    else:
        sys.stdout.write(text)
        msg = (f"plots beside the store {store}: {', '.join(plots.values())}"
               if plots else "")
    if msg:
        print("\n".join(wrap(msg)), file=sys.stderr)
    return 0
