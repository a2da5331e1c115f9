"""The screenshot of the html leaderboard report in docs/bench.md: the bundled demo model and a
model that always predicts grade 0, each benchmarked like the README's first command (64
synthetic images at 128 px, the four fundus corruptions at severities 1-4, PGD-10 at six eps),
rendered by `rbf leaderboard --format html` and opened in headless Chromium at 1400x900.

    .venv/bin/python docs/make_figures_report.py [STORE]

STORE (optional): a results store to keep the runs in; a second call with it reads them back
instead of benchmarking again.

Needs chromium, chromium-driver and selenium (see tests/bench/test_bench_html_browser.py).
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "bench"))

from _leaderboard_stores import ConstantGrade  # noqa: E402
from test_bench_html_browser import start_browser  # noqa: E402

from robustbench_fundus import evaluate  # noqa: E402
from robustbench_fundus.cli import main as rbf  # noqa: E402


def main() -> None:
    torch.set_num_threads(2)
    out = HERE / "img" / "leaderboard_report.png"
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp) / "results.sqlite"
        t0 = time.perf_counter()
        evaluate(None, None, store=store, name="demo")              # the README's first command
        evaluate(ConstantGrade(0, size=128, preprocessing="graham"), None, store=store,
                 name="always-grade-0")
        print(f"benchmarked in {time.perf_counter() - t0:.0f} s")
        page = Path(tmp) / "leaderboard.html"
        assert rbf(["leaderboard", "--store", str(store), "--format", "html", "--out",
                    str(page), "--no-plots"]) == 0
        driver = start_browser(Path(tmp) / "profile", 1400, 900)
        try:
            driver.get(page.as_uri())
            driver.save_screenshot(str(out))
        finally:
            driver.quit()
    print("wrote", out)


if __name__ == "__main__":
    main()
