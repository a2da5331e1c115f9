"""Side-by-side saliency figures: the photograph, then each model's attribution as an overlay.

:func:`prepare_image` takes a photograph (path or tensor) through the same flow as the benchmark
(decode -> :meth:`~robustbench_fundus.preprocessing.Preprocessing.working_crop` at the model's
input size -> :meth:`~robustbench_fundus.preprocessing.Preprocessing.model_input`: Graham or none,
the fundus mask), each model's preprocessing resolved by
:func:`~robustbench_fundus.preprocessing.resolve_preprocessing` (a bare ``nn.Module`` gets the
library default, as in the benchmark and in training); :func:`saliency_figure` attributes each
model's prediction (or a given grade) with :func:`~robustbench_fundus.interpret.attribute` and renders the panels with
:func:`render_panels`. Heat maps show the positive channel-summed attribution, scaled per panel
to its 99.5th percentile (so panels compare *where* each model looks, not raw magnitudes, which
differ between models) over a grey copy of the cropped photograph.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import RBFError
from ..grades import NUM_GRADES
from ..preprocessing import DEFAULT_ENHANCEMENT, Preprocessing, resolve_preprocessing
from .attribution import (BaselineSpec, TargetSpec, attribute, model_device, predict_logits,
                          resolve_target)


@dataclass
class PreparedImage:
    """One photograph ready for a model: ``photo`` is the working crop (1,3,S,S) in [0,1]
    before enhancement, black outside the fundus mask (for display; the input of a ``"none"``
    model), ``x`` the model input, ``mask`` the fundus disc (1,1,S,S); ``meta["preprocessing"]``
    is the stage's :meth:`~robustbench_fundus.preprocessing.Preprocessing.to_dict`."""

    photo: torch.Tensor
    x: torch.Tensor
    mask: torch.Tensor
    preprocessing: str = "none"
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def _input_size(model: nn.Module, size: int | None) -> int:
    if size is not None:
        return int(size)
    s = getattr(model, "input_size", None)
    if s is None:
        raise RBFError("model has no input_size: pass size=")
    return int(s[0]) if isinstance(s, (tuple, list)) else int(s)


def prepare_image(image: str | Path | torch.Tensor, size: int,
                  preprocessing: str | Preprocessing = DEFAULT_ENHANCEMENT) -> PreparedImage:
    """Photograph (path, or uint8/float (3,H,W)/(1,3,H,W) tensor) -> :class:`PreparedImage`.

    ``preprocessing``: ``"graham"``, ``"none"`` or a
    :class:`~robustbench_fundus.preprocessing.Preprocessing` (e.g.
    ``resolve_preprocessing(model)``); the crop is ``size x size``."""
    if isinstance(preprocessing, Preprocessing):
        stage = preprocessing
    elif isinstance(preprocessing, str):
        stage = Preprocessing(preprocessing, source="caller")
    else:
        raise RBFError(f"preprocessing {preprocessing!r}: give 'graham', 'none' or a "
                       "Preprocessing (e.g. resolve_preprocessing(model))")
    source = ""
    if isinstance(image, (str, Path)):
        from ..data.io import load_image
        source = str(image)
        img = load_image(image)
    else:
        img = image
    crop = stage.working_crop(img, int(size))
    geom = stage.geometry(crop)
    xin = stage.model_input(crop, geom)
    # the display photo: the same crop, masked as a "none" model sees it, at the crop's size
    photo = dataclasses.replace(stage, enhancement="none", input_size=None).model_input(crop, geom)
    return PreparedImage(photo, xin, geom.mask, stage.enhancement, source,
                         {"preprocessing": stage.to_dict()})


def _to_hwc(t: torch.Tensor) -> np.ndarray:
    t = t.detach().float().cpu()
    if t.dim() == 4:
        t = t[0]
    return t.permute(1, 2, 0).clamp(0, 1).numpy()


