"""One small generic registry for models, corruptions and attacks.

Modelled on timm's registry: register by decorator (or call), refuse duplicate names unless
``override=True``, list with glob patterns, get a configured object by name. Third-party packages
plug in through ``importlib.metadata`` entry points, loaded lazily the first time the registry is
queried::

    [project.entry-points."robustbench_fundus.corruptions"]
    my_glare = "my_pkg.glare:register"     # a module, a callable, or a registered object

An entry point may name a module (importing it registers its entries), a zero-argument callable
(called once; it may register entries or return an object/class to register under the entry
point's name), or a class/object (registered under the entry point's name).
"""
from __future__ import annotations

import difflib
import fnmatch
import logging
import threading
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import RBFError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    name: str
    obj: T
    info: dict[str, Any] = field(default_factory=dict)
    source: str = "builtin"  # "builtin" or "plugin:<dist>"


class Registry(Generic[T]):
    """A named collection of registered objects (classes, factories or configured instances)."""

    def __init__(self, kind: str, group: str | None = None):
        self.kind = kind
        self.group = group
        self._entries: dict[str, Entry[T]] = {}
        self._plugins_loaded = group is None
        self._lock = threading.RLock()
        self._builtin_loaders: list[Callable[[], Any]] = []

    # -- registration -------------------------------------------------------------------------
    def register(self, obj: T | None = None, *, name: str | None = None, override: bool = False,
                 **info: Any):
        """Register ``obj`` (or use as a decorator). ``name`` defaults to ``obj.name`` or
        ``obj.__name__``. Raises on a duplicate name unless ``override=True``."""

        def _do(o: T) -> T:
            key = name or getattr(o, "name", None) or getattr(o, "__name__", None)
            if not isinstance(key, str) or not key:
                raise ValueError(f"cannot register {o!r} in the {self.kind} registry without a name")
            with self._lock:
                if key in self._entries and not override:
                    raise ValueError(
                        f"{self.kind} {key!r} is already registered; pass override=True to replace it")
                self._entries[key] = Entry(key, o, dict(info), source=self._current_source)
            return o

        if obj is None:
            return _do
        return _do(obj)

    _current_source = "builtin"

    def unregister(self, name: str) -> None:
        with self._lock:
            self._entries.pop(name, None)

    # -- plugins ------------------------------------------------------------------------------
    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        with self._lock:
            if self._plugins_loaded:
                return
            self._plugins_loaded = True
            try:
                eps = metadata.entry_points(group=self.group)
            except Exception as exc:  # pragma: no cover - broken metadata
                log.warning("could not read entry points for %s: %s", self.group, exc)
                return
            for ep in eps:
                dist = getattr(getattr(ep, "dist", None), "name", "?")
                prev, self._current_source = self._current_source, f"plugin:{dist}"
                try:
                    target = ep.load()
                    if isinstance(target, ModuleType):
                        pass  # importing the module registered its entries
                    elif isinstance(target, type) or not callable(target):
                        if ep.name not in self._entries:
                            self.register(target, name=ep.name)
                    else:
                        result = target()
                        if result is not None and ep.name not in self._entries:
                            self.register(result, name=ep.name)
                except Exception as exc:
                    log.warning("plugin %s=%s (%s) failed to load: %s", ep.name, ep.value, dist, exc)
                finally:
                    self._current_source = prev

    def reload_plugins(self) -> None:
        """Forget that plugins were loaded (tests, or after installing a plugin in-process)."""
        self._plugins_loaded = self.group is None

    # -- queries ------------------------------------------------------------------------------
    def names(self, pattern: str | list[str] = "*") -> list[str]:
        """Sorted names matching one glob pattern or any of a list of them."""
        self._load_plugins()
        pats = [pattern] if isinstance(pattern, str) else list(pattern)
        return sorted(n for n in self._entries if any(fnmatch.fnmatchcase(n, p) for p in pats))

    def entry(self, name: str) -> Entry[T]:
        self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else \
                f"; see `rbf list {self.kind}s`"
            raise RBFError(f"unknown {self.kind} {name!r}{hint}") from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._entries)
