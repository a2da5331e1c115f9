"""A toy 5-class "fundus" task and a tiny CNN for the attack tests (no dependency on the data or
models stages): an orange disc on black with a small spot whose colour gives the class, plus
noise and a random disc shade. Deterministic given the seed."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

SPOT_COLOURS = torch.tensor([
    [0.95, 0.95, 0.30],   # yellow
    [0.20, 0.20, 0.20],   # dark
    [0.95, 0.95, 0.95],   # white
    [0.30, 0.80, 0.30],   # green
    [0.30, 0.40, 0.95],   # blue
])


def make_toy(n: int, size: int = 32, seed: int = 0, start: int = 0):
    """(x float (n,3,S,S) in [0,1], y long (n,)); sample i depends only on (seed, start+i)."""
    xs, ys = [], []
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                            torch.arange(size, dtype=torch.float32), indexing="ij")
    c = (size - 1) / 2
    disc = (((xx - c) ** 2 + (yy - c) ** 2) <= (0.46 * size) ** 2).float()
    for i in range(start, start + n):
        g = torch.Generator().manual_seed(seed * 1_000_003 + i)
        label = int(torch.randint(0, 5, (1,), generator=g))
        shade = 0.75 + 0.25 * torch.rand(1, generator=g)
        base = torch.tensor([0.85, 0.40, 0.15]).view(3, 1, 1) * shade
        img = base * disc
        r = 0.07 * size
        cx = c + (torch.rand(1, generator=g) - 0.5) * 0.45 * size
        cy = c + (torch.rand(1, generator=g) - 0.5) * 0.45 * size
        spot = (((xx - cx) ** 2 + (yy - cy) ** 2) <= r ** 2).float()
        colour = 0.5 * SPOT_COLOURS[label].view(3, 1, 1) + 0.5 * base
        img = img * (1 - spot) + colour * spot
        img = img + 0.04 * torch.randn(3, size, size, generator=g)
        xs.append((img * disc).clamp(0, 1))
        ys.append(label)
    return torch.stack(xs), torch.tensor(ys, dtype=torch.long)


class ToyNet(nn.Module):
    """Normalisation inside; [0,1] input; 5 logits. Has dropout and batch norm so that the
    eval/train mode handling is exercised."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.5, 0.3, 0.15]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.3, 0.25, 0.2]).view(1, 3, 1, 1))
        self.features = nn.Sequential(
            nn.Conv2d(3, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
            nn.Conv2d(12, 24, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(24, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features((x - self.mean) / self.std)))


def train_toy(seed: int = 0, n: int = 768, size: int = 32, steps: int = 150) -> ToyNet:
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ToyNet()
    x, y = make_toy(n, size, seed=seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=4e-3)
    model.train()
    with torch.random.fork_rng():  # dropout draws: keep the global state untouched
        torch.manual_seed(seed)
        for _ in range(steps):
            idx = torch.randint(0, n, (64,), generator=g)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model
