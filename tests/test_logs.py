"""The command line's logging: one stderr handler (INFO, WARNING with --quiet) and an optional
--log file taking everything, on every long command; set up again without stacking handlers,
removed when the command ends."""
from __future__ import annotations

import io
import logging
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustbench_fundus.cli import main
from robustbench_fundus.logs import (BAR_ATTR, LOGGER, close_logging, command_logging,
                                     setup_logging, stderr_to_log)

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))
from _bench_helpers import tiny_checkpoint  # noqa: E402

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) "
                   r"robustbench_fundus")


def _ours():
    return [h for h in logging.getLogger(LOGGER).handlers if getattr(h, "_rbf_cli_handler", 0)]


def test_terminal_and_file_handlers(tmp_path):
    log = logging.getLogger(f"{LOGGER}.test")
    term = io.StringIO()
    setup_logging(stream=io.StringIO())
    setup_logging(log_file=tmp_path / "sub" / "run.log", stream=term)
    try:
        assert len(_ours()) == 2                      # replaced, not stacked
        log.debug("a debug line")
        log.info("an info line")
        log.info("a bar line", extra={BAR_ATTR: True})
        logging.getLogger(f"{LOGGER}.warnings").warning("UserWarning: from a package")
        log.warning("a warning")
    finally:
        close_logging()
    assert _ours() == []
    assert term.getvalue().splitlines() == ["an info line", "a warning"]
    lines = (tmp_path / "sub" / "run.log").read_text().splitlines()
    assert all(STAMP.match(ln) for ln in lines), lines
    assert [ln.split(": ", 1)[1] for ln in lines] == [
        "a debug line", "an info line", "a bar line", "UserWarning: from a package",
        "a warning"]


def test_quiet_keeps_warnings_only():
    term = io.StringIO()
    setup_logging(quiet=True, stream=term)
    try:
        logging.getLogger(f"{LOGGER}.x").info("progress")
        logging.getLogger(f"{LOGGER}.x").warning("careful")
    finally:
        close_logging()
    assert term.getvalue() == "careful\n"


def test_command_logging_records_the_error_and_removes_its_handlers(tmp_path):
    path = tmp_path / "e.log"
    with pytest.raises(ValueError):
        with command_logging("bench", log_file=path) as log:
            log.info("working")
            raise ValueError("it broke\non two lines")
    assert _ours() == []
    text = path.read_text()
    assert "INFO robustbench_fundus.bench: working" in text
    assert "ERROR robustbench_fundus.bench: rbf bench: error: it broke on two lines" in text


def test_printed_lines_become_records(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    log = logging.getLogger(f"{LOGGER}.legacy")
    with stderr_to_log(log):
        print("epoch 1/2 loss 0.5", file=sys.stderr)
        sys.stderr.write("rbf: warning: skipped x.png\npartial")
    got = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == log.name]
    assert got == [("INFO", "epoch 1/2 loss 0.5"), ("WARNING", "rbf: warning: skipped x.png"),
                   ("INFO", "partial")]


def test_bench_quiet_with_a_log_file(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors", size=32)
    log = tmp_path / "bench.log"
    assert main(["bench", "--model", str(ckpt), "--data", "synthetic:4", "--corruptions",
                 "motion_blur", "--severities", "4", "--attack", "none", "--device", "cpu",
                 "--store", str(tmp_path / "r.sqlite"), "--quiet", "--log", str(log)]) == 0
    cap = capsys.readouterr()
    assert cap.err == ""                              # quiet: nothing but warnings
    assert "leaderboard of the store" in cap.out      # results still on stdout
    text = log.read_text()
    assert "rbf bench: results store" in text and "options {" in text
    assert "rbf bench: 100% (8/8 units) done in" in text   # progress lines in the file
    assert "\x1b" not in text and "\r" not in text
    assert _ours() == []
    # without --quiet the messages and progress reach stderr, one plain line each
    assert main(["bench", "--model", str(ckpt), "--data", "synthetic:4", "--corruptions",
                 "none", "--attack", "none", "--device", "cpu", "--no-store"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"^rbf bench: 100% \(4/4 units\) done in \d\d:\d\d$", err, re.M), err


def test_train_and_corrupt_take_log_and_quiet(tmp_path, capsys):
    log = tmp_path / "train.log"
    assert main(["train", "--data", "synthetic:8", "--size", "32", "--batch-size", "4",
                 "--epochs", "1", "--max-steps", "1", "--out", str(tmp_path / "m.safetensors"),
                 "--quiet", "--log", str(log)]) == 0
    assert capsys.readouterr().err == ""
    text = log.read_text()
    assert "INFO robustbench_fundus.train: rbf train: baseline tiny_cnn at 32 px" in text
    img = tmp_path / "eye.png"
    Image.fromarray((np.random.default_rng(0).random((48, 48, 3)) * 255).astype(np.uint8)).save(img)
    clog = tmp_path / "corrupt.log"
    assert main(["corrupt", str(img), "--name", "motion_blur", "--severity", "2", "--out",
                 str(tmp_path / "blur.png"), "--quiet", "--log", str(clog)]) == 0
    cap = capsys.readouterr()
    assert "wrote" in cap.out and cap.err == ""
    assert "rbf corrupt, options {" in clog.read_text()
