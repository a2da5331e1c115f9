"""Adapters for third-party attacks: AutoAttack (``pyautoattack``) and every ``torchattacks``
attack by class name (``torchattacks:PGD``, ``torchattacks:CW``, ...).

Both packages are optional and imported only when an attack runs: AutoAttack's with
``pip install "robustbench-fundus[autoattack]"`` (without it ``autoattack`` stays listed, marked
not available, and asking for its identity or running it is a one-line :class:`RBFError`
naming the extra), torchattacks with ``pip install --no-deps torchattacks==3.5.1``.

Both implement one eps at a time (:meth:`Attack._attack_eps`) and go through the base class's
default sweep: each eps is run on the samples not yet broken at a smaller eps, a break counts
only once a float32 forward confirms it (under bf16 autocast a rejected claim is re-attacked in
float32), and a sample broken at a smaller eps keeps that perturbation. Their internal random
draws use the global generators of torch, numpy and Python, so they run inside
:func:`_forked_rng` seeded from (seed, attack, eps): the caller's random state is untouched and
a call is reproducible, but the noise of a sample depends on its batch (unlike the native
attacks).

torchattacks, per class (derived from the class's signature; the small tables below hold what
the signature cannot say):

* eps: passed as the class's ``eps`` parameter (``max_epsilon`` for PIFGSM/PIFGSMPP); classes
  without one (minimal-perturbation and noise attacks: CW, DeepFool, EADEN, EADL1, JSMA,
  OnePixel, Pixle, SparseFool, GN, VANILA) run unbounded and their output is projected onto each
  eps ball by the base class;
* norm: the ``norm`` option, else the class's own ``norm`` default, else L2 for PGDL2, PGDRSL2,
  CW and DeepFool, else Linf; passed to classes that take a ``norm`` parameter. A class with an
  eps but no norm parameter attacks in one norm only: asking it for the other is refused;
* ``n_classes`` (APGDT, AutoAttack, FAB): the model's output width (torchattacks assumes 10);
* ``seed`` (APGD, APGDT, AutoAttack, FAB, Square): derived from (seed, attack, eps);
* JSMA (whose untargeted mode assumes 10 classes) runs targeted at the next class modulo the
  model's output width, as torchattacks does for 10 classes; EADEN/EADL1 with ``abort_early``
  need ``max_iterations >= 10`` (refused otherwise, in one line);
* ``alpha="auto"``: 2.5*eps/steps for classes with ``alpha`` and ``steps``; for a class with
  ``alpha`` but no ``steps`` (FFGSM) the class's own alpha/eps ratio at the new eps;
* classes that cannot be built from a model alone (LGV: a training loader; MultiAttack: a list
  of attacks) are refused with a one-line :class:`RBFError` that says why.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import io
import logging
import random
import sys
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal

import numpy as np
import torch
import torch.nn as nn

from ..errors import RBFError
from ..registry import Extra
from ..seeding import derive_seed
from .base import Attack, AttackConfig
from .context import Context, ModuleFn, canonical_norm
from .identity import package_version
from .options import annotation_from_default

AUTOATTACK_VERSIONS = ("standard", "plus", "rand")
#: AutoAttack's package is optional: ``pip install "robustbench-fundus[autoattack]"``.
AUTOATTACK_EXTRA = Extra(module="pyautoattack", extra="autoattack", dist="pyautoattack")


@contextlib.contextmanager
def _forked_rng(device: torch.device, seed: int) -> Iterator[None]:
    """Seed torch's (CPU and ``device``), numpy's and Python's global generators from ``seed``
    and restore all of them on exit."""
    devices = [device] if device.type == "cuda" else []
    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)  # inside fork_rng: restored on exit
            np.random.seed(seed % (2 ** 32))
            random.seed(seed)
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


# ------------------------------------------------------------------------------------------------
# AutoAttack (pyautoattack)
# ------------------------------------------------------------------------------------------------
@dataclass
class AutoAttackConfig(AttackConfig):
    """version: AutoAttack version ('standard': APGD-CE, APGD-T, FAB-T, Square; 'plus';
    'rand'); n_target_classes: target classes of the targeted attacks (None: classes - 1, at
    most 9; 4 for the 5 DR grades); batch_size: AutoAttack's internal batch."""
    version: str = "standard"
    n_target_classes: int | None = None
    batch_size: int = 250


