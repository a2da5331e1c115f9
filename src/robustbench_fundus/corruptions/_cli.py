"""`rbf corrupt`: a severity grid of one photograph, or corrupted copies of images/folders."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import RBFError
from ..logs import add_log_options


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "corrupt", help="severity grid of a photograph, or corrupted copies of images/folders",
        description=(
            "Without --name/--severity: write a grid (one row per fundus corruption, columns "
            "severity 0-4) of IMAGE to --out. With --name NAME|all and --severity S: write "
            "corrupted copies of PATH (an image, or a data folder whose layout and labels file "
            "are kept) to --out, at the input's size (or cropped to --size). Severity 0 writes "
            "the clean image the corrupted ones are compared with."))
    p.add_argument("path", metavar="PATH", help="an image file, or a folder of images")
    p.add_argument("--out", required=True, help="output PNG (grid), image file or folder")
    p.add_argument("--name", help="corruption name (see `rbf list corruptions`), a glob, or "
                   "'all' for the four fundus corruptions")
    p.add_argument("--severity", type=int, help="severity level (0 = clean copy)")
    p.add_argument("--preprocessed", action="store_true",
                   help="grid only: show the images after Graham preprocessing")
    p.add_argument("--size", type=int, default=None,
                   help="crop around the disc and resize to SIZE x SIZE first (grid default 256; "
                        "copies default: the input's own size)")
    p.add_argument("--seed", type=int, default=0, help="seed of the nuisance draws (default 0)")
    add_log_options(p)
    p.set_defaults(func=_cmd_corrupt)


def _resolve_names(name: str) -> list[str]:
    from . import FUNDUS_CORRUPTIONS, REGISTRY

    if name == "all":
        return list(FUNDUS_CORRUPTIONS)
    if any(ch in name for ch in "*?["):
        names = REGISTRY.names(name)
        if not names:
            raise RBFError(f"--name {name!r} matches no corruption; see `rbf list corruptions`")
        return names
    REGISTRY.entry(name)  # raises with close matches
    return [name]


def _cmd_corrupt(args: argparse.Namespace) -> int:
    from ..logs import command_logging, stderr_to_log
    with command_logging("corrupt", args.quiet, args.log, options=args) as log:
        with stderr_to_log(log):   # the copier's progress and skipped files, as log records
            return _corrupt(args)


def _corrupt(args: argparse.Namespace) -> int:
    from ..data.io import load_image
    from . import FUNDUS_CORRUPTIONS
    from .grid import corrupt_files, save_grid, severity_grid

    if args.size is not None and args.size < 32:
        raise RBFError(f"--size {args.size}: use at least 32 pixels")
    if args.name is None and args.severity is None:
        src = Path(args.path)
        if not src.is_file():
            raise RBFError(f"{src}: the grid needs one image file (give --name and --severity "
                           f"to corrupt a folder)")
        grid = severity_grid(load_image(src), FUNDUS_CORRUPTIONS, size=args.size or 256,
                             preprocessed=args.preprocessed, seed=args.seed)
        title = f"{src.name}" + (" (after Graham preprocessing)" if args.preprocessed else "")
        out = save_grid(grid, args.out, list(FUNDUS_CORRUPTIONS),
                        [f"severity {s}" for s in range(5)], title=title)
        print(f"wrote {out}")
        return 0
    if args.severity is None:
        raise RBFError("--severity is required with --name (0 writes the clean image)")
    if args.preprocessed:
        raise RBFError("--preprocessed applies to the grid only; corrupted copies are raw photos "
                       "(preprocessing happens when a model reads them)")
    names = _resolve_names(args.name or "all")
    n, skipped = corrupt_files(args.path, args.out, names, args.severity, size=args.size,
                               seed=args.seed, progress=not args.quiet)
    print(f"wrote {n} image(s) to {args.out}" + (f"; skipped {len(skipped)} unreadable" if skipped else ""))
    return 1 if skipped else 0
