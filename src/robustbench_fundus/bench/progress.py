"""Progress bars of a bench run: one per stage (clean, each corruption, each attack), counting
images."""
from __future__ import annotations

from typing import Any

from .conditions import Condition


def stage_of(c: Condition) -> str:
    if c.kind == "clean":
        return "clean"
    if c.kind == "attack":
        return c.label or c.name
    return c.name


class Bars:
    def __init__(self, on: bool, plan, conds, chunk_size: int, N: int):
        self.bars: dict[str, Any] = {}
        if not on:
            return
        from tqdm import tqdm
        totals: dict[str, int] = {}
        for ci, todo in plan:
            n = min(N, (ci + 1) * chunk_size) - ci * chunk_size
            for st in {stage_of(conds[k]) for k in todo}:
                totals[st] = totals.get(st, 0) + n
        for i, (st, tot) in enumerate(totals.items()):
            self.bars[st] = tqdm(total=tot, desc=f"{st:<16}", unit="img", position=i,
                                 leave=True, dynamic_ncols=True)

    def update(self, pending: list[Condition], n: int) -> None:
        for st in {stage_of(c) for c in pending}:
            if st in self.bars:
                self.bars[st].update(n)

    def close(self) -> None:
        for b in self.bars.values():
            b.close()