class AutoAttack(Attack):
    """AutoAttack (Croce & Hein 2020) through the official ``pyautoattack`` package."""
    name = "autoattack"
    norm = "Linf"
    Config = AutoAttackConfig
    description = "AutoAttack (pyautoattack, standard: APGD-CE, APGD-T, FAB-T, Square), Linf"
    nominal_steps = 100
    requires = AUTOATTACK_EXTRA

    def _validate_config(self) -> None:
        super()._validate_config()
        c = self.config
        if c.version not in AUTOATTACK_VERSIONS:
            raise RBFError(f"autoattack version must be one of {', '.join(AUTOATTACK_VERSIONS)}, "
                           f"got {c.version!r}")
        if c.n_target_classes is not None and c.n_target_classes < 1:
            raise RBFError(f"autoattack n_target_classes must be none or >= 1, got "
                           f"{c.n_target_classes!r}")
        if c.batch_size < 1:
            raise RBFError(f"autoattack batch_size must be >= 1, got {c.batch_size!r}")

    def _identity_config(self) -> dict[str, Any]:
        # the identity names the package version that runs it: none without the package (the
        # benchmark asks for the identity before it runs anything, so this fails first)
        self.requires.require("attack autoattack")
        return {**self.options(), "package": package_version("pyautoattack")}

    def _attack_eps(self, ctx: Context, x, y, eps, *, seed, sample_ids):
        self.requires.require("attack autoattack")
        try:
            from pyautoattack import AutoAttack as _AA
        except ImportError as exc:  # installed, but it fails to import
            raise self.requires.missing("attack autoattack",
                                        f"importing it failed: {exc}") from None
        fn = ModuleFn(ctx)
        n_cls = ctx.classes(x)
        if n_cls < 2:
            raise RBFError("autoattack needs a model with at least 2 classes")
        aa = _AA(fn, norm=self.norm, eps=float(eps), version=self.config.version,
                 device=x.device, seed=derive_seed(seed, self.name, float(eps)) % (2 ** 31))
        n_t = self.config.n_target_classes
        n_t = min(n_cls - 1, 9) if n_t is None else max(1, min(int(n_t), n_cls - 1))
        aa.apgd_targeted.n_target_classes = n_t
        aa.fab.n_target_classes = n_t
        aa.verbose = False
        if n_cls <= 3:  # targeted DLR needs >= 4 classes
            aa.attacks_to_run = [a for a in aa.attacks_to_run if a != "apgd-t"]
        log = logging.getLogger("auto-attack")
        prev = log.level
        log.setLevel(logging.ERROR)  # its own checks duplicate our flags
        trace = sys.gettrace()  # its dynamic-defence check calls sys.settrace(None)
        try:
            with _forked_rng(x.device, derive_seed(seed, self.name, "rng", float(eps))):
                x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=self.config.batch_size)
        finally:
            log.setLevel(prev)
            sys.settrace(trace)
        ctx.work += int(x.shape[0]) * 100  # nominal (APGD-CE 100 iterations, and more)
        return x_adv.detach()


