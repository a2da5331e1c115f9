"""A throw-away third-party plugin for the registry tests: a module and a ``*.dist-info`` with
an ``entry_points.txt``, in a folder put on ``PYTHONPATH`` of a fresh interpreter only (nothing
is installed for good)."""
from __future__ import annotations

import os
from pathlib import Path


def plugin_env(root: Path, module: str, source: str, group: str, entry: str,
               dist: str) -> dict[str, str]:
    """Write ``module.py`` (``source``) and a dist-info naming ``entry`` (``"name = mod:obj"``)
    in ``group`` under ``root/site``; return an environment whose PYTHONPATH finds them."""
    site = Path(root) / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{entry}\n")
    (info / "RECORD").write_text("")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(site),
                                                        os.environ.get("PYTHONPATH", "")]))
