"""Saliency scores: where the positive attribution lies, and how faithful the ranking is.

- ``lesion_share``: the share of an image's positive attribution (channel-summed IG, clamped at
  0) that falls inside its lesion mask (synthetic images, where the lesions are known). Chance
  level is the lesion area (``lesion_area``, the share of pixels inside the mask): a model that
  looks at lesions scores well above it. Images without lesions (grade 0) have no share.
- ``disc_share``: the same inside the fundus disc mask (vs. the surround and the rim).
- ``deletion_auc``: the deletion curve removes the most attributed pixels first (positive
  attribution, replaced by the baseline's value) in steps of ``1/(points-1)`` of the image and
  tracks the softmax probability of the true class; its area (trapezoid over the fraction
  removed, so in [0,1]) is low when the attribution found the pixels the decision rests on.

:func:`saliency_scores` computes all of them for a batch; :func:`summarize_saliency` (and
:func:`combine_saliency` for several batches) turns the per-sample arrays into the summary
floats that go into a report and the leaderboard.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import RBFError
from .attribution import (BaselineSpec, _check_input, _rows_per_pass, attribute, eval_mode,
                          heatmap, make_baseline, model_device)

#: Keys of the summary floats (the leaderboard columns are prefixed ``saliency_``).
SUMMARY_KEYS = ("lesion_share", "lesion_area", "disc_share", "deletion_auc", "deletion_auc_random",
                "ig_delta")
DEFAULT_POINTS = 21  # 0%, 5%, ..., 100%


def crop_masks(masks: torch.Tensor, geom, size: int, margin: float = 1.0,
               threshold: float = 0.5) -> torch.Tensor:
    """Crop and resize (B,1,H,W) masks (e.g. synthetic lesion masks at photo size) exactly like
    :meth:`~robustbench_fundus.preprocessing.Preprocessing.working_crop` crops the photographs
    with ``geom`` (their geometry); returns bool (B,1,size,size) (pixels at least ``threshold``
    covered)."""
    from ..preprocessing import Preprocessing
    m = masks.float()
    if m.dim() == 3:
        m = m.unsqueeze(1)
    out = Preprocessing(margin=margin).working_crop(m.expand(-1, 3, -1, -1), int(size),
                                                    geom=geom)[:, :1]
    return out >= threshold


def mask_share(heat: torch.Tensor, masks: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(B,) share of each heat map's mass (B,H,W, non-negative) inside ``masks`` (B,1,H,W) or
    (B,H,W); NaN where a heat map has no mass."""
    if masks.dim() == 4:
        masks = masks[:, 0]
    if masks.shape != heat.shape:
        raise RBFError(f"mask shape {tuple(masks.shape)} does not match the images' "
                       f"{(heat.shape[0], 1, *heat.shape[1:])}")
    m = masks.to(heat.device).float()
    total = heat.sum(dim=(1, 2))
    inside = (heat * m).sum(dim=(1, 2))
    share = inside / total.clamp_min(eps)
    return torch.where(total > eps, share, torch.full_like(share, float("nan")))


def deletion_order(score: torch.Tensor) -> torch.Tensor:
    """(B,H,W) rank of each pixel (0 = most attributed); ties broken by pixel index."""
    B, H, W = score.shape
    flat = score.reshape(B, -1)
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(H * W, device=score.device).expand(B, -1).contiguous())
    return rank.view(B, H, W)


