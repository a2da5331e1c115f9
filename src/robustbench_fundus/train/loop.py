"""The training loop behind ``rbf train``: epochs, validation, best checkpoint, resumption, AMP,
channels-last and data-parallel training (DDP under ``torchrun``; NCCL on GPUs, gloo on CPU).

Randomness: weight initialisation, dropout and anything else that uses torch's global generator
run inside :func:`torch.random.fork_rng`, reseeded from ``(seed, epoch, rank)`` at the start of
each epoch, so the caller's global random state is untouched and a resumed run repeats the draws
of an uninterrupted one. Sample order and augmentation use their own keyed generators.

Files: ``out`` is the best model so far (by validation kappa, then balanced accuracy), in the
library's checkpoint format with its metadata; ``out + ".last"`` is the full training state
after the last finished epoch (``torch.save`` of tensors and plain containers only, so
``torch.load(..., weights_only=True)`` reads it).
"""
from __future__ import annotations

import contextlib
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import __version__
from ..distributed import Dist
from ..errors import CheckpointError, RBFError
from ..metrics import ClassificationMetrics, confusion_matrix
from ..seeding import derive_seed
from .config import TrainConfig
from .datasets import (TrainData, build_data, class_counts, class_weights, epoch_order,
                       make_epoch_loader, shard_order)
from .recipes import BatchPipeline

STATE_FORMAT = "robustbench_fundus.train_state"
STATE_VERSION = 1


def last_path(out: str | os.PathLike) -> Path:
    """Where the training state of a run writing ``out`` lives: ``<out>.last``."""
    return Path(str(out) + ".last")


@dataclass
class TrainResult:
    out: Path
    best_epoch: int
    best_metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    epochs_run: int = 0
    steps: int = 0
    wall_s: float = 0.0
    data: str = ""


# -- helpers --------------------------------------------------------------------------------------
def _pick_device(cfg: TrainConfig, d: Dist) -> torch.device:
    name = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RBFError("--device cuda: no CUDA device is available here; use --device cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", d.local_rank % max(1, torch.cuda.device_count()))
    return dev


def _lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return f


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _cpu_state(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in sd.items()}


def _num(v: Any) -> float | None:
    """A float, or None where the metric is undefined (e.g. kappa with one class present)."""
    v = float(v)
    return v if math.isfinite(v) else None


def _metrics_dict(m: ClassificationMetrics) -> dict[str, Any]:
    return {"accuracy": _num(m.accuracy), "balanced_accuracy": _num(m.balanced_accuracy),
            "kappa": _num(m.kappa), "n": int(m.n),
            "confusion": [[int(v) for v in row] for row in np.asarray(m.confusion).tolist()]}


def _score(m: dict[str, Any]) -> tuple[float, float, float]:
    """Model selection key: kappa, then balanced accuracy, then accuracy (undefined = worst)."""
    return tuple(-math.inf if m[k] is None else m[k]  # type: ignore[return-value]
                 for k in ("kappa", "balanced_accuracy", "accuracy"))


def load_train_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``.last`` training state (``weights_only=True``: no code is unpickled)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no training state to resume from; run without --resume")
    try:
        st = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated/foreign file
        raise CheckpointError(f"{p}: not a readable training state ({exc}); delete it or run "
                              "without --resume") from None
    if not isinstance(st, dict) or st.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{p}: not a robustbench_fundus training state")
    return st


def _check_resumable(saved: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    now = cfg.to_dict()
    diffs = [k for k in now if k not in TrainConfig.RESUMABLE_CHANGES and saved.get(k) != now[k]]
    if diffs:
        parts = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in diffs[:4])
        raise RBFError(f"{path}: --resume with different settings ({parts}); use the original "
                       "settings or start afresh without --resume")


