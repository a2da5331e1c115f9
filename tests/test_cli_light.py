"""The command line's shell: ``rbf --help`` (and every subcommand's ``--help``) imports none of
torch, timm, captum, matplotlib or scikit-learn; unknown names suggest close matches by the part
after a ``/`` prefix too; third-party warnings do not reach the terminal during a command (they
go to the ``robustbench_fundus.warnings`` logger) but stay visible to library callers."""
from __future__ import annotations

import io
import json
import logging
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustbench_fundus import attacks, corruptions, models
from robustbench_fundus.cli import _third_party, main
from robustbench_fundus.errors import RBFError
from robustbench_fundus.registry import close_matches

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "captum", "matplotlib", "sklearn", "numpy", "PIL", "scipy")


def test_help_imports_no_heavy_module():
    code = r'''
import json, sys, time
t0 = time.perf_counter()
from robustbench_fundus.cli import build_parser, main
p = build_parser()
p.format_help()
sub = next(a for a in p._actions if a.__class__.__name__ == "_SubParsersAction")
for name, sp in sub.choices.items():
    sp.format_help()
for argv in (["--help"], ["bench", "--help"], ["bench", "--no-such-option"]):
    try:
        main(argv)
    except SystemExit:
        pass
print("RESULT" + json.dumps({"heavy": sorted({m.split(".")[0] for m in sys.modules} & set(%r)),
                             "commands": sorted(sub.choices), "s": time.perf_counter() - t0}))
''' % (HEAVY,)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, cwd=str(REPO))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(next(ln for ln in r.stdout.splitlines()
                          if ln.startswith("RESULT"))[len("RESULT"):])
    assert res["heavy"] == [], res
    assert {"bench", "leaderboard", "data", "train", "saliency", "inspect", "corrupt",
            "synth", "list"} <= set(res["commands"])
    assert res["s"] < 2.0, res  # about 0.1 s; generous for a loaded machine


def test_rbf_help_starts_in_well_under_a_second():
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "robustbench_fundus",
                        "--help"], capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - t0
    assert r.returncode == 0 and "usage: rbf" in r.stdout
    imported = {ln.split("|")[-1].strip().split(".")[0] for ln in r.stderr.splitlines()
                if ln.startswith("import time:")}
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    assert wall < 3.0, wall  # interpreter start-up included


def test_a_command_module_loaded_early_is_an_attribute_of_its_package():
    import robustbench_fundus.cli as cli

    cli.build_parser()
    import robustbench_fundus.bench
    import robustbench_fundus.data
    assert robustbench_fundus.bench._cli is sys.modules["robustbench_fundus.bench._cli"]
    assert robustbench_fundus.data._cli is sys.modules["robustbench_fundus.data._cli"]


# -- close matches ----------------------------------------------------------------------------
def test_close_matches_read_the_part_after_a_prefix():
    assert close_matches("fog", ["imagenet_c/fog", "imagenet_c/frost", "motion_blur"])[0] == \
        "imagenet_c/fog"
    assert close_matches("PGD", ["pgd", "pgd_l2", "fgsm"])[:2] == ["pgd", "pgd_l2"]
    assert close_matches("timm/resnet18", ["resnet18", "resnet50"])[0] == "resnet18"
    assert close_matches("zzzz", ["pgd"]) == []


@pytest.mark.parametrize("registry,name,first", [
    (corruptions.REGISTRY, "fog", "imagenet_c/fog"),
    (corruptions.REGISTRY, "zoom_blurr", "imagenet_c/zoom_blur"),
    (corruptions.REGISTRY, "motionblur", "motion_blur"),
    (attacks.REGISTRY, "PGD", "pgd"),
    (attacks.REGISTRY, "auto-attack", "autoattack"),
    (models.REGISTRY, "tinycnn", "tiny_cnn"),
    (models.REGISTRY, "timm/resnet18", "resnet18"),
])
def test_unknown_names_suggest_close_matches(registry, name, first):
    with pytest.raises(RBFError) as ei:
        registry.entry(name)
    msg = str(ei.value)
    assert f"did you mean {first}" in msg, msg


def test_the_cli_suggests_imagenet_c_fog_for_fog(tmp_path, capsys):
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(img)
    rc = main(["corrupt", str(img), "--name", "fog", "--severity", "1", "--out",
               str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "did you mean imagenet_c/fog" in err and err.count("\n") == 1


# -- warnings ---------------------------------------------------------------------------------
def _malformed_mpo_jpeg() -> bytes:
    """A JPEG whose MPF (multi-picture) segment is malformed: Pillow opens it as a plain JPEG
    and warns ``Image appears to be a malformed MPO file`` (a UserWarning from PIL)."""
    b = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(b, "JPEG")
    jpeg = b.getvalue()
    entries = [(0xB000, 7, 4, b"0100"), (0xB001, 4, 1, struct.pack("<I", 2)),
               (0xB002, 7, 3, b"abc\x00")]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", t, ty, c) + v for t, ty, c, v in entries) + struct.pack("<I", 0)
    payload = b"MPF\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd
    return jpeg[:2] + b"\xff\xe2" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


@pytest.fixture
def warning_folder(tmp_path) -> Path:
    for g in (0, 1):
        (tmp_path / str(g)).mkdir()
        (tmp_path / str(g) / "mpo.jpg").write_bytes(_malformed_mpo_jpeg())
    return tmp_path


def test_library_callers_still_see_third_party_warnings(warning_folder):
    from robustbench_fundus.data import read_records

    with pytest.warns(UserWarning, match="malformed MPO"):
        rs = read_records(warning_folder, verify=True, progress=False, workers=1)
    assert len(rs) == 2


def test_the_cli_routes_third_party_warnings_to_logging(warning_folder, capsys, caplog):
    with caplog.at_level(logging.WARNING, logger="robustbench_fundus.warnings"):
        assert main(["data", str(warning_folder), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "Warning" not in err and "malformed MPO" not in err, err
    assert any(r.name == "robustbench_fundus.warnings" and "malformed MPO" in r.getMessage()
               for r in caplog.records)


def test_no_warning_reaches_the_terminal_and_python_w_brings_them_back(warning_folder):
    code = r'''
import contextlib, io, sys, warnings
from robustbench_fundus.cli import main
e = io.StringIO()
with contextlib.redirect_stderr(e):
    rc = main(["data", sys.argv[1], "--workers", "1"])
print("QUIET", rc, repr(e.getvalue()))
'''
    r = subprocess.run([sys.executable, "-c", code, str(warning_folder)], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Warning" not in r.stderr and "malformed MPO" not in r.stdout.split("QUIET")[-1]
    assert "QUIET 0" in r.stdout
    r = subprocess.run([sys.executable, "-W", "always::UserWarning", "-m", "robustbench_fundus",
                        "data", str(warning_folder), "--workers", "1"], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0 and "malformed MPO" in r.stderr, r.stderr[-2000:]


def test_only_third_party_warnings_are_routed():
    site = os.path.join("lib", "python3.11", "site-packages")
    assert _third_party(UserWarning, os.path.join("/x", site, "PIL", "Image.py"))
    assert _third_party(UserWarning, os.path.join("/x", site, "torch", "nn", "modules", "x.py"))
    assert not _third_party(UserWarning, str(REPO / "src" / "robustbench_fundus" / "cli.py"))
    assert not _third_party(UserWarning, "<stdin>")