# ------------------------------------------------------------------------------------------------
# torchattacks
# ------------------------------------------------------------------------------------------------
TORCHATTACKS_PACKAGE = "torchattacks"
#: classes with an eps but no norm parameter that attack in the L2 norm (the rest: Linf), and
#: minimal-perturbation classes without eps whose perturbation is measured in L2
_L2_CLASSES = frozenset({"PGDL2", "PGDRSL2", "CW", "DeepFool"})
#: eps parameter names, in order of preference
_EPS_PARAMS = ("eps", "max_epsilon")
#: parameters whose default is an integer but whose values are real numbers
_REAL_PARAMS = frozenset({"c", "kappa", "scale", "lam", "nsig"})
#: parameters the adapter sets itself unless given (shown as "auto")
_AUTO_PARAMS = ("alpha", "n_classes", "seed")
#: parameters that do not change the result (left out of the identity)
_NOT_IDENTITY = frozenset({"verbose"})
#: why a class cannot be built from a model alone (others: from their required parameters)
_WHY_NOT = {
    "LGV": ("it fine-tunes surrogate models on a training data loader (trainloader), which an "
            "attack called on a model and a batch does not have"),
    "MultiAttack": ("it combines a list of already built torchattacks attacks; run each of them "
                    "as torchattacks:<Name> instead"),
}


def _ead_rule(opts: dict) -> str | None:
    if opts.get("abort_early") and int(opts.get("max_iterations", 10)) < 10:
        return ("with abort_early it needs max_iterations >= 10 (it checks its progress every "
                "max_iterations // 10 iterations); set max_iterations >= 10 or abort_early=false")
    return None


#: option combinations a class cannot run with (checked when the attack is configured)
_RULES = {"EADEN": _ead_rule, "EADL1": _ead_rule}
#: classes whose untargeted mode assumes 10 classes (target = (label + 1) % 10): run them
#: targeted at the next class modulo the model's output width instead
_NEXT_CLASS_TARGET = frozenset({"JSMA"})


def _torchattacks():
    try:
        return importlib.import_module(TORCHATTACKS_PACKAGE)
    except ImportError:
        raise RBFError("torchattacks is not installed: pip install --no-deps "
                       "torchattacks==3.5.1 (--no-deps: it pins an old requests)") from None


def torchattacks_classes() -> list[str]:
    """Names of every attack class torchattacks exports (empty if it is not installed)."""
    try:
        ta = importlib.import_module(TORCHATTACKS_PACKAGE)
    except ImportError:
        return []
    base = importlib.import_module(TORCHATTACKS_PACKAGE + ".attack").Attack
    return sorted(n for n in dir(ta) if not n.startswith("_")
                  and isinstance(getattr(ta, n), type) and issubclass(getattr(ta, n), base)
                  and getattr(ta, n) is not base)


@dataclass(frozen=True)
class _ClassInfo:
    """What the adapter knows about one torchattacks class."""
    name: str
    cls: type
    params: tuple[str, ...]            # constructor parameters except self and model
    defaults: dict                     # parameter -> torchattacks default
    eps_param: str | None              # "eps", "max_epsilon" or None
    norm_param: bool                   # takes a ``norm`` parameter
    natural_norm: str                  # its norm when none is asked for
    types: dict                        # option -> type annotation
    option_defaults: dict              # option -> default shown by options()


