"""Flags: what a reader of the numbers must know (small samples, a constant model, an attack
that is failing, data or preprocessing that is not what it seems).

:func:`make_flags` reads the report sections and the inputs; :func:`sanity_flags` reduces the
attack stage's sanity counters of each attack configuration over its eps conditions.
"""
from __future__ import annotations

import math

import numpy as np

from ..grades import NUM_GRADES
from .conditions import Condition
from .report import AttackResult, CleanResult, CorruptionResult, Flag, attack_sanity_flags

#: L-inf eps below which an attack whose success stays under 50% is "too weak a range".
WEAK_RANGE_LINF = 8 / 255


def sanity_flags(rows: dict[str, dict], conditions: list[Condition]) -> list[Flag]:
    """The attack stage's sanity flags (masked gradients, probability outputs, randomised
    model, huge eps not broken, ...) of every attack configuration among ``conditions`` (their
    rows in ``rows``, keyed by condition key), reduced over its eps conditions."""
    by: dict[str, list[tuple[float, dict]]] = {}
    for c in conditions:
        r = rows.get(c.key)
        if c.kind != "attack" or r is None:
            continue
        san = dict((r.get("metrics") or {}).get("sanity") or {})
        san.update(n=r.get("n"), n_attacked=r.get("n_attacked"), n_broken=r.get("n_broken"))
        by.setdefault(c.label or c.name, []).append((float(c.eps), san))
    return [f for label in sorted(by) for f in attack_sanity_flags(label, by[label])]


def make_flags(clean: CleanResult | None, cors: list[CorruptionResult],
                 atks: list[AttackResult], di, mi) -> list[Flag]:
    flags: list[Flag] = []
    if clean is not None:
        cm = np.asarray(clean.confusion)
        if clean.n < 100:
            from ..metrics.screening import wilson
            right = int(np.trace(cm))
            lo, hi = wilson(right, clean.n)
            ref = clean.referable or {}
            sens = ""
            if ref.get("sensitivity") is not None:
                sens = (f", referable sensitivity {ref['sensitivity']:.2f} "
                        f"({ref['sensitivity_ci_low']:.2f}-{ref['sensitivity_ci_high']:.2f}, "
                        f"n={ref['sensitivity_n']})")
            flags.append(Flag("small_sample", f"only {clean.n} images: accuracy "
                              f"{right / clean.n:.2f} (95% CI {lo:.2f}-{hi:.2f}){sens}"))
        k = cm.shape[0]
        what = "grade" if k == NUM_GRADES else "referral decision"
        present = int((cm.sum(axis=1) > 0).sum())
        if k == NUM_GRADES and present < NUM_GRADES:
            flags.append(Flag("missing_grades", f"only {present} of {NUM_GRADES} grades occur; "
                              "balanced accuracy and kappa cover the grades present"))
        if k != NUM_GRADES and present < k:
            flags.append(Flag("missing_grades", "only referable or only non-referable eyes "
                              "occur: sensitivity or specificity is undefined"))
        predicted = int((cm.sum(axis=0) > 0).sum())
        if clean.n and predicted == 1:
            flags.append(Flag("constant_prediction", f"the model predicts a single {what} for "
                              "every image"))
        if clean.n:
            majority = cm.sum(axis=1).max() / clean.n
            acc = float(np.trace(cm)) / clean.n
            if acc <= majority and predicted > 1:
                flags.append(Flag("below_majority", f"clean accuracy {acc:.3f} is not above "
                                  f"always predicting the commonest {what} ({majority:.3f})"))
    for c in cors:
        # A gain is worth a flag only beyond sampling noise: two standard errors of the clean
        # accuracy (a few images on a small set would otherwise flag at random).
        p = clean.accuracy if clean is not None and clean.n else 0.0
        noise = 2.0 * math.sqrt(max(p * (1 - p), 1e-12) / c.n) if c.n else 1.0
        if c.drop < -max(0.02, noise):
            flags.append(Flag("corruption_helps", f"{c.name} at severity {c.severity} raises "
                              f"accuracy by {-c.drop:.3f} (beyond two standard errors, "
                              f"{noise:.3f})", f"corruption/{c.name}/{c.severity}"))
    by: dict[str, list[AttackResult]] = {}
    for a in atks:
        by.setdefault(a.key_label, []).append(a)
    for label, rows in by.items():
        rows.sort(key=lambda r: r.eps)
        if rows and rows[0].n_attacked == 0:
            flags.append(Flag("nothing_to_attack", f"{label}: no image is right on clean "
                              "input, so success rates are undefined"))
        sr = [r.success_rate for r in rows if not math.isnan(r.success_rate)]
        if any(b < a - 1e-12 for a, b in zip(sr, sr[1:])):
            flags.append(Flag("non_monotonic_attack", f"{label}: success rate falls as eps "
                              "grows"))
        last = rows[-1] if rows else None
        if last is not None and last.norm == "linf" and not math.isnan(last.success_rate) and \
                last.success_rate < 0.5 and last.eps < WEAK_RANGE_LINF - 1e-9:
            flags.append(Flag("weak_attack_range", f"{label}: success stays below 50% up to "
                              f"eps {last.eps_text}; add larger eps"))
    if di.meta.get("kind") == "synthetic":
        flags.append(Flag("synthetic_data", "evaluated on synthetic fundus images, not real "
                          "photographs"))
    if di.tensor_input and cors:
        flags.append(Flag("corruptions_on_model_input", "data given as (x, y) tensors: "
                          "corruptions were applied to x directly, without preprocessing"))
    pre = mi.preprocessing
    if di.tensor_input and pre.enhancement != "none":
        flags.append(Flag("preprocessing_skipped", "data given as (x, y) tensors is taken as "
                          f"model input: {pre.enhancement} preprocessing was not applied"))
    if not di.tensor_input and pre.source == "default":
        flags.append(Flag("preprocessing_assumed", f"the model does not declare its "
                          f"preprocessing; the library default ({pre.enhancement}) was applied: "
                          "pass preprocessing='none' (rbf bench --preprocessing none) if it was "
                          "trained on plain crops"))
    return flags
