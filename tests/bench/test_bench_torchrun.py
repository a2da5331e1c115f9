"""Must-show 3: 2 CPU processes under torchrun (gloo) on an odd number of images give exactly
the numbers of a one-process run (run in-process while torchrun starts up)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from _bench_helpers import assert_same, tiny_checkpoint
from robustbench_fundus.cli import main

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sections(out: str) -> dict:
    rep = json.loads(out)
    for sec in [rep["clean"], *rep["corruptions"], *rep["attacks"]]:
        sec.pop("seconds")
    return {k: rep[k] for k in ("clean", "corruptions", "attacks", "summary", "dataset")}


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors", size=32, seed=3)
    args = ["bench", "--model", str(ckpt), "--data", "synthetic:7", "--corruptions",
            "motion_blur,light_leakage", "--severities", "2,4", "--eps", "1/255,4/255",
            "--steps", "2", "--batch-size", "2", "--chunk-size", "3", "--json",
            "--no-progress", "--device", "cpu"]
    # two processes under torchrun (gloo) ...
    two = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                            "2", "--master-addr", "127.0.0.1", "--master-port",
                            str(_free_port()), "-m", "robustbench_fundus", *args,
                            "--store", str(tmp_path / "two.sqlite")],
                           env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # ... while the one-process reference runs here, in-process
    try:
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            assert main([*args, "--store", str(tmp_path / "one.sqlite")]) == 0
        finally:
            torch.set_num_threads(n)
        one_out = capsys.readouterr().out
        two_out, two_err = two.communicate(timeout=300)
    finally:
        if two.poll() is None:
            two.kill()
            two.wait()
    assert two.returncode == 0, two_err[-3000:]
    a, b = _sections(one_out), _sections(two_out)
    assert a["clean"]["n"] == 7
    # every count identical; the screening figures (AUROC, ECE, Brier, intervals) equal up to
    # the last digits of the model's float outputs, which depend on the batch composition
    assert_same(a, b)
    assert a["clean"]["confusion"] == b["clean"]["confusion"]
    for sec in ("referable", "calibration"):
        assert sec in a["clean"] and a["clean"][sec]["n" if sec == "calibration" else
                                                     "sensitivity_n"] is not None
    assert json.loads(two_out)["provenance"]["world_size"] == 2
    # rank 0 alone wrote the store, with the same rows
    import sqlite3
    q = "SELECT condition, n, accuracy, confusion, n_attacked, n_broken FROM results ORDER BY 1"
    r1 = sqlite3.connect(tmp_path / "one.sqlite").execute(q).fetchall()
    r2 = sqlite3.connect(tmp_path / "two.sqlite").execute(q).fetchall()
    assert r1 == r2 and len(r1) == 1 + 4 + 2
