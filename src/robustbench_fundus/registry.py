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

An object that needs an optional package says so with a ``requires`` attribute (an
:class:`Extra`): it stays registered and listed without the package, ``rbf list`` marks it not
available, and using it raises a one-line :class:`RBFError` naming the pip extra to install.
An unknown name suggests close matches, also by the part after a ``/`` or ``:`` prefix
(``fog`` -> ``imagenet_c/fog``).
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib.util
import logging
import threading
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

from .errors import RBFError

log = logging.getLogger(__name__)
T = TypeVar("T")


#: The distribution name of this library (for ``pip install "robustbench-fundus[extra]"``).
DIST_NAME = "robustbench-fundus"


@dataclass(frozen=True)
class Extra:
    """An optional dependency: the module to import, the pip extra of this library that
    installs it, and its distribution name."""

    module: str
    extra: str
    dist: str

    @property
    def install(self) -> str:
        return f'pip install "{DIST_NAME}[{self.extra}]"'

    def available(self) -> bool:
        """Whether the module can be found (found, not imported: listing stays fast)."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):
            return False

    def missing(self, what: str, why: str | None = None) -> RBFError:
        detail = f" ({why})" if why else ""
        return RBFError(f"{what} needs the optional package {self.dist}, which is not "
                        f"installed{detail}: {self.install}")

    def require(self, what: str) -> None:
        """Raise the one-line error naming the extra unless the module can be found."""
        if not self.available():
            raise self.missing(what)


def requirement(obj: Any) -> Extra | None:
    """The :class:`Extra` a registered object (or its class) needs, if any."""
    req = getattr(obj, "requires", None)
    return req if isinstance(req, Extra) else None


def is_available(obj: Any) -> bool:
    """False when a registered object needs an optional package that is not installed."""
    req = requirement(obj)
    return req is None or req.available()


def _tail(name: str) -> str:
    """The part after the last ``/`` or ``:`` (``imagenet_c/fog`` -> ``fog``)."""
    return name.replace(":", "/").rsplit("/", 1)[-1]


def close_matches(name: str, names: Iterable[str], n: int = 3, cutoff: float = 0.5
                  ) -> list[str]:
    """Up to ``n`` of ``names`` close to ``name`` (best first), comparing case-insensitively
    both the whole names and the parts after a ``/`` or ``:`` prefix, so that ``fog`` finds
    ``imagenet_c/fog`` and ``PGD`` finds ``pgd``."""
    query = str(name)
    queries = {query.lower(), _tail(query).lower()} - {""}
    scored: dict[str, float] = {}
    sm = difflib.SequenceMatcher()
    for cand in names:
        best = 0.0
        for key in {cand.lower(), _tail(cand).lower()} - {""}:
            sm.set_seq2(key)
            for q in queries:
                sm.set_seq1(q)
                if sm.real_quick_ratio() >= cutoff and sm.quick_ratio() >= cutoff:
                    best = max(best, sm.ratio())
        if best >= cutoff:
            scored[cand] = best
    return sorted(scored, key=lambda c: (-scored[c], len(c), c))[:n]


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
            close = close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else \
                f"; see `rbf list {self.kind}s`"
            raise RBFError(f"unknown {self.kind} {name!r}{hint}") from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def available(self, name: str) -> bool:
        """False when the entry needs an optional package that is not installed."""
        return is_available(self.entry(name).obj)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._entries)
