import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sklearn import metrics as skm

from robustbench_fundus.metrics import (
    ClassificationMetrics, accuracy_score, area_under_success_curve, balanced_accuracy_score,
    cohen_kappa_quadratic, confusion_matrix, eps_at_success, per_class_recall)

labels = st.lists(st.integers(0, 4), min_size=1, max_size=200)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_agrees_with_scikit_learn(data):
    t = np.array(data.draw(labels))
    p = np.array(data.draw(st.lists(st.integers(0, 4), min_size=len(t), max_size=len(t))))
    np.testing.assert_array_equal(confusion_matrix(t, p), skm.confusion_matrix(t, p, labels=range(5)))
    assert accuracy_score(t, p) == pytest.approx(skm.accuracy_score(t, p))
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bal = skm.balanced_accuracy_score(t, p)
            kap = skm.cohen_kappa_score(t, p, weights="quadratic", labels=list(range(5)))
    assert balanced_accuracy_score(t, p) == pytest.approx(bal)
    if np.isnan(kap):
        assert np.isnan(cohen_kappa_quadratic(t, p))
    else:
        assert cohen_kappa_quadratic(t, p) == pytest.approx(kap, abs=1e-12)
    rec = per_class_recall(t, p)
    present = np.isin(np.arange(5), t)
    np.testing.assert_allclose(rec[present],
                               skm.recall_score(t, p, labels=np.arange(5)[present], average=None,
                                                zero_division=0))


def test_confusion_sums_across_batches():
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    whole = confusion_matrix(t, p)
    parts = confusion_matrix(t[:101], p[:101]) + confusion_matrix(t[101:], p[101:])
    np.testing.assert_array_equal(whole, parts)
    m = ClassificationMetrics.from_confusion(parts)
    assert m.n == 300 and m.kappa == pytest.approx(skm.cohen_kappa_score(t, p, weights="quadratic"))


def test_label_out_of_range():
    with pytest.raises(ValueError, match="0..4"):
        confusion_matrix([0, 5], [0, 1])


def test_eps_at_success_interpolates_and_handles_never():
    eps = [1, 2, 4]
    assert eps_at_success(eps, [0.2, 0.4, 0.8]) == pytest.approx(2.5)
    assert eps_at_success(eps, [0.6, 0.7, 0.9]) == pytest.approx(1 / 0.6 * 0.5)
    assert eps_at_success(eps, [0.1, 0.2, 0.3]) is None


def test_area_under_success_curve():
    assert area_under_success_curve([1, 2], [1.0, 1.0]) == pytest.approx(0.75)
    assert area_under_success_curve([1, 2], [0.0, 0.0]) == 0.0
    assert 0 <= area_under_success_curve([0.5, 1, 8], [0.1, 0.3, 0.9]) <= 1


def test_area_under_success_curve_interpolates_at_eps_max():
    # success 0 at eps 0, 1.0 at eps 2: truncating at eps 1 must keep the ramp up to 0.5
    # (area 0.25 over a range of 1), not drop the segment past the last point below eps_max
    assert area_under_success_curve([2], [1.0], eps_max=1.0) == pytest.approx(0.25)
    assert area_under_success_curve([1, 2], [0.5, 1.0], eps_max=1.5) == pytest.approx(
        (0.25 + (0.5 + 0.75) / 2 * 0.5) / 1.5)
    # at a measured eps: the same as measuring only up to it
    assert area_under_success_curve([1, 2, 4], [0.2, 0.6, 1.0], eps_max=2) == pytest.approx(
        area_under_success_curve([1, 2], [0.2, 0.6]))
    # beyond the last point: flat continuation
    assert area_under_success_curve([1], [1.0], eps_max=2) == pytest.approx(0.75)


def test_area_under_success_curve_continuous_in_eps_max():
    e, s = [0.5, 1, 2, 4], [0.1, 0.4, 0.7, 0.9]
    vals = [area_under_success_curve(e, s, eps_max=t) * t for t in np.linspace(0.3, 5, 60)]
    # the un-normalised area grows continuously and monotonically with eps_max
    assert all(b >= a - 1e-12 for a, b in zip(vals, vals[1:]))
    assert max(b - a for a, b in zip(vals, vals[1:])) < 0.1
