"""Smoke test of benchmarks/bench_gpu.py on the CPU with tiny settings (tiny_cnn, 4 images at
64 px): both settings run, the JSON and markdown are written, and the time budget adds up."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_gpu.py"
TINY = ["--device", "cpu", "--n", "4", "--size", "64", "--batch", "4", "--arch", "tiny_cnn",
        "--tput-seconds", "0.1", "--threads", "1"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture()
def threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_both_settings_on_cpu(bench, tmp_path, threads):
    # --data auto: the real photographs when present, else synthetic images
    res = bench.run(TINY + ["--out-dir", str(tmp_path)])
    data = json.loads((tmp_path / "gpu_cpu.json").read_text())
    md = (tmp_path / "gpu_cpu.md").read_text()
    assert data["card"] == "cpu" and data["device"] == "cpu"
    assert data["data"]["kind"] == ("folder" if (bench.REAL / "labels.csv").is_file()
                                    else "synthetic")
    assert set(data["settings"]) == {"fp32", "bf16cl"} and not data["skipped"]
    assert data["settings"]["bf16cl"]["precision"]["forward"] == "bf16-autocast"
    assert data["settings"]["fp32"]["precision"]["forward"] == "float32"
    for name, s in data["settings"].items():
        assert 0 < s["pipeline_efficiency"] <= 1, name
        assert s["images_per_s"] > 0 and s["seconds"] > 0, name
        assert s["n"] == 4 and s["images_evaluated"] == 4, name
        assert set(s["stages_s"]) == {"decode_geometry", "preprocessing", "corruption",
                                      "model_forward", "attack", "metrics_store", "saliency",
                                      "other"}
        total = sum(s["stages_s"].values())
        assert total == pytest.approx(s["total_s"], rel=0.02), name
        assert total == pytest.approx(s["seconds"], rel=0.02), name
        t = s["model_throughput"]
        assert t["fwd_images_per_s"] > 0 and t["fwdbwd_images_per_s"] > 0, name
        assert s["passes"]["fwd_images_counted"] >= 4 * 17, name
        assert s["ideal_s"] > 0 and s["ideal_s_upper_bound"] > 0, name
        assert [round(a["eps"] * 255, 2) for a in s["attacks"]] == [0.5, 1, 2, 2.5, 4, 8]
        assert f"## {name}:" in md
    assert "PGD-10 x 6 eps" in md and "| pipeline efficiency" in md
    assert res["paths"] == [str(tmp_path / "gpu_cpu.json"), str(tmp_path / "gpu_cpu.md")]


def test_max_seconds_skips_the_next_setting(bench, tmp_path, threads):
    bench.run(TINY + ["--data", "synthetic", "--max-seconds", "0", "--out-dir", str(tmp_path)])
    data = json.loads((tmp_path / "gpu_cpu.json").read_text())
    assert list(data["settings"]) == ["fp32"] and data["data"]["kind"] == "synthetic"
    assert "--max-seconds" in data["skipped"]["bf16cl"]
    assert "## bf16cl: skipped" in (tmp_path / "gpu_cpu.md").read_text()


def test_slug(bench):
    assert bench.slug("NVIDIA H200") == "nvidia-h200"
    assert bench.slug("NVIDIA GeForce RTX 4090 (Laptop)") == "nvidia-geforce-rtx-4090-laptop"
