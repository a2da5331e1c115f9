"""Writing the files the library creates: whole or not at all.

:func:`write_atomic` writes to a temporary file in the destination's folder and moves it into
place with :func:`os.replace`, so a reader never sees a half-written file and a full disk or a
kill leaves the previous file (or none), never a truncated one. A failure is a one-line
:class:`~robustbench_fundus.errors.RBFError` naming the file.
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Union

from .errors import RBFError

PathLike = Union[str, os.PathLike]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: PathLike, data: bytes | str, what: str = "--out") -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically, creating its folder; returns the
    path. ``what`` names the argument the path came from, for the error message."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600; a written file gets the usual mode
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            why = "the disk is full: free some space and rerun"
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            why = "not writable: pass a path in a folder you can write"
        else:
            why = f"{exc.strerror or type(exc).__name__}"
        raise RBFError(f"{what} {path}: cannot write it ({why}); nothing was changed there") \
            from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path
