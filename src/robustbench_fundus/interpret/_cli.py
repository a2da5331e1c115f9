"""``rbf saliency``: a photograph and each model's attribution side by side."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import RBFError
from ..logs import add_log_options


def _parse_target(s: str):
    s = s.strip().lower()
    if s in ("pred", "predicted"):
        return "pred"
    try:
        k = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--target must be 'pred' or a grade 0-4, got {s!r}")
    return k


def _parse_baseline(s: str):
    try:
        return float(s)
    except ValueError:
        return s


def _device(name: str):
    import torch
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise RBFError(f"bad --device {name!r}: use cpu, cuda, cuda:N or auto") from None


def load_model(path: str | Path, device=None, arch: str | None = None,
               trust_checkpoint: bool = False):
    """Load a checkpoint through the models stage (:func:`robustbench_fundus.models.load_model`)."""
    from ..models import load_model as _load
    p = Path(path)
    if not p.exists():
        raise RBFError(f"checkpoint {str(p)!r} not found: pass a file written by `rbf train` or "
                       "models.save_checkpoint")
    return _load(p, arch=arch, trust_checkpoint=trust_checkpoint,
                 device=device if device is not None else "cpu").eval()


def _label(path: str, others: list[str]) -> str:
    stem = Path(path).stem
    return stem if [Path(o).stem for o in others].count(stem) <= 1 else str(path)


def cmd_saliency(args: argparse.Namespace) -> int:
    from ..logs import command_logging
    with command_logging("saliency", args.quiet, args.log, options=args) as log:
        return _saliency(args, log)


def _saliency(args: argparse.Namespace, log) -> int:
    from .figure import saliency_figure

    dev = _device(args.device)
    paths = [args.model] + list(args.compare or [])
    models = [(_label(p, paths), load_model(p, dev, args.arch, args.trust_checkpoint))
              for p in paths]
    if not Path(args.image).is_file():
        raise RBFError(f"image {args.image!r} not found")
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
        raise RBFError(f"--out {args.out!r}: give a .png (or .pdf/.svg/.jpg) file name")
    log.info(f"rbf saliency: {args.method} ({args.steps} steps, baseline {args.baseline}) of "
             f"{len(models)} model(s) on {args.image}")
    res = saliency_figure(models, args.image, out, target=args.target, baseline=args.baseline,
                          steps=args.steps, method=args.method, size=args.size, seed=args.seed,
                          internal_batch_size=args.batch_size)
    rows = [{k: v for k, v in r.items() if k != "heat"} for r in res]
    if args.json:
        print(json.dumps({"out": str(out), "models": rows}, indent=2))
    else:
        for r in rows:
            extra = f", attributed grade {r['target']}" if r["target"] != r["pred"] else ""
            print(f"{r['label']}: predicted grade {r['pred']} (p={r['prob']:.3f}){extra}, "
                  f"IG delta {r['delta']:+.2e}")
            if r.get("deletion_auc") is not None:
                print(f"  disc share {r['disc_share']:.3f}, deletion AUC {r['deletion_auc']:.3f} "
                      f"(random order {r['deletion_auc_random']:.3f})")
        print(f"wrote {out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "saliency", help="integrated-gradients maps of one or two models on a photograph",
        description="Render a photograph and each model's attribution (integrated gradients by "
                    "default) as heat-map overlays side by side, with the predicted grade and "
                    "its probability in the titles. See docs/saliency.md.")
    p.add_argument("--model", required=True, metavar="CKPT", help="checkpoint of the model")
    p.add_argument("--compare", action="append", metavar="CKPT",
                   help="another checkpoint to show beside it (repeatable)")
    p.add_argument("--arch", default=None,
                   help="architecture of checkpoints that do not name theirs (see rbf list models)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow pickled (non-safetensors) checkpoints to run code when loading")
    p.add_argument("--image", required=True, metavar="IMG", help="a fundus photograph")
    p.add_argument("--target", type=_parse_target, default="pred",
                   help="class to attribute: 'pred' (each model's prediction, default) or a grade")
    p.add_argument("--baseline", type=_parse_baseline, default="black",
                   help="IG baseline: black (default; after Graham preprocessing not neutral), "
                        "grey, blur, blur:F, noise, or a number")
    p.add_argument("--method", default="ig", choices=["ig", "grad", "input_x_grad"],
                   help="attribution method (default ig)")
    p.add_argument("--steps", type=int, default=50, help="IG integration steps (default 50)")
    p.add_argument("--size", type=int, default=None,
                   help="working size in px (default: the first model's input size)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per forward/backward pass (default: from a memory budget)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise baseline")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--out", required=True, metavar="FIG", help="output figure (.png)")
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    add_log_options(p)
    p.set_defaults(func=cmd_saliency)