def render_panels(photo: torch.Tensor | np.ndarray, panels: Sequence[dict[str, Any]],
                  out: str | Path | None = None, *, title: str | None = None,
                  extra: Sequence[tuple[str, torch.Tensor]] = (), dpi: int = 120,
                  cmap: str = "inferno"):
    """Render [photo, *extra images, *heat-map overlays] in one row.

    ``panels``: dicts with ``heat`` ((H,W) or (1,H,W) non-negative) and ``title``. ``extra``:
    (title, image (3,H,W)) shown as plain images after the photo (e.g. the Graham input).
    Writes a PNG to ``out`` when given; returns the matplotlib figure (closed if written)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ph = photo if isinstance(photo, np.ndarray) else _to_hwc(photo)
    grey = ph.mean(axis=2)
    n = 1 + len(extra) + len(panels)
    lines = max([str(p.get("title", "")).count("\n") + 1 for p in panels] + [1])
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.5 + 0.2 * lines), squeeze=False)
    axes = axes[0]
    axes[0].imshow(ph)
    axes[0].set_title("photograph", fontsize=9)
    for ax, (t, img) in zip(axes[1:], extra):
        ax.imshow(_to_hwc(img))
        ax.set_title(t, fontsize=9)
    for ax, p in zip(axes[1 + len(extra):], panels):
        h = p["heat"]
        h = h.detach().float().cpu().numpy() if isinstance(h, torch.Tensor) else np.asarray(h)
        h = np.squeeze(h)
        hi = float(np.percentile(h, 99.5)) if h.size else 0.0
        hn = np.clip(h / hi, 0, 1) if hi > 0 else np.zeros_like(h)
        ax.imshow(grey, cmap="gray", vmin=0, vmax=1)
        rgba = plt.get_cmap(cmap)(hn)
        rgba[..., 3] = 0.85 * np.sqrt(hn)  # transparent where there is no attribution
        ax.imshow(rgba)
        ax.set_title(p.get("title", ""), fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93) if title else (0, 0, 1, 1))
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=dpi)
        plt.close(fig)
    return fig


def _grade_name(model: nn.Module, k: int) -> str:
    names = getattr(model, "label_names", None)
    return str(names[k]) if names is not None and k < len(names) else str(k)


def _image_scores(model: nn.Module, x: torch.Tensor, t: int, heat: torch.Tensor,
                  mask: torch.Tensor, baseline: BaselineSpec, seed: int) -> dict[str, Any]:
    """This photograph's saliency scores (docs/saliency.md): the share of the positive
    attribution on the fundus disc, and the deletion-curve areas of the attribution's pixel order
    and of a seeded random order (lower than random: the attribution found what the model uses).
    Only for a model whose output is the 5 grade logits (the deletion curve reads their softmax);
    None otherwise."""
    from .scores import deletion_scores, mask_share
    with torch.no_grad():
        out = model(x)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != NUM_GRADES:
        return {"disc_share": None, "deletion_auc": None, "deletion_auc_random": None}
    m = mask.reshape(1, *heat.shape).float()
    disc = float(mask_share(heat[None].to(m.device), m)[0])
    d = deletion_scores(model, x, [t], heat[None].to(x.device), baseline, seed=seed)
    return {"disc_share": disc, "deletion_auc": float(d["deletion_auc"][0]),
            "deletion_auc_random": float(d["deletion_auc_random"][0])}


def saliency_figure(models: Sequence[tuple[str, nn.Module]], image: str | Path | torch.Tensor,
                    out: str | Path | None, *, target: TargetSpec = "pred",
                    baseline: BaselineSpec = "black", steps: int = 50, method: str = "ig",
                    size: int | None = None, seed: int = 0,
                    internal_batch_size: int | None = None,
                    show_input: bool = True) -> list[dict[str, Any]]:
    """Attribute each (label, model) on one photograph and render them side by side.

    The photograph is prepared for the first model (its input size and preprocessing); the others
    must take the same input size (their own preprocessing is applied). Titles carry the
    predicted grade and its probability, and the attributed class when it differs.
    Returns one dict per model: label, pred, prob, target, target_prob, probs, delta (captum's IG
    convergence delta; 0 for the gradient methods), heat (the (H,W) positive heat map) and the
    photograph's scores disc_share, deletion_auc and deletion_auc_random (see
    :func:`_image_scores`)."""
    if not models:
        raise RBFError("saliency_figure needs at least one model")
    S = _input_size(models[0][1], size)
    results, panels, extra = [], [], []
    prepared: dict[str, PreparedImage] = {}
    for label, model in models:
        s = _input_size(model, size)
        if s != S:
            raise RBFError(f"model {label!r} takes {s} px input but {models[0][0]!r} takes {S} px; "
                           "pass --size to compare at one size")
        # the model's own preprocessing (the one resolver the benchmark and training use), at
        # the figure's input size S x S
        pre = dataclasses.replace(resolve_preprocessing(model), input_size=(S, S))
        if pre not in prepared:
            prepared[pre] = prepare_image(image, S, pre)
        p = prepared[pre]
        x = p.x.to(model_device(model))
        prob = torch.softmax(predict_logits(model, x), dim=1)[0]
        pred = int(prob.argmax())
        attr, delta = attribute(model, x, target, method=method, baseline=baseline, steps=steps,
                                seed=seed, internal_batch_size=internal_batch_size,
                                return_delta=True)
        t = int(resolve_target(model, x, target)[0])
        heat = attr[0].sum(0).clamp_min(0).cpu()
        title = f"{label}\npred {pred} ({_grade_name(model, pred)}), p={float(prob[pred]):.2f}"
        if t != pred:
            title += f"\nattributing grade {t}, p={float(prob[t]):.2f}"
        panels.append({"heat": heat, "title": title})
        results.append({"label": label, "pred": pred, "prob": float(prob[pred]), "target": t,
                        "target_prob": float(prob[t]), "delta": float(delta[0]), "heat": heat,
                        "probs": prob.cpu().tolist(),
                        **_image_scores(model, x, t, heat, p.mask, baseline, seed)})
    first = next(iter(prepared.values()))
    if show_input:
        for pre, p in prepared.items():
            if pre.enhancement != "none":
                extra.append((f"model input ({pre.enhancement})", p.x[0]))
    bname = baseline if isinstance(baseline, str) else "custom"
    desc = {"ig": f"integrated gradients, {steps} steps, {bname} baseline",
            "grad": "input gradient", "input_x_grad": "gradient x input"}.get(method, method)
    src = Path(first.source).name if first.source else ""
    render_panels(first.photo[0], panels, out, extra=extra,
                  title=f"{src}  {desc}  (positive attribution)".strip())
    return results