@torch.no_grad()
def deletion_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor | Sequence[int],
                   score: torch.Tensor, baseline: torch.Tensor | BaselineSpec = "black",
                   points: int = DEFAULT_POINTS, *, batch_size: int | None = None,
                   seed: int = 0, sample_ids=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Probability of class ``y`` as the top-ranked pixels of ``score`` (B,H,W) are replaced by
    ``baseline`` (a tensor like ``x`` or a name for :func:`make_baseline`).

    Returns ``(fractions (P,), probs (B,P))``; fraction k removes ``round(k*H*W)`` pixels (all
    channels), so the first column is the clean probability and the last the baseline's.
    All P deleted copies of an image are evaluated as batches of at most ``batch_size``."""
    x = _check_input(x).to(model_device(model))
    B, C, H, W = x.shape
    if points < 2:
        raise RBFError(f"a deletion curve needs at least 2 points, got {points}")
    base = baseline if isinstance(baseline, torch.Tensor) and baseline.shape == x.shape else \
        make_baseline(x, baseline, seed=seed, sample_ids=sample_ids)
    base = base.to(x.device, x.dtype)
    y = torch.as_tensor(y, dtype=torch.long, device=x.device).reshape(-1)
    fractions = torch.linspace(0, 1, points, dtype=torch.float64)
    counts = torch.round(fractions * H * W).long().to(x.device)  # (P,)
    rank = deletion_order(score.to(x.device).float())             # (B,H,W)
    rows = _rows_per_pass(x, batch_size)
    probs = torch.empty(B, points, device=x.device)
    # Flatten (image, step) pairs and evaluate them in passes of <= rows images.
    all_b = torch.arange(B, device=x.device).repeat_interleave(points)
    all_p = torch.arange(points, device=x.device).repeat(B)
    with eval_mode(model):
        for s in range(0, B * points, rows):
            bi, pi = all_b[s:s + rows], all_p[s:s + rows]
            drop = (rank[bi] < counts[pi].view(-1, 1, 1)).unsqueeze(1)  # (n,1,H,W)
            xd = torch.where(drop, base[bi], x[bi])
            pr = torch.softmax(model(xd).float(), dim=1)
            probs[bi, pi] = pr.gather(1, y[bi].view(-1, 1)).squeeze(1)
    return fractions.float(), probs


def deletion_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor | Sequence[int],
                    heat: torch.Tensor, baseline: torch.Tensor | BaselineSpec = "black",
                    points: int = DEFAULT_POINTS, *, seed: int = 0, sample_ids=None,
                    batch_size: int | None = None, random_control: bool = True
                    ) -> dict[str, np.ndarray]:
    """The deletion scores of attributions ``heat`` (B,H,W): ``prob`` (clean probability of
    ``y``), ``deletion_curve`` (B,P), ``deletion_auc``, ``fractions`` and, with
    ``random_control``, ``deletion_auc_random`` (a seeded random pixel order per sample id, the
    reference an attribution must beat). Used by :func:`saliency_scores` and by the figure's
    per-photograph scores, so both are one computation."""
    B, _, H, W = x.shape
    ids = list(range(B)) if sample_ids is None else [int(i) for i in sample_ids]
    fr, curve = deletion_curve(model, x, y, heat, baseline, points, batch_size=batch_size,
                               seed=seed, sample_ids=ids)
    out = {"prob": curve[:, 0].cpu().numpy(), "deletion_curve": curve.cpu().numpy(),
           "deletion_auc": curve_area(fr, curve).cpu().numpy(), "fractions": fr.numpy()}
    if random_control:
        from ..seeding import per_sample_uniform
        rnd = per_sample_uniform(seed, "interpret.random_order", ids, H * W, device=x.device)
        _, rcurve = deletion_curve(model, x, y, rnd.view(B, H, W), baseline, points,
                                   batch_size=batch_size, seed=seed, sample_ids=ids)
        out["deletion_auc_random"] = curve_area(fr, rcurve).cpu().numpy()
    return out


def curve_area(fractions: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """(B,) trapezoid area under ``probs`` (B,P) over ``fractions`` (P,) in [0,1]."""
    f = fractions.to(probs.device, torch.float64)
    p = probs.double()
    area = ((p[:, 1:] + p[:, :-1]) / 2 * (f[1:] - f[:-1])).sum(dim=1)
    span = (f[-1] - f[0]).clamp_min(1e-12)
    return (area / span).float()


def _nanmean(a: np.ndarray) -> float | None:
    a = np.asarray(a, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else None


def summarize_saliency(per_sample: dict[str, Any]) -> dict[str, Any]:
    """Summary floats from per-sample arrays (NaN entries are skipped; None if none left)."""
    out: dict[str, Any] = {"n": int(len(per_sample["deletion_auc"]))}
    for k in SUMMARY_KEYS:
        if k in per_sample:
            out[k] = _nanmean(per_sample[k])
    if "lesion_share" in per_sample:
        out["n_lesion"] = int(np.isfinite(np.asarray(per_sample["lesion_share"], float)).sum())
    if "disc_share" in per_sample:
        out["n_disc"] = int(np.isfinite(np.asarray(per_sample["disc_share"], float)).sum())
    return out


def combine_saliency(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Merge several :func:`saliency_scores` results (e.g. one per batch) into one."""
    parts = [p for p in parts if p and p.get("n", 0)]
    if not parts:
        raise RBFError("no saliency results to combine")
    keys = set.intersection(*(set(p["per_sample"]) for p in parts))
    per: dict[str, Any] = {}
    for k in keys:
        if k == "fractions":
            per[k] = parts[0]["per_sample"][k]
        else:
            per[k] = np.concatenate([np.asarray(p["per_sample"][k]) for p in parts])
    out = {k: parts[0][k] for k in ("method", "baseline", "steps", "seed", "points")
           if k in parts[0]}
    out.update(summarize_saliency(per))
    out["per_sample"] = per
    return out


