"""The html report in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by selenium) opens the report of a two-model store and checks that
a click on a header sorts the rows (numbers as numbers, missing values last), that every image
decodes, that the page does not scroll sideways at 1400x900 while the table scrolls in its own
box with the model column frozen, and that the console has no errors. A screenshot is saved in
the test's folder. Without chromium, its driver or selenium, the test skips with the reason."""
from __future__ import annotations

import shutil
import time

import pytest

from _leaderboard_stores import two_model_store
from robustbench_fundus.cli import main

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser",
                                               "google-chrome")) if p), None)
DRIVER = shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:  # pragma: no cover - depends on the machine
    webdriver = None

pytestmark = pytest.mark.skipif(
    webdriver is None or CHROMIUM is None or DRIVER is None,
    reason="needs chromium, chromium-driver (apt-get install chromium chromium-driver) and "
           "selenium (pip install selenium)")

CHROME_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync")


def start_browser(profile, width: int = 1400, height: int = 900):
    """Headless Chromium with a fresh profile, a ``width`` x ``height`` window and the browser
    console kept for :meth:`get_log`."""
    opts = webdriver.ChromeOptions()
    for a in CHROME_ARGS:
        opts.add_argument(a)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_argument(f"--window-size={width},{height}")
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_window_size(width, height)
    return driver


def _click(driver, el) -> None:
    """A real click on ``el``, scrolled to the middle of its box first (as a reader would)."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'center'})", el)
    el.click()


def _order(driver, table_id: str) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#' + arguments[0] + ' tbody tr'))"
        ".map(r => r.getAttribute('data-model'))", table_id)


def _values(driver, table_id: str, key: str) -> dict[str, float | None]:
    return driver.execute_script("""
        const t = document.getElementById(arguments[0]);
        const col = +t.querySelector('th[data-key="' + arguments[1] + '"]').dataset.col;
        const out = {};
        for (const r of t.tBodies[0].rows) {
          const v = r.cells[col].getAttribute('data-v');
          out[r.getAttribute('data-model')] = (v === null || v === '') ? null : parseFloat(v);
        }
        return out;""", table_id, key)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("report")
    store = two_model_store(folder / "r.sqlite")
    torch.set_num_threads(n)
    out = folder / "report.html"
    assert main(["leaderboard", "--store", str(store), "--format", "html", "--out", str(out),
                 "--no-plots"]) == 0
    return out


def test_report_in_a_real_browser(report, tmp_path):
    t0 = time.perf_counter()
    text = report.read_text()
    # self-contained: nothing is fetched from anywhere
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in text and 'src="data:' in text
    driver = start_browser(tmp_path / "profile")
    try:
        driver.get(report.as_uri())
        assert driver.execute_script("return document.readyState") == "complete"
        # every image decoded
        imgs = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
        assert len(imgs) >= 4, imgs  # two group plots + two charts per model
        assert all(ok and w > 0 for _, ok, w in imgs), imgs
        # no sideways scrolling of the page at 1400 px; the table scrolls inside its box
        assert driver.execute_script("return window.innerWidth") <= 1400
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 1400
        box = driver.find_element(By.CSS_SELECTOR, "#group-1 .scroll")
        inner = driver.execute_script("return [arguments[0].scrollWidth, arguments[0].clientWidth]",
                                      box)
        assert inner[0] > inner[1], "the table should be wider than its box in this store"
        # the model column stays put when the box scrolls
        cell = driver.find_element(By.CSS_SELECTOR, "#table-1 tbody tr th.sticky")
        x0 = cell.rect["x"]
        driver.execute_script("arguments[0].scrollLeft = 600", box)
        assert driver.execute_script("return arguments[0].scrollLeft", box) > 0
        assert abs(cell.rect["x"] - x0) < 1.0

        # the default order: by mean severity-4 kappa, higher first, its header marked
        head = driver.find_element(By.CSS_SELECTOR, '#table-1 th[data-key="mean_sev4_kappa"]')
        assert head.get_attribute("aria-sort") == "descending"
        k4 = _values(driver, "table-1", "mean_sev4_kappa")
        assert _order(driver, "table-1") == sorted(k4, key=lambda m: -k4[m])

        # a click sorts by that column: higher first for accuracy, then reversed
        acc_head = driver.find_element(By.CSS_SELECTOR, '#table-1 th[data-key="kappa"]')
        kappa = _values(driver, "table-1", "kappa")
        assert len(set(kappa.values())) == 2
        _click(driver, acc_head)
        assert _order(driver, "table-1") == sorted(kappa, key=lambda m: -kappa[m])
        assert acc_head.get_attribute("aria-sort") == "descending"
        assert head.get_attribute("aria-sort") == "none"
        _click(driver, acc_head)
        assert _order(driver, "table-1") == sorted(kappa, key=lambda m: kappa[m])
        assert acc_head.get_attribute("aria-sort") == "ascending"
        # lower is better for a drop: its first click puts the smallest first
        drop = driver.find_element(By.CSS_SELECTOR, '#table-1 th[data-key="mean_sev4_drop"]')
        d4 = _values(driver, "table-1", "mean_sev4_drop")
        _click(driver, drop)
        assert _order(driver, "table-1") == sorted(d4, key=lambda m: d4[m])
        # a missing value sorts last in both directions (saliency: model-a only)
        sal = driver.find_element(By.CSS_SELECTOR, '#table-1 th[data-key="saliency_disc_share"]')
        assert _values(driver, "table-1", "saliency_disc_share")["model-b"] is None
        for _ in range(2):
            _click(driver, sal)
            assert _order(driver, "table-1")[-1] == "model-b"
        # text columns sort A-Z first
        name = driver.find_element(By.CSS_SELECTOR, '#table-1 th[data-key="model"]')
        _click(driver, name)
        assert _order(driver, "table-1") == ["model-a", "model-b"]
        _click(driver, name)
        assert _order(driver, "table-1") == ["model-b", "model-a"]

        # headers are human and carry their definition
        tips = driver.execute_script(
            "return Array.from(document.querySelectorAll('#table-1 thead tr.cols th'))"
            ".map(h => [h.textContent, h.title])")
        assert all(t and len(tip) > 20 for t, tip in tips), tips
        assert not any("_" in t for t, _ in tips), tips

        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert errors == []
        driver.execute_script("window.scrollTo(0, 0)")
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10000
    finally:
        driver.quit()
    print(f"browser check: {time.perf_counter() - t0:.1f} s")