# -- evaluation -----------------------------------------------------------------------------------
@torch.no_grad()
def validate(model: torch.nn.Module, pipe: BatchPipeline, loader, device: torch.device,
             d: Dist, amp_dtype: torch.dtype | None, head=None) -> ClassificationMetrics:
    """Metrics on the (sharded) validation loader, summed over ranks, of the head's decisions
    (grades; the referral decision for a binary head). Model left in eval mode."""
    from ..heads import make_head
    head = head or make_head("classification")
    model.eval()
    k = head.n_labels
    cm = torch.zeros(k, k, dtype=torch.long)
    for batch in loader:
        x = pipe.inputs(batch["image"], batch["draw"], train=False)
        with _autocast(device, amp_dtype):
            logits = model(x)
        pred = head.decode(logits.float()).cpu()
        y = head.labels(batch["label"])
        cm += torch.as_tensor(confusion_matrix(y.numpy(), pred.clamp(0, k - 1).numpy(),
                                               num_classes=k))
    cm = d.sum_(cm)
    return ClassificationMetrics.from_confusion(cm.numpy())


def _autocast(device: torch.device, amp_dtype: torch.dtype | None):
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


# -- the loop -------------------------------------------------------------------------------------
def train(cfg: TrainConfig, *, on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
          data: TrainData | None = None) -> TrainResult:
    """Train per ``cfg``; returns the best epoch's metrics. Writes ``cfg.out`` and its ``.last``.

    ``on_epoch_end(epoch, record)`` is called on every rank after each epoch's state is saved (a
    hook for progress reporting; raising from it interrupts the run like Ctrl-C would).
    """
    t0 = time.perf_counter()
    dev_kind = "cuda" if (cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
                          ).startswith("cuda") else "cpu"
    d = Dist(dev_kind)
    try:
        device = _pick_device(cfg, d)
        d.use_device(device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        fork_devices = [device.index] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices):
            return _train(cfg, d, device, t0, on_epoch_end, data)
    finally:
        d.close()


def _log(cfg: TrainConfig, d: Dist, msg: str) -> None:
    if d.main and not cfg.quiet:
        print(msg, file=sys.stderr, flush=True)


