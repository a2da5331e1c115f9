"""Integrated-gradients attributions (through captum) and plain input gradients.

Everything here works in model-input space: ``x`` is float in [0,1], shape (B,3,H,W), after any
preprocessing (Graham), and ``model`` is a :class:`~robustbench_fundus.models.FundusClassifier`
(or any ``nn.Module`` mapping such input to logits (B, C)); normalisation stays inside the model.
The attributed output is the target class's *logit*, so by IG's completeness property the
attributions of one image sum to ``logit_t(x) - logit_t(baseline)`` up to the integral's
approximation error, which captum reports as the convergence delta.

Memory: IG evaluates the model on ``steps`` interpolated images per input. They are processed in
passes of at most ``internal_batch_size`` images (captum's own ``internal_batch_size``), chosen by
default from a pixel budget (:data:`PIXEL_BUDGET`, about 16 images at 224 px), so any image size
and step count fit; the result does not depend on the chunking beyond float rounding.
Images are attributed in groups no larger than one pass, so each image's result does not depend
on which other images share its batch (the model is put in eval mode for the call).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence, Union

import torch
from torch import nn

from ..errors import RBFError

#: Interpolated images per forward/backward pass are capped at this many pixels (H*W*n).
PIXEL_BUDGET = 16 * 224 * 224
#: Named baselines (see :func:`make_baseline`).
BASELINES = ("black", "grey", "blur", "noise")
#: Attribution methods: integrated gradients, plain input gradient, gradient x input.
METHODS = ("ig", "grad", "input_x_grad")
#: Blur baseline: Gaussian sigma as a fraction of the shorter image side (removes lesions and
#: vessels, keeps the disc's brightness layout and a Graham image's grey surround).
BLUR_SIGMA_FRACTION = 0.05
#: Seed name for the noise baseline's draws.
NOISE_NAME = "interpret.noise_baseline"

BaselineSpec = Union[str, float, int, torch.Tensor]
TargetSpec = Union[None, str, int, Sequence[int], torch.Tensor]


def model_device(model: nn.Module) -> torch.device:
    dev = getattr(model, "device", None)
    if isinstance(dev, torch.device):
        return dev
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _check_input(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise RBFError(f"{name} must be a torch.Tensor of shape (B,3,H,W), got {type(x).__name__}")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != 3:
        raise RBFError(f"{name} must have shape (B,3,H,W) (RGB in [0,1]), got {tuple(x.shape)}")
    return x.float()


def make_baseline(x: torch.Tensor, baseline: BaselineSpec = "black", *, seed: int = 0,
                  sample_ids: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """The IG reference image for each image of ``x`` (same shape, device and dtype).

    ``baseline``:

    - ``"black"``: zeros. On a raw photograph this equals the black surround of the fundus;
      after Graham preprocessing the surround is grey (0.5), so black is *not* neutral there.
    - ``"grey"`` (or ``"gray"``): 0.5 everywhere, the Graham surround and the level of flat
      retina after Graham's high-pass.
    - ``"blur"`` or ``"blur:F"``: a heavy Gaussian blur of the image itself (sigma = F times the
      shorter side, default :data:`BLUR_SIGMA_FRACTION`); keeps the disc's layout, removes
      lesions and vessels.
    - ``"noise"``: uniform [0,1) noise, seeded from ``(seed, sample id)`` through
      :mod:`robustbench_fundus.seeding` (never the global RNG), so one image gets the same
      baseline in any batch. ``sample_ids`` default to ``0..B-1``.
    - a number: that constant; a tensor broadcastable to ``x``: used as given.
    """
    x = _check_input(x)
    B, C, H, W = x.shape
    if isinstance(baseline, torch.Tensor):
        try:
            return torch.broadcast_to(baseline.to(device=x.device, dtype=x.dtype), x.shape).clone()
        except RuntimeError:
            raise RBFError(f"baseline tensor of shape {tuple(baseline.shape)} does not broadcast "
                           f"to the input's shape {tuple(x.shape)}") from None
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    if not isinstance(baseline, str):
        raise RBFError(f"baseline must be one of {', '.join(BASELINES)}, a number or a tensor; "
                       f"got {type(baseline).__name__}")
    name, _, arg = baseline.strip().lower().partition(":")
    if name == "black":
        return torch.zeros_like(x)
    if name in ("grey", "gray"):
        return torch.full_like(x, 0.5)
    if name == "blur":
        from ..preprocessing.graham import gaussian_blur
        try:
            frac = float(arg) if arg else BLUR_SIGMA_FRACTION
        except ValueError:
            raise RBFError(f"bad blur baseline {baseline!r}: use 'blur' or 'blur:F' with F the "
                           "sigma as a fraction of the image side, e.g. blur:0.05") from None
        if frac <= 0:
            raise RBFError(f"blur baseline sigma fraction must be positive, got {frac}")
        sigma = torch.full((B,), frac * min(H, W), device=x.device)
        return gaussian_blur(x, sigma).clamp(0, 1)
    if name == "noise":
        from ..seeding import per_sample_uniform
        ids = list(range(B)) if sample_ids is None else sample_ids
        if len(ids) != B:
            raise RBFError(f"{len(ids)} sample ids for {B} images")
        u = per_sample_uniform(seed, NOISE_NAME, ids, C * H * W, device=x.device)
        return u.view(B, C, H, W).to(x.dtype)
    raise RBFError(f"unknown baseline {baseline!r}: use one of {', '.join(BASELINES)}, "
                   "'blur:F', a number or a tensor")


def resolve_target(model: nn.Module, x: torch.Tensor, target: TargetSpec = None,
                   batch_size: int | None = None) -> torch.Tensor:
    """(B,) long class indices: ``None``/``"pred"`` -> the model's prediction on ``x``; an int
    or a digit string -> that class for all; a sequence/tensor -> one class per image."""
    B = x.shape[0]
    if target is None or (isinstance(target, str) and target.lower() in ("pred", "predicted")):
        return predict_logits(model, x, batch_size).argmax(dim=1)
    if isinstance(target, str):
        try:
            target = int(target)
        except ValueError:
            raise RBFError(f"target must be 'pred' or a class index, got {target!r}") from None
    if isinstance(target, int) and not isinstance(target, bool):
        t = torch.full((B,), target, dtype=torch.long, device=x.device)
    else:
        t = torch.as_tensor(target, dtype=torch.long, device=x.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(B).clone()
        if t.numel() != B:
            raise RBFError(f"{t.numel()} targets for {B} images")
    n_cls = getattr(model, "num_classes", None)
    if n_cls is not None and ((t < 0) | (t >= int(n_cls))).any():
        raise RBFError(f"target class out of range 0..{int(n_cls) - 1}: {t.tolist()}")
    return t


def _rows_per_pass(x: torch.Tensor, internal_batch_size: int | None) -> int:
    if internal_batch_size is not None:
        if int(internal_batch_size) < 1:
            raise RBFError(f"internal_batch_size must be >= 1, got {internal_batch_size}")
        return int(internal_batch_size)
    return max(1, PIXEL_BUDGET // (x.shape[2] * x.shape[3]))


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Logits (B, C) in eval mode, in passes of at most ``batch_size`` images."""
    x = _check_input(x).to(model_device(model))
    n = _rows_per_pass(x, batch_size)
    with eval_mode(model):
        return torch.cat([model(x[i:i + n]).float() for i in range(0, x.shape[0], n)])


