"""Streaming data set / loader: items, worker processes, skipping unreadable images, sharding."""
from __future__ import annotations

import pytest
import torch

from _datastage_helpers import make_eyepacs, make_folders
from robustbench_fundus.data import (FundusDataset, dataset_fingerprint, make_loader,
                                     read_records)
from robustbench_fundus.errors import DataError


@pytest.fixture
def eyepacs(tmp_path):
    make_eyepacs(tmp_path / "d", n_patients=5)
    return read_records(tmp_path / "d")


def test_item_contract(eyepacs, tmp_path):
    ds = FundusDataset(eyepacs, size=32, cache_dir=tmp_path / "c")
    it = ds[3]
    assert it["image"].dtype == torch.uint8 and it["image"].shape == (3, 32, 32)
    assert it["label"] == eyepacs.records[3].label and it["index"] == 3
    assert it["id"] == eyepacs.records[3].image_id


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_covers_all_and_deterministic(eyepacs, tmp_path, workers):
    ds = FundusDataset(eyepacs, size=32, cache_dir=tmp_path / "c")
    ld = make_loader(ds, batch_size=3, num_workers=workers)
    batches = list(ld)
    idx = torch.cat([b["index"] for b in batches]).tolist()
    assert idx == list(range(10))
    imgs = torch.cat([b["image"] for b in batches])
    assert imgs.shape == (10, 3, 32, 32) and imgs.dtype == torch.uint8
    assert torch.cat([b["label"] for b in batches]).tolist() == ds.labels
    assert ld.n_skipped == 0 and ld.n_loaded == 10
    again = torch.cat([b["image"] for b in make_loader(ds, batch_size=4, num_workers=0)])
    assert torch.equal(imgs, again)  # independent of batching, workers and cache state


def test_second_pass_hits_cache(eyepacs, tmp_path):
    ds = FundusDataset(eyepacs, size=32, cache_dir=tmp_path / "c")
    first = make_loader(ds, batch_size=4, num_workers=0)
    list(first)
    second = make_loader(ds, batch_size=4, num_workers=0)
    list(second)
    assert first.cache_hits == 0 and second.cache_hits == 10


def test_unreadable_during_loading_skipped_and_counted(eyepacs, tmp_path):
    bad = eyepacs.records[4].path
    bad.write_bytes(bad.read_bytes()[:100])  # truncated after the records were read
    ds = FundusDataset(eyepacs, size=32, cache_dir=tmp_path / "c")
    ld = make_loader(ds, batch_size=4, num_workers=0)
    idx = [i for b in ld for i in b["index"].tolist()]
    assert 4 not in idx and len(idx) == 9
    assert ld.n_skipped == 1 and ld.skipped[0][0] == str(bad)
    strict = FundusDataset(eyepacs, size=32, cache_dir=tmp_path / "c", strict=True)
    with pytest.raises(DataError, match=bad.name):
        list(make_loader(strict, batch_size=4, num_workers=0))


def test_all_bad_batch_not_yielded(tmp_path):
    make_folders(tmp_path / "f", per_grade=1)
    rs = read_records(tmp_path / "f")
    for r in rs.records[:2]:
        r.path.write_bytes(b"")
    ld = make_loader(FundusDataset(rs, size=24, cache_dir=False), batch_size=2, num_workers=0)
    batches = list(ld)
    assert ld.n_skipped == 2 and sum(len(b["id"]) for b in batches) == 3
    assert all(len(b["id"]) > 0 for b in batches)


def test_shards_partition_and_shuffle(eyepacs):
    ds = FundusDataset(eyepacs, size=24, cache_dir=False)
    seen = []
    for rank in range(3):
        ld = make_loader(ds, batch_size=4, num_workers=0, shard=(rank, 3), shuffle=True, seed=5)
        seen += [i for b in ld for i in b["index"].tolist()]
    assert sorted(seen) == list(range(10))
    a = [i for b in make_loader(ds, 4, 0, shuffle=True, seed=5) for i in b["index"].tolist()]
    b = [i for b in make_loader(ds, 4, 0, shuffle=True, seed=5) for i in b["index"].tolist()]
    ld = make_loader(ds, 4, 0, shuffle=True, seed=5)
    ld.set_epoch(1)
    c = [i for b in ld for i in b["index"].tolist()]
    assert a == b and a != c and sorted(c) == list(range(10))


def test_fingerprint(eyepacs):
    fp = dataset_fingerprint(eyepacs)
    assert fp == dataset_fingerprint(list(reversed(eyepacs.records)))
    changed = list(eyepacs.records)
    r = changed[0]
    changed[0] = type(r)(r.image_id, r.path, (r.label + 1) % 5, r.subject)
    assert dataset_fingerprint(changed) != fp


def test_synthetic_writer_layout_reads_and_loads(tmp_path):
    synth = pytest.importorskip("robustbench_fundus.data.synth")
    out = synth.write_synthetic(tmp_path / "s", n=6, size=64, seed=1)
    rs = read_records(out, verify=True, progress=False)
    assert rs.layout == "eyepacs" and len(rs) == 6 and not rs.unreadable
    ds = FundusDataset(rs, size=48, cache_dir=tmp_path / "c")
    b = next(iter(make_loader(ds, batch_size=6, num_workers=0)))
    assert b["image"].shape == (6, 3, 48, 48) and b["label"].tolist() == ds.labels
    # the same collate serves SyntheticDataset (extra lesion_mask stacked)
    sd = synth.SyntheticDataset(3, 32, seed=0)
    sb = next(iter(make_loader(sd, batch_size=3, num_workers=0)))
    assert sb["image"].shape == (3, 3, 32, 32) and sb["lesion_mask"].shape == (3, 1, 32, 32)
