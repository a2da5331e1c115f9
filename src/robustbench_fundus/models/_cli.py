"""``rbf inspect CKPT [--arch A] [--json] [--trust-checkpoint]``."""
from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect", help="describe a model checkpoint (format, architecture, classes, sha256, safety)",
        description="Describe a checkpoint: format, architecture (given, from the file, or "
                    "guessed from its weights), classes, parameter count, input size, sha256, "
                    "whether it loads safely. Exit status 0 if it loads, 1 if not.")
    p.add_argument("checkpoint", help="checkpoint file (.safetensors, .pt/.pth, TorchScript)")
    p.add_argument("--arch", default=None, help="architecture name when the file does not say")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow arbitrary unpickling (runs code from the file; trusted files only)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_inspect)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .checkpoint import inspect_checkpoint
    info = inspect_checkpoint(args.checkpoint, arch=args.arch,
                              trust_checkpoint=args.trust_checkpoint)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0 if info["loads"] else 1
    print(format_inspect(info))
    return 0 if info["loads"] else 1


def _head_text(info: dict) -> str:
    fit = info.get("heads_that_fit")
    if info.get("head"):
        src = "from the file" if info.get("head_source") == "metadata" else \
            f"assumed for {info['num_classes']} outputs; --head to read it otherwise"
        return f"{info['head']} ({src})"
    if fit:
        return f"not declared; {info['num_classes']} outputs fit {', '.join(fit)}: pass --head"
    if info.get("num_classes") is not None:
        return (f"none fits {info['num_classes']} outputs (classification 5, regression 1, "
                "ordinal 4, binary 1 or 2)")
    return "?"


def format_inspect(info: dict) -> str:
    def size(v):
        return f"{v[0]}x{v[1]}" if v else "?"

    arch = info["arch"] or "unknown (pass --arch)"
    if info["arch"] and info["arch_source"]:
        arch += f" ({info['arch_source']})"
    if not info["arch"] and info.get("candidates"):
        arch += "; closest: " + ", ".join(f"{n} {f:.0%}" for n, f in info["candidates"][:2])
    if info["safe"] is None:
        safe = "?"
    elif info["safe"]:
        safe = "yes (no code from the file runs: safetensors / weights_only)"
    else:
        safe = "NO: needs arbitrary unpickling (--trust-checkpoint to accept)"
    params = f"{info['num_params']:,}" if info["num_params"] is not None else "?"
    rows = [
        ("file", info["path"]),
        ("format", info["format_label"] or "?"),
        ("architecture", arch),
        ("outputs", info["num_classes"] if info["num_classes"] is not None else "?"),
        ("head", _head_text(info)),
        ("parameters", params),
        ("input size", size(info["input_size"])),
        ("preprocessing", info["preprocessing"] or "?"),
        ("sha256", info["file_sha256"]),
        ("safe", safe),
        ("loads", "yes" if info["loads"] else f"no: {info['error']}"),
    ]
    if info.get("container_key"):
        rows.insert(2, ("weights under", info["container_key"]))
    if info.get("prefixes"):
        rows.insert(2, ("prefixes", " ".join(info["prefixes"]) + " (stripped)"))
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(w)}  {v}" for k, v in rows)
