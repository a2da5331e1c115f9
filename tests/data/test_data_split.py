"""Stratified, subject-grouped split: grouping, stratification, determinism."""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robustbench_fundus.data import Record, split_records, subject_overlap
from robustbench_fundus.errors import RBFError


def _records(spec):
    """spec: list of (subject or None, [labels])."""
    out = []
    for s, (subj, labels) in enumerate(spec):
        for j, lab in enumerate(labels):
            iid = f"g{s}_{j}"
            out.append(Record(iid, Path(f"/x/{iid}.png"), lab, subj))
    return out


group_spec = st.lists(
    st.tuples(st.one_of(st.none(), st.sampled_from(["a", "b"])),
              st.lists(st.integers(0, 4), min_size=1, max_size=3)),
    min_size=1, max_size=120)


@settings(max_examples=40, deadline=None)
@given(spec=group_spec, seed=st.integers(0, 2**31), frac=st.sampled_from([0.2, 0.3, 0.5]))
def test_grouped_and_partition(spec, seed, frac):
    # make subject names unique per group (None stays None: each image its own group)
    spec = [(None if s is None else f"{s}{i}", labs) for i, (s, labs) in enumerate(spec)]
    recs = _records(spec)
    train, val = split_records(recs, val_fraction=frac, seed=seed)
    assert sorted(r.image_id for r in train + val) == sorted(r.image_id for r in recs)
    assert subject_overlap(train, val) == 0
    subj_train = {r.subject for r in train if r.subject}
    subj_val = {r.subject for r in val if r.subject}
    assert not subj_train & subj_val
    # order kept
    pos = {r.image_id: i for i, r in enumerate(recs)}
    assert [pos[r.image_id] for r in train] == sorted(pos[r.image_id] for r in train)


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(0, 300), min_size=5, max_size=5), seed=st.integers(0, 10**6),
       pair_fraction=st.floats(0, 1))
def test_stratified_per_grade(counts, seed, pair_fraction):
    """Each grade's validation share is 0.3 of it within the granularity of the groups (<=2)."""
    spec = []
    for g, c in enumerate(counts):
        n_pairs = int(c * pair_fraction) // 2
        spec += [(f"p{g}_{k}", [g, g]) for k in range(n_pairs)]
        spec += [(None, [g]) for _ in range(c - 2 * n_pairs)]
    if not spec:
        return
    recs = _records(spec)
    _, val = split_records(recs, val_fraction=0.3, seed=seed)
    vc = Counter(r.label for r in val)
    for g, c in enumerate(counts):
        assert abs(vc[g] - 0.3 * c) <= 2.0, (g, c, vc[g])


def test_mixed_pairs_stratified():
    """Subjects whose two eyes differ in grade (as in real data) still give a near-exact split."""
    rng = random.Random(0)
    spec = []
    for s in range(300):
        g = rng.choice([0] * 7 + [1, 2, 2, 3, 4])
        spec.append((f"s{s}", [g, min(4, g + rng.choice([0, 0, 0, 1]))]))
    recs = _records(spec)
    train, val = split_records(recs, seed=1)
    total = Counter(r.label for r in recs)
    vc = Counter(r.label for r in val)
    for g in total:
        assert abs(vc[g] / total[g] - 0.3) < 0.06, (g, vc[g], total[g])
    assert abs(len(val) / len(recs) - 0.3) < 0.02


@settings(max_examples=20, deadline=None)
@given(spec=group_spec, seed=st.integers(0, 1000), perm_seed=st.integers(0, 1000))
def test_deterministic_and_order_independent(spec, seed, perm_seed):
    spec = [(None if s is None else f"{s}{i}", labs) for i, (s, labs) in enumerate(spec)]
    recs = _records(spec)
    a = split_records(recs, seed=seed)
    b = split_records(list(recs), seed=seed)
    assert a == b
    shuffled = list(recs)
    random.Random(perm_seed).shuffle(shuffled)
    c = split_records(shuffled, seed=seed)
    assert {r.image_id for r in c[1]} == {r.image_id for r in a[1]}


def test_seed_changes_split():
    recs = _records([(None, [i % 5]) for i in range(200)])
    vals = {frozenset(r.image_id for r in split_records(recs, seed=s)[1]) for s in range(5)}
    assert len(vals) == 5


def test_bad_fraction():
    with pytest.raises(RBFError, match="val_fraction"):
        split_records(_records([(None, [0])]), val_fraction=1.2)


def test_empty():
    assert split_records([]) == ([], [])