def _train(cfg: TrainConfig, d: Dist, device: torch.device, t0: float,
           on_epoch_end, data: TrainData | None) -> TrainResult:
    from ..models import create_model, get_spec, save_checkpoint

    out = Path(cfg.out)
    state_path = last_path(out)
    saved: dict[str, Any] | None = None
    if cfg.resume:
        saved = load_train_state(state_path)
        _check_resumable(saved["config"], cfg, state_path)

    spec = get_spec(cfg.arch)
    size = int(cfg.size or spec.input_size[0])
    if size < 16:
        raise RBFError(f"--size {size}: too small; use at least 16 px (e.g. 128 or 224)")
    if cfg.pretrained:  # a missing weights package fails here, before the data are read
        from ..models.pretrained import weights_file
        weights_file(cfg.arch, what="--pretrained")
    if data is None:
        data = build_data(cfg, size)
    if saved is not None and saved.get("data_fingerprint") != data.fingerprint:
        raise RBFError(f"{state_path}: --resume on different data (was "
                       f"{saved.get('data_fingerprint')!r}, now {data.fingerprint!r})")
    counts = class_counts(data.train_labels)
    init = f" from {cfg.pretrained} weights" if cfg.pretrained else ""
    _log(cfg, d, f"rbf train: {cfg.recipe} {cfg.arch}{init} at {size} px on {device}"
                 f"{f' x{d.world} processes' if d.world > 1 else ''}; {data.description}; "
                 f"train grades {counts.tolist()}")

    from ..heads import make_head
    head = make_head(cfg.head, **cfg.head_options)
    torch.manual_seed(derive_seed(cfg.seed, "init"))  # inside fork_rng: caller's state untouched
    if cfg.pretrained:  # ImageNet backbone, fresh head; meta["pretrained"] says which file
        from ..models.pretrained import create_pretrained_model
        model = create_pretrained_model(cfg.arch, cfg.pretrained, input_size=size,
                                        head=head.name, head_options=head.options(),
                                        what="--pretrained")
    else:
        model = create_model(cfg.arch, input_size=size, head=head.name,
                             head_options=head.options())
    model.to(device)
    amp_dtype = None
    use_amp = cfg.amp if cfg.amp is not None else device.type == "cuda"
    if use_amp:
        amp_dtype = torch.bfloat16 if (device.type == "cpu" or torch.cuda.is_bf16_supported()) \
            else torch.float16
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    raw = model
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        model = DDP(raw, device_ids=[device.index] if device.type == "cuda" else None)

    opt = torch.optim.AdamW(raw.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_train = int(data.train_labels.numel())
    per_rank = -(-n_train // d.world)
    steps_per_epoch = max(1, -(-per_rank // cfg.batch_size))
    total_steps = steps_per_epoch * cfg.epochs
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total_steps, warm))
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    # class balance in the head's label space (grades; referable / not for a binary head)
    loss_weight = class_weights(head.labels(data.train_labels), head.n_labels).to(device) \
        if cfg.balance == "loss" else None

    start_epoch, step, history = 0, 0, []
    best: dict[str, Any] = {"epoch": 0, "metrics": None}
    if saved is not None:
        raw.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        if saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        start_epoch, step = int(saved["epoch"]), int(saved["step"])
        history = list(saved.get("history", []))
        best = dict(saved.get("best") or best)
        _log(cfg, d, f"resuming {state_path} after epoch {start_epoch} (step {step})")
        if start_epoch >= cfg.epochs:
            _log(cfg, d, f"nothing to do: {start_epoch} of {cfg.epochs} epochs already done")

    pipe = BatchPipeline(raw, cfg, device, channels_last=channels_last, amp_dtype=amp_dtype)
    vi, vd = shard_order(torch.arange(int(data.val_labels.numel())), d.rank, d.world)
    # Padding duplicates a few validation images on some ranks when the count does not divide;
    # keep only the first occurrence so the validation metrics count each image once.
    keep = vd < int(data.val_labels.numel())
    val_loader = make_epoch_loader(data.val, vi[keep], vd[keep], cfg.batch_size, cfg.num_workers)

    stopped = False
    epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.max_steps is not None and step >= cfg.max_steps:
            stopped = True
            break
        te = time.perf_counter()
        torch.manual_seed(derive_seed(cfg.seed, "epoch", epoch, d.rank))
        order = epoch_order(data.train_labels, epoch, cfg.seed, cfg.balance)
        idx, draws = shard_order(order, d.rank, d.world)
        loader = make_epoch_loader(data.train, idx, draws, cfg.batch_size, cfg.num_workers)
        model.train()
        tot_loss = torch.zeros((), dtype=torch.float64)
        tot_clean = torch.zeros((), dtype=torch.float64)
        tot_adv = torch.zeros((), dtype=torch.float64)
        seen = 0
        for batch in loader:
            if cfg.max_steps is not None and step >= cfg.max_steps:
                stopped = True
                break
            y = head.labels(batch["label"].to(device))
            x = pipe.inputs(batch["image"], batch["draw"], train=True, epoch=epoch)
            x_adv = None
            if cfg.recipe == "adversarial" and cfg.adv_weight > 0:
                x_adv = pipe.adversarial(x, y, batch["draw"], epoch)  # eval mode inside
                model.train()
            with _autocast(device, amp_dtype):
                logits = model(x)
                loss_clean = head.train_loss(logits.float(), y, loss_weight)
                loss = loss_clean
                if x_adv is not None:
                    loss_adv = head.train_loss(model(x_adv).float(), y, loss_weight)
                    loss = (1.0 - cfg.adv_weight) * loss_clean + cfg.adv_weight * loss_adv
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            b = int(y.numel())
            seen += b
            tot_loss += float(loss.detach()) * b
            tot_clean += float(loss_clean.detach()) * b
            if x_adv is not None:
                tot_adv += float(loss_adv.detach()) * b
            if cfg.log_every and step % cfg.log_every == 0:
                _log(cfg, d, f"  step {step}  loss {float(loss.detach()):.4f}  "
                             f"lr {sched.get_last_lr()[0]:.2e}")
        sums = torch.stack([tot_loss, tot_clean, tot_adv,
                            torch.tensor(float(seen), dtype=torch.float64)])
        sums = d.sum_(sums)
        n_seen = max(1.0, float(sums[3]))
        vm = validate(model, pipe, val_loader, device, d, amp_dtype, head)
        rec = {"epoch": epoch + 1, "steps": step, "train_loss": float(sums[0]) / n_seen,
               "train_loss_clean": float(sums[1]) / n_seen,
               **({"train_loss_adv": float(sums[2]) / n_seen}
                  if cfg.recipe == "adversarial" else {}),
               "lr": float(sched.get_last_lr()[0]), "val": _metrics_dict(vm),
               "seconds": round(time.perf_counter() - te, 2), "partial": bool(stopped)}
        history.append(rec)
        improved = best["metrics"] is None or _score(rec["val"]) > _score(best["metrics"])
        if improved:
            best = {"epoch": epoch + 1, "metrics": rec["val"]}
        if d.main:
            out.parent.mkdir(parents=True, exist_ok=True)
            if improved:
                save_checkpoint(raw, out, **_meta(cfg, data, size, device, d, epoch + 1, step,
                                                  best, history))
            _atomic_torch_save(_state(cfg, raw, opt, sched, scaler, epoch + 1, step, best,
                                      history, data, device), state_path)
        d.barrier()
        v = rec["val"]
        _log(cfg, d, f"epoch {epoch + 1}/{cfg.epochs}  loss {rec['train_loss']:.4f}  "
                     f"val {_fmt_metrics(v)}{'  *best*' if improved else ''}  "
                     f"({rec['seconds']:.0f} s)")
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, rec)
        if stopped:
            break
    done = len(history)
    wall = time.perf_counter() - t0
    if best["metrics"] is not None:
        m = best["metrics"]
        _log(cfg, d, f"best epoch {best['epoch']}: val {_fmt_metrics(m)} -> {out} "
                     f"({wall:.0f} s)")
    return TrainResult(out=out, best_epoch=int(best["epoch"]), best_metrics=best["metrics"] or {},
                       history=history,
                       epochs_run=done - (len(saved.get("history", [])) if saved else 0),
                       steps=step, wall_s=wall, data=data.description)


def _fmt_metrics(m: dict[str, Any]) -> str:
    def f(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"
    return f"acc {f(m['accuracy'])} bal {f(m['balanced_accuracy'])} kappa {f(m['kappa'])}"


def _meta(cfg: TrainConfig, data: TrainData, size: int, device: torch.device, d: Dist,
          epochs_done: int, step: int, best: dict[str, Any], history: list[dict]) -> dict[str, Any]:
    m = best["metrics"]
    recipe: dict[str, Any] = {"name": cfg.recipe}
    if cfg.recipe == "corruption":
        recipe.update(severities=list(cfg.severities), corruptions=(
            list(cfg.corruptions) if cfg.corruptions else "default"),
            corruption_prob=cfg.corruption_prob)
    if cfg.recipe == "adversarial":
        recipe.update(attack="pgd", eps=cfg.eps, eps_255=round(cfg.eps * 255, 4),
                      steps=cfg.steps, adv_weight=cfg.adv_weight, adv_mode=cfg.adv_mode)
    return {
        "recipe": recipe,
        "data_fingerprint": data.fingerprint,
        "data": data.description,
        "epochs": epochs_done,
        "epochs_planned": cfg.epochs,
        "steps": step,
        "best_epoch": best["epoch"],
        "val_metrics": {k: m[k] for k in ("accuracy", "balanced_accuracy", "kappa", "n")},
        "val_confusion": m["confusion"],
        "history": [{k: h[k] for k in ("epoch", "train_loss", "lr", "seconds")} |
                    {"val_kappa": h["val"]["kappa"], "val_accuracy": h["val"]["accuracy"],
                     "val_balanced_accuracy": h["val"]["balanced_accuracy"]} for h in history],
        "train_config": cfg.to_dict(),
        "trained_with": {"library": __version__, "torch": torch.__version__,
                         "python": platform.python_version(), "device": str(device.type),
                         "world_size": d.world},
    }


def _state(cfg: TrainConfig, raw: torch.nn.Module, opt, sched, scaler, epochs_done: int,
           step: int, best: dict[str, Any], history: list[dict], data: TrainData,
           device: torch.device) -> dict[str, Any]:
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    sched_sd = sched.state_dict()  # lr_lambdas: [None] for a closure (weights_only-safe)
    return {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "config": cfg.to_dict(),
        "epoch": epochs_done,
        "step": step,
        "model": _cpu_state(raw.state_dict()),
        "optimizer": opt.state_dict(),
        "scheduler": sched_sd,
        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
        "best": best,
        "history": history,
        "rng": rng,
        "data_fingerprint": data.fingerprint,
    }
