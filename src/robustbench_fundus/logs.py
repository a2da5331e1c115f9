"""Logging of the command line: where the library's messages go.

The library logs, under the ``robustbench_fundus`` logger (``robustbench_fundus.bench``,
``robustbench_fundus.progress``, ...); it never prints its own progress. A program that uses it
configures logging as it likes; the ``rbf`` commands call :func:`setup_logging` (through
:func:`command_logging`), which adds

* a handler on stderr at INFO (WARNING with ``--quiet``): the messages as they are, without
  the progress lines that a live progress bar already shows and without third-party warnings
  (those go to ``robustbench_fundus.warnings``, see ``cli.py``);
* with ``--log FILE``, a file handler that takes everything (DEBUG and up, the progress lines
  and the third-party warnings included), with a time stamp, level and logger name per line,
  appended to FILE (its folder is created).

Setting up again replaces the handlers set up before, so a program (or a test) calling
commands one after another never stacks them.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import IO, Any, Iterator

LOGGER = "robustbench_fundus"
#: Set on a log record (``extra={BAR_ATTR: True}``) that a live progress bar already shows
#: on the terminal: the stderr handler skips it, a log file keeps it.
BAR_ATTR = "rbf_bar"
_TAG = "_rbf_cli_handler"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def add_log_options(p: argparse.ArgumentParser, quiet: bool = True) -> None:
    """``--quiet`` (unless the parser has it already: ``quiet=False``) and ``--log FILE``, the
    same on every long command."""
    if quiet:
        p.add_argument("--quiet", action="store_true", help="only warnings and errors on "
                       "stderr (no progress)")
    p.add_argument("--log", default=None, metavar="FILE", help="also write every message, the "
                   "progress lines and third-party warnings to FILE (appended)")


class _ForTerminal(logging.Filter):
    """What reaches stderr: not the third-party warnings, not what a bar shows already."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == f"{LOGGER}.warnings" or record.name.startswith(f"{LOGGER}.warnings."):
            return False
        return not getattr(record, BAR_ATTR, False)


def _ours(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers if getattr(h, _TAG, False)]


def setup_logging(quiet: bool = False, log_file: str | Path | None = None, *,
                  stream: IO[str] | None = None, terminal: bool = True) -> logging.Logger:
    """Configure the ``robustbench_fundus`` logger for a command: a stderr handler (INFO, or
    WARNING when ``quiet`` or when ``terminal`` is False, e.g. a rank other than 0 under
    torchrun) and, with ``log_file``, a file handler at DEBUG. Replaces the handlers an
    earlier call added; returns the logger."""
    logger = logging.getLogger(LOGGER)
    close_logging()
    level = logging.WARNING if quiet or not terminal else logging.INFO
    sh = logging.StreamHandler(stream if stream is not None else sys.stderr)
    sh.setLevel(level)
    sh.setFormatter(logging.Formatter("%(message)s"))
    sh.addFilter(_ForTerminal())
    setattr(sh, _TAG, True)
    logger.addHandler(sh)
    lowest = level
    if log_file is not None:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(path, mode="a", encoding="utf-8")
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(logging.Formatter(FILE_FORMAT))
        setattr(fh, _TAG, True)
        setattr(fh, "_rbf_file", True)
        logger.addHandler(fh)
        lowest = logging.DEBUG
    logger.setLevel(lowest)
    return logger


def close_logging() -> None:
    """Remove (and close) the handlers :func:`setup_logging` added."""
    logger = logging.getLogger(LOGGER)
    for h in _ours(logger):
        logger.removeHandler(h)
        h.close()
    logger.setLevel(logging.NOTSET)


def terminal_quiet() -> bool:
    """Whether a command set the terminal to warnings only (``--quiet``): a progress bar then
    stays off, while the progress lines still reach a ``--log`` file."""
    return any(not getattr(h, "_rbf_file", False) and h.level > logging.INFO
               for h in _ours(logging.getLogger(LOGGER)))


def file_handlers() -> list[logging.Handler]:
    return [h for h in _ours(logging.getLogger(LOGGER)) if getattr(h, "_rbf_file", False)]


@contextlib.contextmanager
def command_logging(command: str, quiet: bool = False, log_file: str | Path | None = None,
                    *, terminal: bool = True, options: Any = None
                    ) -> Iterator[logging.Logger]:
    """:func:`setup_logging` for the duration of one command, then the handlers are removed.
    ``options`` (the parsed arguments) go to the log file first. An error that ends the
    command is written to the log file too (the terminal gets it from the command line's error
    handling)."""
    logger = setup_logging(quiet, log_file, terminal=terminal)
    log = logging.getLogger(f"{LOGGER}.{command}")
    if options is not None:
        opts = {k: v for k, v in vars(options).items() if k != "func" and not callable(v)}
        log.debug("rbf %s, options %s", command, opts)
    try:
        yield log
    except Exception as exc:
        rec = log.makeRecord(log.name, logging.ERROR, __file__, 0,
                             f"rbf {command}: error: {' '.join(str(exc).split())}", None, None)
        for h in file_handlers():
            h.handle(rec)
        raise
    finally:
        close_logging()
    del logger


class LineLogger:
    """A text stream whose complete lines become log records (INFO; WARNING for a line that
    says ``warning``): for code that still prints its messages to stderr."""

    def __init__(self, log: logging.Logger):
        self.log = log
        self._buf = ""

    def write(self, text: str) -> int:
        self._buf += str(text)
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            self._emit(line)
        return len(text)

    def _emit(self, line: str) -> None:
        line = line.rstrip("\r")
        if not line.strip():
            return
        level = logging.WARNING if "warning" in line.lower() else logging.INFO
        self.log.log(level, line)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._buf:
            self._emit(self._buf)
            self._buf = ""

    def isatty(self) -> bool:
        return False


@contextlib.contextmanager
def stderr_to_log(log: logging.Logger) -> Iterator[None]:
    """Lines written to ``sys.stderr`` inside the block become records of ``log`` (the
    handlers :func:`setup_logging` added keep the real stderr)."""
    w = LineLogger(log)
    with contextlib.redirect_stderr(w):  # type: ignore[type-var]
        try:
            yield
        finally:
            w.close()
