"""``rbf data PATH``: inspect a data set (layout, counts, unreadable files, the split)."""
from __future__ import annotations

import argparse
import json

from ..errors import DataError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "data", help="inspect a data set: layout, per-grade counts, unreadable files, split",
        description="Detect the layout of a fundus data-set folder (Kaggle EyePACS, APTOS 2019, "
                    "CSV manifest path,label[,subject], grade folders 0/-4/, fundus-real), decode "
                    "every image to find unreadable ones, and report the stratified, "
                    "subject-grouped train/validation split.")
    p.add_argument("path", help="data-set folder (or a CSV manifest)")
    p.add_argument("--labels", metavar="FILE", default=None,
                   help="labels CSV to use instead of detecting one (path,label[,subject], "
                        "image,level[,subject] or id_code,diagnosis)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--strict", action="store_true",
                   help="fail on the first missing or unreadable image instead of skipping it")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument("--val-fraction", type=float, default=0.3,
                   help="validation fraction of the split (default 0.3)")
    p.add_argument("--workers", type=int, default=None, help="decoding threads")
    p.set_defaults(func=run)


def summarize(path, labels=None, strict=False, seed=0, val_fraction=0.3, workers=None,
              progress=None) -> dict:
    from .layouts import read_records
    from .split import split_records, subject_overlap

    rs = read_records(path, labels=labels, strict=strict, verify=True, workers=workers,
                      progress=progress)
    train, val = split_records(rs.records, val_fraction=val_fraction, seed=seed)
    subjects = {r.group for r in rs.records}
    return {
        "layout": rs.layout,
        "root": str(rs.root),
        "labels_file": str(rs.labels_file) if rs.labels_file else None,
        "n": len(rs.records),
        "per_grade": {str(g): c for g, c in rs.per_grade().items()},
        "n_subjects": len(subjects),
        "subjects_named": any(r.subject for r in rs.records),
        "unreadable": [{"path": p, "reason": why} for p, why in rs.unreadable],
        "split": {"seed": seed, "val_fraction": val_fraction, "train": len(train),
                  "val": len(val), "subject_overlap": subject_overlap(train, val),
                  "train_per_grade": _counts(train), "val_per_grade": _counts(val)},
    }


def _printable(text: object) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _counts(records) -> dict:
    out = {str(g): 0 for g in range(5)}
    for r in records:
        out[str(r.label)] += 1
    return out


def run(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        raise DataError(f"--workers {args.workers}: must be at least 1")
    s = summarize(args.path, labels=args.labels, strict=args.strict, seed=args.seed,
                  val_fraction=args.val_fraction, workers=args.workers)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    sp = s["split"]
    n = s["n"]
    lines = [f"layout      {s['layout']}" + (f"  (labels: {s['labels_file']})" if s["labels_file"] else ""),
             f"images      {n} readable, {len(s['unreadable'])} skipped",
             "per grade   " + "  ".join(f"{g}: {c}" for g, c in s["per_grade"].items()),
             f"subjects    {s['n_subjects']}" + ("" if s["subjects_named"] else
                                                  " (no subjects named: each image its own group)"),
             f"split       train {sp['train']} / val {sp['val']} "
             f"({sp['val'] / max(n, 1):.1%} val, seed {sp['seed']}), "
             f"subject overlap {sp['subject_overlap']}"]
    for u in s["unreadable"][:20]:  # one line each, whatever the file names hold
        lines.append(f"skipped     {_printable(u['path'])}: {_printable(u['reason'])}")
    if len(s["unreadable"]) > 20:
        lines.append(f"skipped     ... and {len(s['unreadable']) - 20} more (see --json)")
    print("\n".join(lines))
    return 0
