"""The ``rbf`` command line: a thin shell over the library.

Each stage of the flow owns its subcommands in ``<stage>/_cli.py`` with a ``register(subparsers)``
function that adds its parsers and sets ``func`` (a callable taking the parsed args and returning
an exit code). ``rbf list corruptions|attacks|models`` reads ``<stage>.describe()``, with an
``available`` column (False: the entry needs an optional package that is not installed).
User errors (:class:`~robustbench_fundus.errors.RBFError`) print one line and exit 2; so does an
operating-system error (a read-only folder, a full disk) with the file it concerns.

Start-up stays light: the ``_cli.py`` modules are loaded from their files without running their
stage package's ``__init__`` (which imports torch), so ``rbf --help`` and argument errors need
neither torch nor timm, captum or matplotlib; a command imports what it needs when it runs.

Warnings of third-party packages (torch, torchvision, PIL, scikit-learn, timm, captum,
matplotlib, NumPy, ...) do not reach the terminal during a command: they go to the
``robustbench_fundus.warnings`` logger (a library user who configures logging sees them there).
``python -W ...`` or ``PYTHONWARNINGS`` leaves Python's own warning display in charge.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
import warnings
from types import ModuleType
from typing import Sequence

from . import __version__
from .errors import RBFError

log = logging.getLogger("robustbench_fundus")
warnings_log = logging.getLogger("robustbench_fundus.warnings")

#: Top-level packages whose warnings the CLI routes to :data:`warnings_log`.
THIRD_PARTY_WARNINGS = ("torch", "torchvision", "PIL", "sklearn", "scipy", "timm", "captum",
                        "matplotlib", "numpy", "safetensors", "torchattacks", "pyautoattack",
                        "autoattack", "imagecorruptions", "skimage", "numba", "cv2", "tqdm")

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


def _with_availability(mod: ModuleType, rows: list[dict], every_row: bool = True
                       ) -> tuple[list[dict], list[str]]:
    """``rows`` with an ``available`` column (after ``family``/``norm``): False when the entry
    needs an optional package that is not installed; and the install hints of those.
    ``every_row=False`` (``--json``): the key is added only to the rows of entries that need an
    optional package (and kept where ``describe()`` gives it)."""
    from .registry import requirement

    reg = getattr(mod, "REGISTRY", None)
    hints: dict[str, list[str]] = {}
    out = []
    for row in rows:
        name = str(row.get("name", ""))
        ok = bool(row.get("available", True))
        req = None
        if reg is not None and name in reg:
            req = requirement(reg.entry(name).obj)
        if req is not None and not req.available():
            ok = False
            hints.setdefault(req.install, []).append(name)
        if "available" in row:
            new = dict(row)
            new["available"] = ok
        elif not every_row and req is None:
            new = row
        else:
            new = {}
            for k, v in row.items():
                new[k] = v
                if k in ("severities", "norm", "family"):
                    new.setdefault("available", ok)
            new.setdefault("available", ok)
        out.append(new)
    notes = [f"not installed: {_name_span(names)}: {install}" for install, names in hints.items()]
    return out, notes


def _name_span(names: list[str]) -> str:
    if len(names) <= 2:
        return ", ".join(names)
    prefix = os.path.commonprefix(names)
    return f"{prefix}* ({len(names)})" if prefix else f"{names[0]} and {len(names) - 1} more"


def _cmd_list(args: argparse.Namespace) -> int:
    mod = importlib.import_module(_LIST_KINDS[args.kind])
    rows = mod.describe(args.pattern or "*", full=bool(args.json))
    rows, notes = _with_availability(mod, rows, every_row=not args.json)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print(f"no {args.kind} match")
        return 0
    print(format_table(rows))
    for note in notes:
        print(note)
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
        mod = _load_cli_module(modname)
        if mod is not None:
            mod.register(sub)
    return p


# -- light start-up ------------------------------------------------------------------------------
class _AttachChildren(importlib.machinery.SourceFileLoader):
    """The loader of a stage package whose ``_cli`` module was loaded before the package: after
    the package's ``__init__`` runs, the module is set as its attribute, as a normal import
    would have done."""

    def exec_module(self, module: ModuleType) -> None:
        super().exec_module(module)
        prefix = self.name + "."
        for full, child in list(sys.modules.items()):
            if full.startswith(prefix) and "." not in full[len(prefix):] \
                    and getattr(child, "_rbf_early_cli", False):
                setattr(module, full[len(prefix):], child)


class _StagePackageFinder:
    """A meta-path finder for the stage packages whose ``_cli`` modules were loaded early: it
    gives them the :class:`_AttachChildren` loader (and nothing else changes)."""

    def __init__(self) -> None:
        self.packages: set[str] = set()

    def find_spec(self, name, path=None, target=None):
        if name not in self.packages:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec
        return importlib.util.spec_from_file_location(
            name, spec.origin, loader=_AttachChildren(name, spec.origin),
            submodule_search_locations=spec.submodule_search_locations)


_FINDER = _StagePackageFinder()


def _load_cli_module(modname: str) -> ModuleType | None:
    """Import a stage's ``_cli`` module without running its package's ``__init__`` (the
    packages import torch; the parsers need nothing of it). None: the stage has no CLI."""
    if modname in sys.modules:
        return sys.modules[modname]
    parent = modname.rpartition(".")[0]
    spec = None
    if parent not in sys.modules:
        pspec = importlib.util.find_spec(parent)
        if pspec is not None and isinstance(pspec.loader, importlib.machinery.SourceFileLoader) \
                and pspec.submodule_search_locations:
            spec = importlib.machinery.PathFinder.find_spec(
                modname, list(pspec.submodule_search_locations))
            if spec is None:
                return None  # a stage without subcommands
    if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
        try:  # the package is imported already, or not a plain source tree: the normal way
            return importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name and modname.startswith(exc.name):
                return None  # stage without subcommands
            raise
    mod = importlib.util.module_from_spec(spec)
    mod._rbf_early_cli = True  # type: ignore[attr-defined]
    sys.modules[modname] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(modname, None)
        raise
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    _FINDER.packages.add(parent)
    return mod


# -- warnings ------------------------------------------------------------------------------------
def _third_party(category: type, filename: str) -> bool:
    top = (getattr(category, "__module__", "") or "").split(".")[0]
    if top in THIRD_PARTY_WARNINGS:
        return True
    parts = os.path.normpath(str(filename or "")).split(os.sep)
    for i in range(len(parts) - 2, -1, -1):  # the package right after site-packages
        if parts[i] in ("site-packages", "dist-packages"):
            return parts[i + 1] in THIRD_PARTY_WARNINGS
    return any(p in THIRD_PARTY_WARNINGS for p in parts[-6:-1])


def _route_warnings() -> None:
    """Inside a ``warnings.catch_warnings()`` block: third-party warnings go to the
    ``robustbench_fundus.warnings`` logger, which stays silent unless logging is configured."""
    shown = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if _third_party(category, filename):
            warnings_log.warning("%s: %s (%s:%s)", category.__name__, message, filename, lineno)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
    if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
        log.addHandler(logging.NullHandler())  # no "last resort" printing to stderr


def _os_error(exc: OSError) -> str:
    import errno

    what = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    where = f"{exc.filename}: " if exc.filename is not None else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        todo = "free some space and rerun"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        todo = "pass a path you can write (or read)"
    else:
        todo = "check the path"
    return f"{where}{what}; {todo} (results written before are kept)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    with warnings.catch_warnings():
        if not sys.warnoptions:
            _route_warnings()
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
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 141
        except OSError as exc:  # the environment, not a bug: a read-only folder, a full disk
            print(f"rbf: error: {_os_error(exc)}", file=sys.stderr)
            return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
