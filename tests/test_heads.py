"""The four heads: decisions, class views, losses and the checks of a model's output."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robustbench_fundus.errors import RBFError
from robustbench_fundus.heads import (HEADS, check_output, fitting_heads, make_head,
                                      parse_head_options, resolve_head)

WIDTH = {"classification": 5, "regression": 1, "ordinal": 4, "binary": 1}


def _outputs(name, n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(n, WIDTH[name], generator=g) * 3
    if name == "regression":
        out = torch.rand(n, 1, generator=g) * 5.5 - 0.5
    if name == "ordinal":  # a trained cumulative head: decreasing logits
        out = out.sort(dim=1, descending=True).values
    return out


def _decode_numpy(name, out, head):
    """The decision, computed here without the library."""
    o = out.numpy()
    if name == "classification":
        return o.argmax(1)
    if name == "regression":
        return (o[:, :1] > np.asarray(head.thresholds)[None]).sum(1)
    if name == "ordinal":
        return (1 / (1 + np.exp(-o)) > 0.5).sum(1)
    return (o[:, 0] > 0).astype(int)


@pytest.mark.parametrize("name", HEADS)
def test_decode_and_class_view_agree(name):
    head = make_head(name)
    out = _outputs(name)
    dec = head.decode(out)
    assert dec.tolist() == _decode_numpy(name, out, head).tolist()
    assert torch.equal(head.class_view(out).argmax(1), dec)
    assert head.class_view(out).shape == (out.shape[0], head.n_labels)
    # non-finite rows are never a decision
    bad = out.clone()
    bad[0, 0] = float("nan")
    assert head.decode(bad)[0] == -1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-10, 10, allow_nan=False, width=32), min_size=1, max_size=1),
       st.lists(st.floats(0.2, 2.0), min_size=4, max_size=4))
def test_regression_margin_is_positive_exactly_inside_the_grade_interval(score, gaps):
    t = np.cumsum(gaps) - 1.0
    head = make_head("regression", thresholds=tuple(float(v) for v in t))
    out = torch.tensor([score])
    g = int(head.decode(out))
    for y in range(5):
        m = float(head.class_view(out)[0, y])
        assert (m > 0) == (y == g) or m == 0  # a score exactly on a threshold: margin 0
    # the attack loss ascends towards the nearest threshold away from the true grade
    x = out.clone().requires_grad_(True)
    head.attack_loss(x, torch.tensor([g])).backward()
    lo, hi = ([-np.inf] + list(t))[g], (list(t) + [np.inf])[g]
    towards_hi = (hi - score[0]) < (score[0] - lo)
    assert (float(x.grad) > 0) == towards_hi


def test_binary_labels_and_losses():
    head = make_head("binary")
    grades = torch.tensor([0, 1, 2, 3, 4])
    assert head.labels(grades).tolist() == [0, 0, 1, 1, 1]
    assert make_head("binary", threshold=3).labels(grades).tolist() == [0, 0, 0, 1, 1]
    z = torch.tensor([[1.5], [-0.3]])
    y = torch.tensor([1, 0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z[:, 0], y.float(),
                                                               reduction="sum")
    assert float(head.attack_loss(z, y)) == pytest.approx(float(bce), rel=1e-6)
    two = torch.tensor([[0.2, 1.0], [1.0, -1.0]])
    assert head.decode(two).tolist() == [1, 0]


def test_ordinal_loss_is_the_sum_of_binary_cross_entropies():
    head = make_head("ordinal")
    z = torch.tensor([[2.0, 0.5, -1.0, -3.0]])
    y = torch.tensor([2])
    t = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    want = torch.nn.functional.binary_cross_entropy_with_logits(z, t, reduction="sum")
    assert float(head.attack_loss(z, y)) == pytest.approx(float(want))
    p = head.grade_probs(z)
    assert p.shape == (1, 5) and float(p.sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("out, match", [
    ((torch.zeros(2, 5), torch.zeros(2, 5)), "returned a tuple of 2 items"),
    (torch.zeros(2), r"shape \(2,\); it must be \(B, width\)"),
    (torch.zeros(2, 6), "outputs 6 values per image, the classification head needs 5; no head "
                        "fits"),
    (torch.zeros(2, 1), "heads that fit: regression, binary"),
    (torch.zeros(2, 5, dtype=torch.long), "must return float scores"),
])
def test_outputs_no_head_reads_are_one_line_errors(out, match):
    with pytest.raises(RBFError, match=match) as exc:
        check_output(out, make_head("classification"))
    assert "\n" not in str(exc.value)


def test_widths_options_and_resolution():
    assert fitting_heads(1) == ["regression", "binary"] and fitting_heads(6) == []
    assert make_head("regression", thresholds="0.4,1.4,2.6,3.5").thresholds == (0.4, 1.4, 2.6, 3.5)
    with pytest.raises(RBFError, match="increasing"):
        make_head("regression", thresholds=(1, 0.5, 2, 3))
    with pytest.raises(RBFError, match="has no option 'thresholds'"):
        make_head("binary", thresholds="1,2")
    with pytest.raises(RBFError, match="unknown; use one of"):
        make_head("softmax")
    assert parse_head_options(["thresholds=1,2,3,4"]) == {"thresholds": "1,2,3,4"}
    with pytest.raises(RBFError, match="KEY=VALUE"):
        parse_head_options(["thresholds"])

    class Declares(torch.nn.Module):
        head = "ordinal"
    assert resolve_head(Declares()).name == "ordinal"
    assert resolve_head(torch.nn.Identity()).name == "classification"
    assert resolve_head(Declares(), "binary", {"threshold": 3}).threshold == 3
