"""Small drawn fundus-like images and data-set folders for the data-stage tests."""
from __future__ import annotations

import csv
from pathlib import Path

import torch
from PIL import Image


def disc_image(h: int, w: int, cx: float, cy: float, r: float, seed: int = 0,
               dim_rim: bool = True) -> torch.Tensor:
    """uint8 (3,H,W): an orange disc of radius r at (cx, cy) with texture, black outside."""
    g = torch.Generator().manual_seed(seed)
    ys = torch.arange(h, dtype=torch.float32).view(h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, w)
    d = ((xs - cx) ** 2 + (ys - cy) ** 2).sqrt() / r
    inside = (d <= 1.0).float()
    shade = (1.0 - 0.45 * d.clamp(max=1) ** 2) if dim_rim else torch.ones_like(d)
    base = torch.tensor([0.85, 0.42, 0.18]).view(3, 1, 1)
    tex = 0.06 * torch.randn(1, h, w, generator=g)
    img = (base * shade + tex).clamp(0.02, 1) * inside
    return (img * 255).round().to(torch.uint8)


def save_image(t: torch.Tensor, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(t.permute(1, 2, 0).numpy()).save(path, **kw)
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def small_disc(i: int, size: int = 48) -> torch.Tensor:
    return disc_image(size, size + 8, cx=(size + 8) / 2 - 0.5 + (i % 3) - 1, cy=size / 2 - 0.5,
                      r=size * 0.45, seed=i)


def make_eyepacs(root: Path, n_patients: int = 6, in_train: bool = True, ext: str = ".jpeg") -> Path:
    rows = []
    img_dir = root / "train" if in_train else root
    for p in range(n_patients):
        for eye in ("left", "right"):
            name = f"{p + 10}_{eye}"
            save_image(small_disc(len(rows)), img_dir / f"{name}{ext}", quality=95)
            rows.append([name, (p + (eye == "right")) % 5])
    write_csv(root / "trainLabels.csv", ["image", "level"], rows)
    return root


def make_aptos(root: Path, n: int = 8) -> Path:
    rows = []
    for i in range(n):
        code = f"{i:04x}abc{i}"
        save_image(small_disc(i), root / "train_images" / f"{code}.png")
        rows.append([code, i % 5])
    write_csv(root / "train.csv", ["id_code", "diagnosis"], rows)
    return root


def make_folders(root: Path, per_grade: int = 2) -> Path:
    k = 0
    for g in range(5):
        for j in range(per_grade):
            save_image(small_disc(k), root / str(g) / f"img{g}{j}.png")
            k += 1
    return root


def make_manifest(root: Path, n: int = 8, name: str = "list.csv", subjects: bool = True) -> Path:
    rows = []
    for i in range(n):
        rel = f"pics/p{i}.jpg"
        save_image(small_disc(i), root / rel, quality=95)
        rows.append([rel, i % 5] + ([f"S{i // 2}"] if subjects else []))
    return write_csv(root / name, ["path", "label"] + (["subject"] if subjects else []), rows)


def make_fundus_real_like(root: Path, n_subjects: int = 5) -> Path:
    rows = []
    for s in range(n_subjects):
        for eye in "LR":
            name = f"Patient{s:03d}_{eye}.jpg"
            save_image(small_disc(len(rows)), root / "images" / name, quality=95)
            rows.append([name, s % 5, "", eye, f"P{s:03d}", ""])
    write_csv(root / "labels.csv", ["image", "level", "maculopathy", "eye", "subject", "note"], rows)
    return root