@functools.lru_cache(maxsize=None)
def _class_info(name: str) -> _ClassInfo:
    ta = _torchattacks()
    cls = getattr(ta, name, None) if isinstance(name, str) else None
    if name not in torchattacks_classes() or not isinstance(cls, type):
        raise RBFError(f"torchattacks has no attack {name!r}; choose one of "
                       f"{', '.join(torchattacks_classes())}")
    sig = inspect.signature(cls.__init__)
    params = [p for p in list(sig.parameters.values())[1:]
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if params and params[0].name == "model":
        params = params[1:]
    required = [p.name for p in params if p.default is inspect.Parameter.empty]
    if name in _WHY_NOT or required:
        why = _WHY_NOT.get(name) or f"it needs {', '.join(required)}"
        raise RBFError(f"torchattacks:{name} cannot be built from a model alone: {why}")
    defaults = {p.name: p.default for p in params}
    eps_param = next((e for e in _EPS_PARAMS if e in defaults), None)
    norm_param = "norm" in defaults
    if norm_param:
        natural = canonical_norm(defaults["norm"])
    else:
        natural = "L2" if name in _L2_CLASSES else "Linf"
    types: dict[str, Any] = {}
    shown: dict[str, Any] = {}
    for p, d in defaults.items():
        if p in (eps_param, "norm"):
            continue
        if p == "alpha" or p in ("n_classes", "seed"):
            base = float if p == "alpha" else int
            types[p] = base | Literal["auto"]  # type: ignore[operator]
            shown[p] = "auto"
        elif p in _REAL_PARAMS and isinstance(d, int) and not isinstance(d, bool):
            types[p], shown[p] = float, float(d)
        else:
            types[p], shown[p] = annotation_from_default(d), d
    return _ClassInfo(name, cls, tuple(defaults), defaults, eps_param, norm_param, natural,
                      types, shown)


def _their_spelling(norm: str, default: Any) -> str:
    return norm.lower() if isinstance(default, str) and default == default.lower() else norm


class _Probe(nn.Module):
    """A one-parameter module to build a torchattacks object for option checking."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - never called
        return x.flatten(1)[:, :2] * self.w


@dataclass
class TorchAttacksConfig(AttackConfig):
    """attack: the torchattacks class name; norm: 'Linf' or 'L2' (None: the class's own, see the
    module docstring); kwargs: the class's own parameters that were set (the rest keep
    torchattacks' defaults, except ``alpha``, ``n_classes`` and ``seed``: "auto")."""
    attack: str = "PGD"
    norm: str | None = None
    kwargs: dict = field(default_factory=dict)


class TorchAttacksAdapter(Attack):
    """Any ``torchattacks`` attack by class name: ``get_attack("torchattacks:PGD", steps=10)``.

    Options: the shared ones, ``norm``, and the class's own constructor parameters except
    ``model`` and its eps parameter (the sweep sets it). The attack is built once per eps and
    called on the model (with autocast/channels-last as configured)."""
    name = "torchattacks"
    Config = TorchAttacksConfig
    description = ("adapter: any torchattacks attack by class name, e.g. torchattacks:PGD; "
                   "options: the class's own parameters (eps is set by the sweep)")
    _OWN = ("amp", "channels_last", "sanity_eps", "sanity_samples", "keep_adv", "norm")

    def __init__(self, config: TorchAttacksConfig | None = None, *, attack: str | None = None,
                 **options: Any):
        if attack is None:
            attack = config.attack if isinstance(config, TorchAttacksConfig) else "PGD"
        self._info = _class_info(attack)
        legacy = options.pop("kwargs", None)  # the former spelling: kwargs={...}
        if legacy:
            options = {**legacy, **options}
        if isinstance(config, TorchAttacksConfig) and config.attack != attack:
            options = {**self._config_options(config), **options}
            config = None
        super().__init__(config, **options)

    # -- options ----------------------------------------------------------------------------------
    def _option_types(self) -> dict[str, Any]:
        own = self._config_option_types()
        return {**{k: own[k] for k in self._OWN}, **self._info.types}

    def _config_options(self, config: Any) -> dict[str, Any]:
        out = {k: getattr(config, k) for k in self._OWN}
        out.update(getattr(config, "kwargs", {}) or {})
        return out

    def _config_from_options(self, options: dict[str, Any]) -> TorchAttacksConfig:
        values = self._coerce_options(options)
        own = {k: values.pop(k) for k in list(values) if k in self._OWN}
        if own.get("norm") is not None:
            own["norm"] = canonical_norm(own["norm"],
                                         what=f"attack {self.display_name!r} option 'norm'")
        return TorchAttacksConfig(attack=self._info.name, kwargs=values, **own)

    def options(self) -> dict[str, Any]:
        out = {k: getattr(self.config, k) for k in self._OWN}
        out["norm"] = self.norm
        out.update(self._info.option_defaults)
        out.update(self.config.kwargs)
        return out

    @property
    def norm(self) -> str:  # type: ignore[override]
        cfg = getattr(self, "config", None)
        if cfg is not None and cfg.norm:
            return cfg.norm
        return self._info.natural_norm

    @property
    def nominal_steps(self) -> int:  # type: ignore[override]
        s = self.steps
        return 1 if s is None else max(int(s), 1)

    @property
    def display_name(self) -> str:
        return f"torchattacks:{self._info.name}"

    def _identity_config(self) -> dict[str, Any]:
        opts = self.options()
        cfg = {p: opts[p] for p in self._info.types if p not in _NOT_IDENTITY}
        cfg["class"] = self._info.name
        cfg["package"] = package_version(TORCHATTACKS_PACKAGE)
        return cfg

    def _validate_config(self) -> None:
        super()._validate_config()
        info = self._info
        want = self.config.norm
        if want and info.eps_param and not info.norm_param and want != info.natural_norm:
            raise RBFError(f"torchattacks:{info.name} attacks in the {info.natural_norm} norm "
                           f"only (it has no norm parameter); drop norm={want!r} or choose an "
                           f"{want} attack")
        rule = _RULES.get(info.name)
        why = rule(self.options()) if rule else None
        if why:
            raise RBFError(f"torchattacks:{info.name}: {why}")
        # build it once on a probe module so that bad option values fail now, in one line
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                info.cls(_Probe(), **self._build_kwargs(0.01, n_classes=10, seed=0))
        except RBFError:
            raise
        except Exception as exc:  # torchattacks' own checks (ValueError, AssertionError, ...)
            msg = " ".join(str(exc).split()) or type(exc).__name__
            raise RBFError(f"torchattacks:{info.name} rejected its options "
                           f"{self.config.kwargs}: {msg}") from None

    # -- running ----------------------------------------------------------------------------------
    def _build_kwargs(self, eps: float, *, n_classes: int, seed: int) -> dict:
        info = self._info
        opts = self.options()
        kw: dict[str, Any] = {}
        for p in info.params:
            if p == info.eps_param:
                kw[p] = float(eps)
            elif p == "norm":
                kw[p] = _their_spelling(self.norm, info.defaults["norm"])
            else:
                kw[p] = opts[p]
        if kw.get("alpha") == "auto":
            if "steps" in kw:
                kw["alpha"] = 2.5 * float(eps) / max(int(kw["steps"]), 1)
            else:  # keep the class's own alpha/eps ratio
                d_alpha, d_eps = info.defaults["alpha"], info.defaults.get(info.eps_param or "")
                kw["alpha"] = float(d_alpha) * float(eps) / float(d_eps) if d_eps else d_alpha
        if kw.get("n_classes") == "auto":
            kw["n_classes"] = int(n_classes)
        if kw.get("seed") == "auto":
            kw["seed"] = int(seed)
        return kw

    def _attack_eps(self, ctx: Context, x, y, eps, *, seed, sample_ids):
        kw = self._build_kwargs(eps, n_classes=ctx.classes(x),
                                seed=derive_seed(seed, self.display_name, float(eps)) % (2 ** 31))
        with _forked_rng(x.device, derive_seed(seed, self.display_name, "rng", float(eps))):
            with contextlib.redirect_stdout(io.StringIO()):  # "Failed to set device ..." etc.
                atk = self._info.cls(ModuleFn(ctx), **kw)
            atk.set_device(x.device)
            if self._info.name in _NEXT_CLASS_TARGET:
                n = ctx.classes(x)
                atk.set_mode_targeted_by_function(lambda im, lab: (lab + 1) % n, quiet=True)
            with torch.enable_grad():
                x_adv = atk(x, y)
        ctx.work += int(x.shape[0]) * self.nominal_steps
        return x_adv.detach().to(x.dtype)

    def config_dict(self) -> dict:
        d = super().config_dict()
        d["attack"] = self.config.attack
        return d
