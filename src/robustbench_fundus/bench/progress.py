"""Progress of a bench run: one display over the run's real work.

The work of a run is the sum, over the (chunk, pending conditions) pairs of its plan, of the
chunk's images times each condition's work units (:func:`.pipeline.work_units`: one forward
for clean and corrupted images, the step count for an attack eps). The batch pipeline calls
:meth:`Bars.advance` after each condition of each batch, so the display moves within a batch
and its rate, and so its ETA (elapsed / done x left, the mean rate of the run), counts what
was really done. The current stage (``motion_blur s4``, ``pgd_linf_10 eps=2/255``) is its
label.

* stderr is a terminal: one tqdm bar (none after ``--quiet``);
* otherwise (a log, a pipe, a notebook): no control codes, a plain line on the
  ``robustbench_fundus.progress`` logger every :data:`INTERVAL_S` seconds and one at the end,
  ``rbf bench: 37% (1234/3300 units) pgd_linf_10 eps=2/255, 00:41 left``. With a bar the
  same lines still go to the logger, marked so that the terminal handler skips them (a log
  file keeps them; see :mod:`robustbench_fundus.logs`).
"""
from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any, Callable

from .conditions import Condition

log = logging.getLogger("robustbench_fundus.progress")

#: Seconds between two plain progress lines.
INTERVAL_S = 5.0


def stage_of(c: Condition) -> str:
    if c.kind == "clean":
        return "clean"
    if c.kind == "attack":
        return c.label or c.name
    return c.name


def plan_units(plan, conds: list[Condition], chunk_size: int, N: int) -> int:
    """The work units of ``plan``: per (chunk, pending conditions), the chunk's images times
    each condition's work units."""
    from .pipeline import work_units
    total = 0
    for ci, todo in plan:
        n = max(0, min(N, (ci + 1) * chunk_size) - ci * chunk_size)
        total += n * sum(work_units(conds[k]) for k in todo)
    return total


def clock_text(seconds: float | None) -> str:
    """``mm:ss`` (``h:mm:ss`` from an hour); ``--:--`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "--:--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class Bars:
    """The progress of one run (``on`` False: silent). ``world``: processes sharing the run
    (rank 0 sees its share; its units count for all). ``stream``: where a bar goes (default
    stderr; a bar only when it is a terminal). ``interval``: seconds between plain lines."""

    def __init__(self, on: bool, plan, conds: list[Condition], chunk_size: int, N: int,
                 world: int = 1, *, label: str = "rbf bench", stream: IO[str] | None = None,
                 interval: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.total = plan_units(plan, conds, chunk_size, N) if on else 0
        self.on = bool(on) and self.total > 0
        self.scale = max(1, int(world))
        self.label = label
        self.done = 0
        self.stage = ""
        self.clock = clock
        self.interval = INTERVAL_S if interval is None else float(interval)
        self.t0 = self.last = clock()
        self.bar = None
        self.closed = False
        if not self.on:
            return
        from ..logs import terminal_quiet
        stream = sys.stderr if stream is None else stream
        if _isatty(stream) and not terminal_quiet():
            from tqdm import tqdm
            self.bar = tqdm(total=self.total, desc=label, unit="unit",
                            unit_scale=self.total >= 100_000, file=stream, dynamic_ncols=True,
                            smoothing=0.0, leave=True,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                       "units [{elapsed}<{remaining}]{postfix}")

    # -- what the pipeline calls ----------------------------------------------------------------
    def advance(self, units: int, stage: str) -> None:
        if not self.on or self.closed:
            return
        step = max(0, int(units)) * self.scale
        step = min(step, self.total - self.done)
        self.done += step
        self.stage = str(stage)
        if self.bar is not None:
            self.bar.set_postfix_str(self.stage, refresh=False)
            self.bar.update(step)
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self._log(self.line(now))

    def close(self) -> None:
        if not self.on or self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        if self.done:
            now = self.clock()
            self._log(f"{self.label}: {self.percent():.0f}% ({self.done}/{self.total} units) "
                      f"done in {clock_text(now - self.t0)}")

    # -- text ---------------------------------------------------------------------------------
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 100.0

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left at the run's mean rate so far (None before any work)."""
        now = self.clock() if now is None else now
        if not self.done:
            return None
        return (now - self.t0) / self.done * (self.total - self.done)

    def line(self, now: float | None = None) -> str:
        return (f"{self.label}: {self.percent():.0f}% ({self.done}/{self.total} units) "
                f"{self.stage}, {clock_text(self.eta(now))} left")

    def _log(self, text: str) -> None:
        from ..logs import BAR_ATTR
        log.info(text, extra={BAR_ATTR: self.bar is not None})
