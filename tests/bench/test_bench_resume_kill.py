"""Must-show 2: a bench run killed (SIGKILL) at random points, several times, then rerun,
leaves a store and leaderboard identical to an uninterrupted run, with no duplicate rows.

The killed runs are `rbf bench` in child processes forked from the test process (torch already
imported, so no interpreter start-up per run), killed with SIGKILL by the parent."""
from __future__ import annotations

import multiprocessing as mp
import os
import random
import sqlite3
import sys
import time

import pytest
import torch

from _bench_helpers import tiny_checkpoint
from robustbench_fundus.bench import ResultStore, load_entries, render
from robustbench_fundus.cli import main

N_IMAGES = 20  # one chunk per image: about 0.05 s each here, so a run lasts about 1 s
ARGS = ["--data", f"synthetic:{N_IMAGES}", "--corruptions", "all", "--severities", "2,4",
        "--attack", "pgd", "--eps", "1/255,4/255", "--steps", "2", "--batch-size", "2",
        "--chunk-size", "1", "--no-progress", "--device", "cpu", "--json"]
VOLATILE = ("id", "created", "seconds")


def _cmd(ckpt, store):
    return ["bench", "--model", str(ckpt), "--store", str(store), *ARGS]


def _child(argv):
    """``rbf bench`` in a forked child: one thread, output to /dev/null, exit without cleanup."""
    torch.set_num_threads(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    sys.stdout = sys.stderr = open(os.devnull, "w")
    os._exit(main(argv))


def _rows(store):
    st = ResultStore(store)
    rows = [{k: v for k, v in r.items() if k not in VOLATILE} for r in st.results()]
    n_partials = st.count("partials")
    st.close()
    return rows, n_partials


def _progress(store) -> int:
    try:
        con = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)
        # monotone: finalising a condition deletes < 1000 partials and adds a result
        n = con.execute("SELECT (SELECT COUNT(*) FROM partials) + "
                        "1000 * (SELECT COUNT(*) FROM results)").fetchone()[0]
        con.close()
        return n
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run(tmp_path)
    finally:
        torch.set_num_threads(n_threads)


def _run(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors", size=32)
    ref = tmp_path / "ref.sqlite"
    assert main(_cmd(ckpt, ref)) == 0  # the uninterrupted reference, in-process
    # about one chunk (one image through the 11 conditions), from the reference's timings
    with ResultStore(ref) as st:
        chunk_s = max(0.02, sum(r["seconds"] for r in st.results()) / N_IMAGES)

    store = tmp_path / "killed.sqlite"
    rng = random.Random(1234)
    ctx = mp.get_context("fork")
    kills = 0
    progress = []
    for attempt in range(4):
        p = ctx.Process(target=_child, args=(_cmd(ckpt, store),))
        p.start()
        if attempt == 0:  # anywhere: start-up, model loading, first chunk
            time.sleep(rng.uniform(0.0, 0.3 + chunk_s))
        else:  # mid-run: just after a commit, or somewhere inside the next chunk
            before = _progress(store)
            t0 = time.time()
            while p.is_alive() and _progress(store) <= before and time.time() - t0 < 120:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.8 * chunk_s))
        if p.is_alive():
            p.kill()  # SIGKILL
            kills += 1
        p.join()
        progress.append(_progress(store))
    assert kills >= 3, f"the run finished before it could be killed ({progress})"
    assert main(_cmd(ckpt, store)) == 0  # the resuming run

    got, partials = _rows(store)
    want, _ = _rows(ref)
    assert partials == 0
    assert len(got) == 1 + 8 + 2  # one row per condition, no duplicates
    assert len({r["condition"] for r in got}) == len(got)
    assert got == want
    for fmt in ("md", "csv", "json"):
        assert render(load_entries(str(store)), fmt) == render(load_entries(str(ref)), fmt)
