"""The screening view: referable-DR decisions, AUROC, calibration, the referral curve,
intervals and the screening card, for clean, corrupted and attacked images, each checked
against scikit-learn, scipy or a computation here from the raw model outputs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import binomtest
from sklearn.metrics import (cohen_kappa_score, precision_score, recall_score, roc_auc_score)

from _bench_helpers import tiny_model
from robustbench_fundus import evaluate
from robustbench_fundus.attacks import get_attack
from robustbench_fundus.bench import DataOptions, RunOptions
from robustbench_fundus.bench.resolve import DEFAULT_SYNTH_SEED
from robustbench_fundus.corruptions import get_corruption
from robustbench_fundus.heads import ReferralHead, make_head
from robustbench_fundus.metrics.screening import auroc_from_hist, paired_difference, wilson
from robustbench_fundus.preprocessing import resolve_preprocessing

SIZE, N = 32, 40
EPS = (1 / 255, 4 / 255)


@pytest.fixture(scope="module")
def run():
    torch.set_num_threads(1)
    m = tiny_model(SIZE, seed=6)
    rep = evaluate(m, f"synthetic:{N}", corruptions="motion_blur,over_exposure",
                   severities="1,4", attack="pgd", eps=[f"{e * 255:g}/255" for e in EPS],
                   steps=3, referral_flip=True, data_options=DataOptions(size=SIZE),
                   run=RunOptions(batch_size=16, chunk_size=24))
    from robustbench_fundus.data.dataset import collate
    from robustbench_fundus.data.synth import SyntheticDataset
    b = collate([SyntheticDataset(N, SIZE, seed=DEFAULT_SYNTH_SEED)[i] for i in range(N)])
    x = b["image"].float() / 255.0
    pre = resolve_preprocessing(m)
    return m, rep, rep.to_dict(), x, b["label"], b["index"], pre, pre.geometry(x)


def _wilson_scipy(k, n):
    ci = binomtest(k, n).proportion_ci(method="wilson")
    return ci.low, ci.high


def _ece(probs, y, bins=15):
    conf, top = probs.max(1), probs.argmax(1)
    b = np.minimum((conf * bins).astype(int), bins - 1)
    e = 0.0
    for k in range(bins):
        sel = b == k
        if sel.any():
            e += sel.mean() * abs(conf[sel].mean() - (top[sel] == y[sel]).mean())
    return e


def _check_block(d, out: torch.Tensor, grades: np.ndarray):
    """Every screening figure of one report row against an independent computation."""
    probs = torch.softmax(out, 1).numpy()
    pred = probs.argmax(1)
    y_ref, p_ref = grades >= 2, pred >= 2
    r = d["referable"]
    assert r["threshold"] == 2
    assert r["sensitivity"] == pytest.approx(recall_score(y_ref, p_ref, zero_division=0))
    assert r["specificity"] == pytest.approx(recall_score(~y_ref, ~p_ref, zero_division=0))
    if p_ref.any():
        assert r["ppv"] == pytest.approx(precision_score(y_ref, p_ref))
    if (~p_ref).any():
        assert r["npv"] == pytest.approx(precision_score(~y_ref, ~p_ref))
    k, n = int((y_ref & p_ref).sum()), int(y_ref.sum())
    assert r["sensitivity_n"] == n
    lo, hi = _wilson_scipy(k, n)
    assert (r["sensitivity_ci_low"], r["sensitivity_ci_high"]) == pytest.approx((lo, hi))
    for name in ("specificity", "ppv", "npv"):
        if r[name] is None:  # no denominator (e.g. no eye referred): no interval either
            assert r[f"{name}_ci_low"] is None and r[f"{name}_n"] == 0
        else:
            assert r[f"{name}_ci_low"] <= r[name] <= r[f"{name}_ci_high"]
    score = probs[:, 2:].sum(1)
    assert r["auroc"] == pytest.approx(roc_auc_score(y_ref, score), abs=0.002)
    vt = d["vision_threatening"]
    assert vt["threshold"] == 3 and vt["sensitivity_n"] == int((grades >= 3).sum())
    c = d["calibration"]
    assert c["ece"] == pytest.approx(_ece(probs, grades), abs=1e-6)
    brier = ((probs - np.eye(5)[grades]) ** 2).sum(1).mean()
    assert c["brier"] == pytest.approx(brier, abs=1e-6)
    assert d["accuracy_ci_low"] <= d["accuracy"] <= d["accuracy_ci_high"]
    assert d["kappa"] == pytest.approx(cohen_kappa_score(grades, pred, weights="quadratic",
                                                         labels=range(5)))
    assert d["kappa_ci_low"] is not None and d["kappa_ci_low"] <= d["kappa_ci_high"]
    curve = d["referral_curve"]
    assert curve[0]["referred"] == 0 and curve[0]["retained"] == pytest.approx(1)
    assert curve[0]["accuracy"] == pytest.approx((pred == grades).mean())
    # refer the least confident 20%: the most confident 80% (by the top probability, ranked
    # by its logit z_top - logsumexp(others), which float32 probabilities round away) remain
    z = out.double().numpy()
    zt = z.max(1)
    others = np.where(z == zt[:, None], -np.inf, z)
    conf = zt - np.log(np.exp(others - zt[:, None]).sum(1)) - zt
    order = np.argsort(-conf, kind="stable")
    keep = order[: int(round(0.8 * len(conf)))]
    pt = next(p for p in curve if p["referred"] == 0.2)
    assert pt["retained"] == pytest.approx(0.8, abs=1e-9)
    assert pt["accuracy"] == pytest.approx((pred[keep] == grades[keep]).mean(), abs=1 / 32)
    return pred


def test_clean_corruption_and_attack_rows_equal_independent_computations(run):
    m, rep, d, x, grades, ids, pre, geom = run
    g = grades.numpy()
    with torch.no_grad():
        clean_out = m(pre.model_input(x, geom))
    clean_pred = _check_block(d["clean"], clean_out, g)
    for c in d["corruptions"]:
        xc = get_corruption(c["name"])(x, c["severity"], seed=0, sample_ids=ids, geom=geom)
        with torch.no_grad():
            out = m(pre.model_input(xc, geom))
        pred = _check_block(c, out, g)
        # the paired 2x2 table and the drop's Newcombe interval
        cc, cr = clean_pred == g, pred == g
        want = {"both_correct": int((cc & cr).sum()), "clean_only": int((cc & ~cr).sum()),
                "condition_only": int((~cc & cr).sum()), "neither": int((~cc & ~cr).sum())}
        assert c["paired"] == want
        dd, lo, hi = paired_difference(*want.values())
        assert c["drop"] == pytest.approx(dd) and (c["drop_ci_low"], c["drop_ci_high"]) == \
            pytest.approx((lo, hi))
        assert c["drop_ci_low"] <= c["drop"] <= c["drop_ci_high"]
    res = get_attack("pgd", steps=3)(m, pre.model_input(x, geom), grades, list(EPS), seed=0,
                                    sample_ids=ids, keep_adv=True)
    for a, r in zip(d["attacks"], res):
        with torch.no_grad():
            out = m(r.x_adv)
        pred = _check_block(a, out, g)
        assert a["confusion"] == np.histogram2d(g, pred, bins=[np.arange(6)] * 2)[0].astype(
            int).tolist()
        shift = pred - clean_pred
        assert a["grade_shift"] == {"mean_abs": pytest.approx(np.abs(shift).mean()),
                                    "n_under_graded": int((shift < 0).sum()),
                                    "n_over_graded": int((shift > 0).sum()), "n": N}
        lo, hi = _wilson_scipy(a["n_broken"], a["n_attacked"])
        assert (a["success_rate_ci_low"], a["success_rate_ci_high"]) == pytest.approx((lo, hi))


def test_referral_flips_count_missed_and_over_referrals(run):
    m, rep, d, x, grades, ids, pre, geom = run
    head = ReferralHead(base=make_head("classification"), threshold=2)
    y = head.labels(grades)
    res = get_attack("pgd", steps=3)(m, pre.model_input(x, geom), y, list(EPS), seed=0,
                                    sample_ids=ids, head=head)
    assert len(d["referral_flips"]) == len(EPS)
    for f, r in zip(d["referral_flips"], res):
        ref = y == 1
        assert f["n_referable"] == int(ref.sum())
        assert f["n_referable_attacked"] == int((ref & res.clean_correct).sum())
        assert f["n_missed"] == int((ref & r.success).sum())
        assert f["n_over_referred"] == int((~ref & r.success).sum())
        if f["n_referable_attacked"]:
            assert f["missed_referral_rate"] == pytest.approx(
                f["n_missed"] / f["n_referable_attacked"])
    rates = [f["missed_referral_rate"] for f in d["referral_flips"]
             if f["missed_referral_rate"] is not None]
    assert rates == sorted(rates)               # monotone in eps, as every sweep


def test_screening_card_and_flag(run):
    m, rep, d, *_ = run
    s = d["screening"]
    assert s["line"] == {"sensitivity": 0.85, "specificity": 0.825} and s["threshold"] == 2
    assert s["clean"]["sensitivity"] == d["clean"]["referable"]["sensitivity"]
    worst = min(d["corruptions"], key=lambda c: (c["referable"]["sensitivity"],
                                                 c["referable"]["specificity"]))
    assert (s["worst_corruption"]["name"], s["worst_corruption"]["severity"]) == \
        (worst["name"], worst["severity"])
    crossed = [a for a in d["attacks"] if a["referable"]["sensitivity"] < 0.85 or
               a["referable"]["specificity"] < 0.825]
    bk = s["breaking_eps"]["pgd_linf_3"]
    assert (bk is None) == (not crossed) and (bk is None or bk["eps"] == crossed[0]["eps"])
    flags = {f["code"]: f for f in d["flags"]}
    assert ("screening_line_crossed" in flags) == bool(s["crossed"])
    assert "95% CI" in flags["small_sample"]["message"]


def test_threshold_is_a_report_choice_and_the_store_keeps_exact_counts(run, tmp_path):
    m = run[0]
    kw = dict(corruptions="over_exposure", severities="4", attack=None,
              data_options=DataOptions(size=SIZE), run=RunOptions(batch_size=8, chunk_size=8))
    store = tmp_path / "r.sqlite"
    a = evaluate(m, "synthetic:16", store=store, **kw).to_dict()
    b = evaluate(m, "synthetic:16", store=store, referable_threshold=3, **kw)
    assert b.provenance["conditions_computed"] == 0       # read from the store's counts
    d = b.to_dict()
    assert d["clean"]["referable"]["threshold"] == 3 and "vision_threatening" not in d["clean"]
    assert d["clean"]["referable"] == a["clean"]["vision_threatening"] | {"threshold": 3}
    one = evaluate(m, "synthetic:16", **kw).to_dict()   # no store, one pass
    assert one["clean"]["referable"] == a["clean"]["referable"]
    assert one["clean"]["calibration"] == a["clean"]["calibration"]
    assert one["clean"]["kappa_ci_low"] == a["clean"]["kappa_ci_low"]   # seeded bootstrap


def test_interval_helpers():
    for k, n in ((0, 10), (3, 10), (10, 10), (81, 263)):
        assert wilson(k, n) == pytest.approx(_wilson_scipy(k, n))
    assert wilson(0, 0) == (None, None)
    d, lo, hi = paired_difference(36, 12, 2, 0)
    assert d == pytest.approx(0.2) and lo < 0.2 < hi and -1 <= lo and hi <= 1
    # an independent transcription of Newcombe (1998) method 10 (as in R's biostatUZH)
    a, b, c, e = 36, 12, 2, 0
    n = a + b + c + e
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n)
    l2, u2 = wilson(a + c, n)
    B = a * e - b * c
    C = B - n / 2 if B > n / 2 else (B if B < 0 else 0)
    phi = C / math.sqrt((a + b) * (c + e) * (a + c) * (b + e))
    lo2 = p1 - p2 - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    hi2 = p1 - p2 + math.sqrt((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2)
    assert (lo, hi) == pytest.approx((lo2, hi2))
    # AUROC from histograms equals the rank formula on the binned scores
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 500), rng.normal(0, 1, 700)
    bins = np.linspace(-6, 6, 1025)
    hp, hn = np.histogram(pos, bins)[0], np.histogram(neg, bins)[0]
    y = np.r_[np.ones(500), np.zeros(700)]
    assert auroc_from_hist(hp, hn) == pytest.approx(roc_auc_score(y, np.r_[pos, neg]),
                                                    abs=0.002)


def test_leaderboard_entries_carry_the_clean_screening_figures_of_the_report(tmp_path):
    """The store keeps counts; the leaderboard's referable sensitivity and specificity (with
    their Wilson intervals) are the report's, recomputed from those counts."""
    from robustbench_fundus.bench.columns import screening_columns
    from robustbench_fundus.bench.leaderboard import load_entries

    torch.set_num_threads(1)
    store = tmp_path / "s.sqlite"
    rep = evaluate(tiny_model(SIZE, seed=6), f"synthetic:{N}", corruptions="none",
                   attack="none", store=store, data_options=DataOptions(size=SIZE),
                   run=RunOptions(batch_size=16))
    (e,) = load_entries(str(store))
    ref = rep.clean.screening["referable"]
    for m in ("sensitivity", "specificity"):
        got = e.screening[m]
        assert got["value"] == pytest.approx(ref[m])
        assert (got["low"], got["high"]) == pytest.approx((ref[f"{m}_ci_low"], ref[f"{m}_ci_high"]))
    keys = [c.key for c in screening_columns([e])]
    assert keys == ["referable_sensitivity", "referable_specificity"]