def attribute(model: nn.Module, x: torch.Tensor, target: TargetSpec = None, method: str = "ig",
              baseline: BaselineSpec = "black", steps: int = 50, *,
              internal_batch_size: int | None = None, integration: str = "gausslegendre",
              seed: int = 0, sample_ids: Sequence[int] | torch.Tensor | None = None,
              return_delta: bool = False):
    """Attributions (B,3,H,W) of the target logit to the input pixels.

    ``method``: ``"ig"`` (captum ``IntegratedGradients`` from ``baseline`` in ``steps`` steps,
    ``integration`` rule, captum's default Gauss-Legendre), ``"grad"`` (plain input gradient)
    or ``"input_x_grad"`` (gradient times input). ``target``: see :func:`resolve_target`
    (default: the predicted class). ``baseline``: see :func:`make_baseline` (``seed`` and
    ``sample_ids`` seed the noise baseline). ``internal_batch_size``: images per
    forward/backward pass (default from :data:`PIXEL_BUDGET`).

    With ``return_delta=True`` returns ``(attributions, delta)``, delta (B,) being captum's
    convergence delta ``sum(attr) - (F_t(x) - F_t(baseline))`` (zeros for the gradient
    methods, which claim no completeness).
    """
    x = _check_input(x)
    method = str(method).lower()
    if method not in METHODS:
        raise RBFError(f"unknown attribution method {method!r}: use one of {', '.join(METHODS)}")
    if int(steps) < 1:
        raise RBFError(f"steps must be >= 1, got {steps}")
    dev = model_device(model)
    x = x.to(dev)
    rows = _rows_per_pass(x, internal_batch_size)
    B = x.shape[0]
    with eval_mode(model):
        t = resolve_target(model, x, target, rows)
        if method == "ig":
            from captum.attr import IntegratedGradients
            base = make_baseline(x, baseline, seed=seed, sample_ids=sample_ids)
            ig = IntegratedGradients(model)
            group = min(B, rows)  # images per captum call; each call's passes hold <= rows
            attrs, deltas = [], []
            for i in range(0, B, group):
                xi, bi, ti = x[i:i + group], base[i:i + group], t[i:i + group]
                a, d = ig.attribute(xi, baselines=bi, target=ti, n_steps=int(steps),
                                    method=integration,
                                    internal_batch_size=max(rows, xi.shape[0]),
                                    return_convergence_delta=True)
                attrs.append(a.detach())
                deltas.append(d.detach().float().reshape(-1))
            attr, delta = torch.cat(attrs), torch.cat(deltas)
        else:
            grads = []
            for i in range(0, B, rows):
                xi = x[i:i + rows].detach().clone().requires_grad_(True)
                with torch.enable_grad():
                    out = model(xi)
                    sel = out.gather(1, t[i:i + rows].view(-1, 1)).sum()
                    (g,) = torch.autograd.grad(sel, xi)
                grads.append(g.detach())
            attr = torch.cat(grads)
            if method == "input_x_grad":
                attr = attr * x
            delta = torch.zeros(B, device=dev)
    return (attr, delta) if return_delta else attr


def heatmap(attr: torch.Tensor, mode: str = "positive") -> torch.Tensor:
    """Per-pixel attribution (B,H,W): channels summed, then ``"positive"`` (clamped at 0),
    ``"abs"`` (absolute value of the channel sum) or ``"signed"``."""
    if attr.dim() == 3:
        attr = attr.unsqueeze(0)
    s = attr.float().sum(dim=1)
    if mode == "positive":
        return s.clamp_min(0)
    if mode == "abs":
        return s.abs()
    if mode == "signed":
        return s
    raise RBFError(f"heatmap mode must be positive, abs or signed; got {mode!r}")
