"""``tiny_cnn``: a small, fast CNN for tests, the demo model and CPU experiments.

Five 3x3 conv + BatchNorm + ReLU stages (stride-2 stem, then 2x2 max-pooling between stages) and a
head on the concatenation of global average and global max pooling: the max branch lets a few
small bright or dark spots (microaneurysms, exudates) dominate a channel, which plain average
pooling would dilute. About 0.19 M parameters (0.75 MB in float32); runs at any input size from
32 px up (global pooling), TorchScript-able, and follows timm's classifier interface
(``get_classifier``, ``reset_classifier``, ``num_classes``).
"""
from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int = 5, in_chans: int = 3,
                 widths: tuple[int, ...] = (24, 32, 64, 96, 128), drop_rate: float = 0.1):
        super().__init__()
        self.num_classes = num_classes
        self.stem = _block(in_chans, widths[0], stride=2)
        stages = []
        for i in range(1, len(widths)):
            layers: list[nn.Module] = [_block(widths[i - 1], widths[i])]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.num_features = 2 * widths[-1]
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return self.head(self.drop(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes)
