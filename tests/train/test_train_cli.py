"""`rbf train` on the command line: help, one-line errors, a tiny run with --json."""
from __future__ import annotations

import json

import pytest

from robustbench_fundus.cli import main


def test_help_lists_the_recipes(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for word in ("--recipe", "--severities", "--adv-weight", "--resume", "--balance"):
        assert word in out


@pytest.mark.parametrize("argv,match", [
    (["--eps", "big"], "eps"),
    (["--severities", "0-9"], "severities"),
    (["--data", "synthetic:x"], "synthetic"),
    (["--epochs", "0"], "epochs"),
    (["--data", "/no/such/folder"], "/no/such/folder"),
])
def test_bad_arguments_give_one_line_errors(tmp_path, capsys, argv, match):
    rc = main(["train", "--out", str(tmp_path / "m.safetensors"), "--quiet", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("rbf: error:") and match in err
    assert len(err.strip().splitlines()) == 1


def test_tiny_run_prints_json(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    rc = main(["train", "--data", "synthetic:8", "--size", "32", "--batch-size", "4",
               "--epochs", "1", "--max-steps", "1", "--out", str(out), "--json", "--quiet"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["steps"] == 1 and res["out"] == str(out) and out.is_file()
    assert set(res["best_metrics"]) == {"accuracy", "balanced_accuracy", "kappa", "n"}
