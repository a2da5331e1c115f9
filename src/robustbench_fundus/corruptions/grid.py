"""Severity grids (one row per corruption, one column per severity) and corrupted copies of
image files and data folders."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.io import is_image_name, load_image
from ..errors import DataError, RBFError
from ..preprocessing import Preprocessing

__all__ = ["severity_grid", "save_grid", "corrupt_files"]


#: The stage the grids and copies crop with (the library's default crop; the enhancement is
#: chosen per call, see ``severity_grid(preprocessed=...)``).
_STAGE = Preprocessing()


def _working(img_u8: torch.Tensor, size: int | None) -> torch.Tensor:
    """(1,3,H,W) float [0,1] at 8-bit levels: the image itself, or its disc crop at ``size``
    (the preprocessing stage's working crop, as the crop cache stores it)."""
    x = img_u8.float().unsqueeze(0) / 255.0
    if size is not None:
        x = _STAGE.working_crop(x, int(size))
        x = torch.round(x * 255.0) / 255.0
    return x


def _grid_stage(preprocessed: bool | str | Preprocessing) -> Preprocessing | None:
    if preprocessed is False or preprocessed is None:
        return None
    if preprocessed is True:
        return _STAGE
    if isinstance(preprocessed, Preprocessing):
        return preprocessed
    return Preprocessing(preprocessed, source="caller")


def severity_grid(image: torch.Tensor, names: Sequence[str] | None = None,
                  severities: Sequence[int] = (0, 1, 2, 3, 4), size: int | None = 256,
                  preprocessed: bool | str | Preprocessing = False,
                  seed: int = 0) -> torch.Tensor:
    """(rows, cols, 3, S, S) float tensor: ``image`` (uint8 (3,H,W) or float (3,H,W)) at each
    corruption x severity, optionally as model input: ``preprocessed=True`` applies the
    library's default preprocessing (Graham), a name (``"graham"``, ``"none"``) or a
    :class:`~robustbench_fundus.preprocessing.Preprocessing` that one, through
    :meth:`~robustbench_fundus.preprocessing.Preprocessing.model_input` with the clean
    image's geometry."""
    from . import FUNDUS_CORRUPTIONS, get_corruption

    names = list(names or FUNDUS_CORRUPTIONS)
    stage = _grid_stage(preprocessed)
    img = image if image.dtype == torch.uint8 else (image.clamp(0, 1) * 255).round().byte()
    x = _working(img, size)
    geom = _STAGE.geometry(x)
    rows = []
    for n in names:
        c = get_corruption(n)
        sev = torch.tensor([min(s, c.max_severity) for s in severities])
        xb = x.expand(len(sev), -1, -1, -1)
        gb = type(geom)(geom.mask.expand(len(sev), -1, -1, -1), geom.center.expand(len(sev), -1),
                        geom.radius.expand(len(sev)))
        # one sample id for all columns: the same nuisance draws at every severity
        y = c(xb, sev, seed=seed, sample_ids=torch.zeros(len(sev), dtype=torch.long), geom=gb)
        if stage is not None:
            y = stage.model_input(y, gb)
        rows.append(y)
    return torch.stack(rows)


def save_grid(grid: torch.Tensor, path: str | os.PathLike, row_labels: Sequence[str],
              col_labels: Sequence[str], title: str | None = None, dpi: int = 100) -> Path:
    """Write a labelled grid figure (PNG) with matplotlib."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    R, C = grid.shape[:2]
    S = grid.shape[-1]
    cell = max(1.2, S / dpi)
    fig, axes = plt.subplots(R, C, figsize=(cell * C + 1.2, cell * R + (0.5 if title else 0.2)),
                             squeeze=False)
    for i in range(R):
        for j in range(C):
            ax = axes[i][j]
            ax.imshow(grid[i, j].permute(1, 2, 0).clamp(0, 1).cpu().numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(col_labels[j], fontsize=10)
            if j == 0:
                ax.set_ylabel(row_labels[i], fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _save_image(y: torch.Tensor, path: Path) -> None:
    from PIL import Image

    arr = (y.clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.ascontiguousarray(arr))
    if path.suffix.lower() in (".jpg", ".jpeg"):
        im.save(path, quality=95, subsampling=0)
    else:
        im.save(path)


def corrupt_files(path: str | os.PathLike, out: str | os.PathLike, names: Sequence[str],
                  severity: int, size: int | None = None, seed: int = 0,
                  progress: bool = False) -> tuple[int, list[tuple[Path, str]]]:
    """Write corrupted copies of an image file or of every image under a folder.

    An image and a single name: ``out`` is the output file (or a folder, receiving
    ``<stem>_<name>_s<severity>.png``). A folder: ``out`` mirrors its layout (same relative paths
    and file names, so the labels file still applies; other files such as the labels file are
    copied verbatim); with several names, ``out/<name>/`` per corruption. Images are corrupted at
    their own size, or cropped around the disc and resized to ``size`` first. The sample id of
    an image is its index in the sorted list of image paths, so copies are reproducible.
    Severity 0 writes the clean image through the same path (decode, optional crop, 8-bit).
    Returns (images written, [(path, reason) of unreadable images skipped]).
    """
    from . import get_corruption

    src, out = Path(path), Path(out)
    if not src.exists():
        raise RBFError(f"{src}: no such file or folder")
    corrs = [get_corruption(n) for n in names]
    for c in corrs:
        if not 0 <= severity <= c.max_severity:
            raise RBFError(f"--severity {severity}: {c.name} has severities 0..{c.max_severity}")
    safe = {c.name: c.name.replace("/", "_") for c in corrs}
    if src.is_file():
        jobs = [(src, None)]
    else:
        files = sorted(p for p in src.rglob("*") if p.is_file())
        jobs = [(p, p.relative_to(src)) for p in files]
        if not any(is_image_name(p.name) for p, _ in jobs):
            raise DataError(f"{src}: no image files found (looked for {', '.join(('.jpeg', '.jpg', '.png'))} ...)")
    written, skipped = 0, []
    images = [j for j in jobs if is_image_name(j[0].name) or j[1] is None]
    index = {p: i for i, (p, _) in enumerate(images)}
    for k, (p, rel) in enumerate(jobs):
        if rel is not None and not is_image_name(p.name):
            for c in corrs:
                dst = (out / safe[c.name] if len(corrs) > 1 else out) / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(p, dst)
            continue
        try:
            img = load_image(p)
        except DataError as exc:
            skipped.append((p, str(exc)))
            print(f"rbf: warning: skipped {exc}", file=sys.stderr)
            continue
        x = _working(img, size)
        geom = _STAGE.geometry(x)
        ids = torch.tensor([index[p]])
        for c in corrs:
            y = c(x, severity, seed=seed, sample_ids=ids, geom=geom)[0]
            if rel is None:
                if len(corrs) == 1 and out.suffix and is_image_name(out.name):
                    dst = out
                else:
                    dst = out / f"{p.stem}_{safe[c.name]}_s{severity}.png"
            else:
                dst = (out / safe[c.name] if len(corrs) > 1 else out) / rel
            _save_image(y, dst)
            written += 1
        if progress and (k + 1) % 100 == 0:
            print(f"{k + 1}/{len(jobs)} files", file=sys.stderr)
    return written, skipped
