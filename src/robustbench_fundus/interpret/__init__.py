"""Interpretability: integrated-gradients saliency (captum), figures and saliency scores.

- :func:`attribute` -- IG (or plain input gradients) of a class logit w.r.t. the [0,1] model input,
  chunked to fit memory; :func:`make_baseline` -- black / grey / blur / noise / tensor baselines.
- :func:`saliency_scores` -- lesion share, disc share and deletion-curve area over a batch, for
  the benchmark report and leaderboard (:func:`combine_saliency` merges batches,
  :func:`leaderboard_columns` gives the flat ``saliency_*`` columns).
- :func:`saliency_figure` -- the photograph and each model's attribution side by side
  (``rbf saliency``).

See docs/saliency.md for the choice of baseline and what the scores mean.
"""
from .attribution import (BASELINES, METHODS, PIXEL_BUDGET, attribute, heatmap, make_baseline,
                          predict_logits, resolve_target)
from .figure import PreparedImage, prepare_image, render_panels, saliency_figure
from .scores import (SUMMARY_KEYS, combine_saliency, crop_masks, curve_area, deletion_curve, deletion_order,
                     leaderboard_columns, mask_share, saliency_scores, summarize_saliency)

__all__ = [
    "BASELINES", "METHODS", "PIXEL_BUDGET", "attribute", "heatmap", "make_baseline",
    "predict_logits", "resolve_target", "PreparedImage", "prepare_image", "render_panels",
    "saliency_figure", "SUMMARY_KEYS", "combine_saliency", "crop_masks", "curve_area", "deletion_curve",
    "deletion_order", "leaderboard_columns", "mask_share", "saliency_scores",
    "summarize_saliency",
]
