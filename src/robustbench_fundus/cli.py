"""The ``rbf`` command line: a thin shell over the library.

Each stage of the flow owns its subcommands in ``<stage>/_cli.py`` with a ``register(subparsers)``
function that adds its parsers and sets ``func`` (a callable taking the parsed args and returning
an exit code). ``rbf list corruptions|attacks|models`` reads ``<stage>.describe()``.
User errors (:class:`~robustbench_fundus.errors.RBFError`) print one line and exit 2.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Sequence

from . import __version__
from .errors import RBFError

# Modules providing subcommands; a stage not built yet is skipped.
_SUBCOMMAND_MODULES = [
    "robustbench_fundus.data._cli",
    "robustbench_fundus.data._synth_cli",
    "robustbench_fundus.corruptions._cli",
    "robustbench_fundus.attacks._cli",
    "robustbench_fundus.models._cli",
    "robustbench_fundus.bench._cli",
    "robustbench_fundus.train._cli",
    "robustbench_fundus.interpret._cli",
]

_LIST_KINDS = {
    "corruptions": "robustbench_fundus.corruptions",
    "attacks": "robustbench_fundus.attacks",
    "models": "robustbench_fundus.models",
}


def _cmd_list(args: argparse.Namespace) -> int:
    mod = importlib.import_module(_LIST_KINDS[args.kind])
    rows = mod.describe(args.pattern or "*", full=bool(args.json))
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print(f"no {args.kind} match")
        return 0
    print(format_table(rows))
    return 0


#: Width of the terminal output the CLI writes (tables are fitted to it).
WIDTH = 100
_GAP = "  "


def format_table(rows: list[dict], width: int | None = WIDTH) -> str:
    """A plain fixed-width table of dict rows (keys of the first row are the columns), at most
    ``width`` characters a line: when the natural widths do not fit, the widest columns are
    narrowed (never below their header) and their cells shortened with ``...``."""
    cols = list(rows[0].keys())
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    if width is not None:
        # narrow the free-text description first, then the widest other column; the first
        # column (the name) is never cut
        floor = [len(c) if k else widths[0] for k, c in enumerate(cols)]
        desc = cols.index("description") if "description" in cols else None
        while sum(widths) + len(_GAP) * (len(cols) - 1) > width:
            if desc is not None and widths[desc] > max(floor[desc], 24):
                i = desc
            else:
                cand = [k for k in range(len(cols)) if widths[k] > floor[k]]
                if not cand:
                    break
                i = max(cand, key=lambda k: widths[k])
            widths[i] -= 1
        cells = [[_clip(v, w) for v, w in zip(row, widths)] for row in cells]
    lines = [_GAP.join(c.ljust(w) for c, w in zip(cols, widths)).rstrip(),
             _GAP.join("-" * w for w in widths)]
    lines += [_GAP.join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(0, width - 3)].rstrip() + "..."


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ",".join(_fmt(x) for x in v)
    if isinstance(v, dict):
        return ",".join(str(k) for k in v)
    return " ".join(str(v).split())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rbf",
        description="Robustness benchmark for diabetic-retinopathy fundus classifiers.")
    p.add_argument("--version", action="version", version=f"robustbench_fundus {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    lp = sub.add_parser("list", help="list registered corruptions, attacks or models")
    lp.add_argument("kind", choices=sorted(_LIST_KINDS))
    lp.add_argument("pattern", nargs="?", default=None, help="glob filter, e.g. '*blur*'")
    lp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lp.set_defaults(func=_cmd_list)
    for modname in _SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name and modname.startswith(exc.name):
                continue  # stage without subcommands
            raise
        mod.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except RBFError as exc:
        print(f"rbf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rbf: interrupted; results written so far are kept", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, as Unix tools do.
        import os
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
