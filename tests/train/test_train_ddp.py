"""Data-parallel training: two CPU processes under torchrun (gloo) train two steps."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import torch

from robustbench_fundus.models import load_model
from robustbench_fundus.train import last_path, load_train_state


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_cpu_processes_two_steps(tmp_path):
    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "robustbench_fundus", "train", "--arch", "tiny_cnn", "--data", "synthetic:12",
           "--size", "32", "--batch-size", "3", "--epochs", "1", "--max-steps", "2",
           "--device", "cpu", "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "x2 processes" in proc.stderr
    st = load_train_state(last_path(out))
    assert st["step"] == 2 and st["epoch"] == 1
    # each step saw 2 x 3 samples; the validation set (4 images) was counted once over both ranks
    assert st["history"][0]["val"]["n"] == 4
    model = load_model(out)
    assert model.meta["trained_with"]["world_size"] == 2
    for v in st["model"].values():
        assert torch.isfinite(v.float()).all()