def saliency_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor | Sequence[int],
                    lesion_masks: torch.Tensor | None = None,
                    fundus_masks: torch.Tensor | None = None, *, steps: int = 32,
                    baseline: BaselineSpec = "black", seed: int = 0, method: str = "ig",
                    points: int = DEFAULT_POINTS, sample_ids=None,
                    internal_batch_size: int | None = None,
                    random_control: bool = True, head: Any = None) -> dict[str, Any]:
    """Saliency scores of ``model`` on images ``x`` (B,3,H,W in [0,1], model-input space) with
    true grades ``y``; attributions are for the true class.

    ``head`` (a :class:`robustbench_fundus.heads.Head`, None: classification): for the other
    heads integrated gradients attribute the head's score (the grade score of a regression
    head, the expected grade of an ordinal one, the referable logit of a binary one:
    :meth:`~robustbench_fundus.heads.Head.saliency_score`) and the deletion curve tracks the
    softmax of the head's class view at the true label (for a binary head, the probability of
    the right referral decision).

    ``lesion_masks``/``fundus_masks``: (B,1,H,W) or (B,H,W) bool/float, optional (shares are
    NaN/None without them). ``random_control`` also runs the deletion curve with a seeded random
    pixel order (``deletion_auc_random``), the reference an attribution must beat.

    Returns a dict: ``n``, ``method``, ``baseline``, ``steps``, ``seed``, ``points``,
    the summary floats ``lesion_share``, ``lesion_area``, ``disc_share``, ``deletion_auc``,
    ``deletion_auc_random``, ``ig_delta`` (mean |convergence delta| relative to
    |F(x)-F(baseline)|), counts ``n_lesion``/``n_disc``, and ``per_sample``: numpy arrays
    ``target``, ``prob`` (clean true-class probability), ``lesion_share``, ``lesion_area``,
    ``disc_share``, ``deletion_auc``, ``deletion_auc_random``, ``deletion_curve`` (B,P),
    ``ig_delta``, and ``fractions`` (P,).
    """
    x = _check_input(x).to(model_device(model))
    B, _, H, W = x.shape
    y = torch.as_tensor(y, dtype=torch.long).reshape(-1).to(x.device)
    if y.numel() != B:
        raise RBFError(f"{y.numel()} labels for {B} images")
    ids = list(range(B)) if sample_ids is None else [int(i) for i in sample_ids]
    base = make_baseline(x, baseline, seed=seed, sample_ids=ids)
    grades = y
    score_model, view_model, t_attr = model, model, y
    if head is not None and head.name != "classification":
        score_model, view_model = _HeadScore(model, head), _HeadView(model, head)
        t_attr = torch.zeros_like(y)          # the single score
        y = head.labels(y)                    # the deletion curve's label
    attr, delta = attribute(score_model, x, t_attr, method=method, baseline=base, steps=steps,
                            internal_batch_size=internal_batch_size, return_delta=True)
    heat = heatmap(attr, "positive")
    nan = torch.full((B,), float("nan"))
    per: dict[str, Any] = {"target": grades.cpu().numpy()}

    if lesion_masks is not None:
        lm = lesion_masks.reshape(B, 1, H, W) if lesion_masks.dim() != 4 else lesion_masks
        lm = lm.to(x.device).float()
        area = lm.mean(dim=(1, 2, 3))
        share = mask_share(heat, lm)
        has = area > 0
        per["lesion_share"] = torch.where(has, share, float("nan")).cpu().numpy()
        per["lesion_area"] = torch.where(has, area, float("nan")).cpu().numpy()
    else:
        per["lesion_share"] = nan.numpy()
        per["lesion_area"] = nan.numpy()
    if fundus_masks is not None:
        fm = fundus_masks.reshape(B, 1, H, W) if fundus_masks.dim() != 4 else fundus_masks
        per["disc_share"] = mask_share(heat, fm.to(x.device).float()).cpu().numpy()
    else:
        per["disc_share"] = nan.numpy()

    per.update(deletion_scores(view_model, x, y, heat, base, points, seed=seed, sample_ids=ids,
                               batch_size=internal_batch_size, random_control=random_control))

    if method == "ig":
        with torch.no_grad(), eval_mode(score_model):
            lx = _gather_logits(score_model, x, t_attr, internal_batch_size)
            lb = _gather_logits(score_model, base, t_attr, internal_batch_size)
        gap = (lx - lb).abs()
        rel = delta.abs().cpu() / gap.cpu().clamp_min(1e-6)
        per["ig_delta"] = rel.numpy()

    out: dict[str, Any] = {"method": method,
                           "baseline": baseline if isinstance(baseline, (str, int, float))
                           else "tensor",
                           "steps": int(steps), "seed": int(seed), "points": int(points)}
    out.update(summarize_saliency(per))
    out["per_sample"] = per
    return out


class _HeadScore(nn.Module):
    """The model's head score as a (B, 1) output (what integrated gradients attribute)."""

    def __init__(self, model: nn.Module, head: Any):
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return self.head.saliency_score(out, torch.zeros(out.shape[0], dtype=torch.long,
                                                         device=out.device))[:, None]


class _HeadView(nn.Module):
    """The model's head class view (B, labels): its softmax at the true label is what a
    deletion curve tracks."""

    def __init__(self, model: nn.Module, head: Any):
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.class_view(self.model(x))


def _gather_logits(model, x, y, batch_size):
    rows = _rows_per_pass(x, batch_size)
    return torch.cat([model(x[i:i + rows]).float().gather(1, y[i:i + rows].view(-1, 1))[:, 0]
                      for i in range(0, x.shape[0], rows)])


def leaderboard_columns(summary: dict[str, Any]) -> dict[str, float | None]:
    """The flat ``saliency_*`` columns for a leaderboard row from a scores dict."""
    cols = {f"saliency_{k}": summary.get(k) for k in ("lesion_share", "disc_share",
                                                      "deletion_auc")}
    cols["saliency_n"] = summary.get("n")
    for k, v in cols.items():
        if isinstance(v, float) and not math.isfinite(v):
            cols[k] = None
    return cols
