"""The attack contract: one final ``__call__`` that every attack goes through.

``attack(model, x, y, eps=[...], seed=0, sample_ids=None) -> SweepResult``

* ``x``: float (B,3,H,W) in [0,1] *model-input space* (normalisation lives inside the model);
  ``y``: (B,) integer labels; ``eps``: ascending list of radii in [0,1] pixel units.
* The base class (not the attack) validates the inputs, puts the model in eval mode and gives it
  back in the mode it came in (every submodule's ``training`` flag), evaluates the clean batch,
  attacks only the clean-correct samples, projects every adversarial batch onto the eps ball of
  the attack's norm and onto [0,1], confirms every claimed success with a float32 forward pass
  (under bf16 autocast a claim that float32 rejects is re-attacked in float32), enforces
  monotonicity in eps (a sample broken at eps_k keeps its perturbation at every larger eps) and
  computes the sanity flags.
* Subclasses implement :meth:`Attack._sweep` (the whole sweep, e.g. PGD's engine) or only
  :meth:`Attack._attack_eps` (one eps at a time; the base class then attacks only the survivors
  of the previous eps).
* Options are typed (the fields of the attack's config dataclass): :meth:`Attack.options`,
  :meth:`Attack.with_options`; :meth:`Attack.identity` says what ran.

Layering (no cycles): ``context`` <- ``results``, ``eps``, ``options``, ``identity`` <- ``engine``
<- ``base`` <- ``pgd``, ``external``, ``callable`` <- the package. This module never imports a
concrete attack. Counts are plain integers (:class:`SweepCounts`) so they can be summed over
batches and ranks.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import math
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
import torch.nn as nn

from ..errors import RBFError
from .context import (AMP_CHOICES, NORMS, Context, ModelFn, ModuleFn, canonical_norm,  # noqa: F401
                      distance, eval_mode, predict, project, resolve_amp,
                      resolve_channels_last)
from .engine import sanity_pgd
from .eps import (DEFAULT_EPS, _check_eps, check_eps, default_eps, format_eps,  # noqa: F401
                  parse_eps)
from .identity import EXECUTION_OPTIONS, AttackIdentity  # noqa: F401
from .options import annotation_from_default, coerce
from .results import (MASKED_GRAD_FRACTION, SCHEMA_VERSION, EpsResult, SweepCounts,  # noqa: F401
                      SweepResult)

# the names this module had before the split
_resolve_amp = resolve_amp
_resolve_cl = resolve_channels_last

Sweep = list  # list[tuple[torch.Tensor, torch.Tensor]]: per eps, (x_adv, broken_at_step)


# ------------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------------
@dataclass
class AttackConfig:
    """Options shared by every attack (all execution-only: none of them changes which samples
    break, so none is part of an attack's identity).

    amp: ``"auto"`` (bf16 autocast on CUDA, off on CPU), ``"bf16"`` or ``"off"``; input
        gradients and losses are always float32, clean/verification passes run in float32 and
        every claimed break is confirmed in float32 (rejected claims are re-attacked in float32).
    channels_last: ``"auto"`` (on CUDA), ``True`` or ``False``: feed inputs in channels-last
        memory format (the model's weights are not touched).
    sanity_eps: radius of the "huge eps" check (None: 0.5 for Linf, 0.25*sqrt(C*H*W) for L2;
        0 disables it); sanity_samples: how many survivors of the largest eps it attacks.
    keep_adv: keep the adversarial batch of every eps in the result (memory: len(eps) x batch).
    """
    amp: str | bool = "auto"
    channels_last: bool | str = "auto"
    sanity_eps: float | None = None
    sanity_samples: int = 8
    keep_adv: bool = True


@functools.lru_cache(maxsize=None)
def _field_types(config_cls: type) -> tuple[tuple[str, Any], ...]:
    """(field, annotation) of a config dataclass; an annotation that cannot be resolved is
    judged by the field's default."""
    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:  # e.g. a string annotation naming a class local to a function
        hints = {}
    out = []
    for f in dataclasses.fields(config_cls):
        if not f.init:
            continue
        ann = hints.get(f.name)
        if ann is None:
            ann = f.type if not isinstance(f.type, str) else \
                annotation_from_default(None if f.default is dataclasses.MISSING else f.default)
        out.append((f.name, ann))
    return tuple(out)


class _DefaultEps:
    """``Attack.default_eps``: the bench's default sweep for the attack's norm (on the class, for
    its class-level norm; on an instance, for the instance's norm). A subclass may set a tuple."""

    def __get__(self, obj: Any, owner: type) -> tuple[float, ...]:
        norm = getattr(owner if obj is None else obj, "norm", "Linf")
        return DEFAULT_EPS.get(norm if isinstance(norm, str) else "Linf", DEFAULT_EPS["Linf"])


# ------------------------------------------------------------------------------------------------
# the base class
# ------------------------------------------------------------------------------------------------
class Attack:
    """Base class of every attack. Call it; do not override ``__call__``.

    Subclasses set ``name``, ``norm`` (``"Linf"`` or ``"L2"``), ``Config`` (a dataclass derived
    from :class:`AttackConfig`) and implement :meth:`_sweep` or :meth:`_attack_eps`.
    """
    name: ClassVar[str] = "attack"
    norm: ClassVar[str] = "Linf"
    Config: ClassVar[type] = AttackConfig
    description: ClassVar[str] = ""
    #: steps reported as ``broken_at_step`` for attacks that do not report steps themselves
    nominal_steps: int = 0
    default_eps = _DefaultEps()

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "__call__" in cls.__dict__:
            raise TypeError(f"{cls.__name__} must not override Attack.__call__ (it is final); "
                            "implement _sweep or _attack_eps")

    def __init__(self, config: AttackConfig | None = None, **options: Any):
        if config is not None and not (dataclasses.is_dataclass(config)
                                       and not isinstance(config, type)):
            raise RBFError(f"attack {self.display_name!r}: config must be a {self.Config.__name__} "
                           f"instance (or pass options as keywords), got {config!r}")
        if config is None:
            config = self._config_from_options(options)
        elif options:
            config = self._config_from_options({**self._config_options(config), **options})
        self.config = config
        self._validate_config()

    # -- options ----------------------------------------------------------------------------------
    @classmethod
    def _config_option_types(cls) -> dict[str, Any]:
        """Option name -> type annotation, from the fields of ``cls.Config``."""
        return dict(_field_types(cls.Config)) if dataclasses.is_dataclass(cls.Config) else {}

    def _option_types(self) -> dict[str, Any]:
        """Every option settable on this attack -> its type (subclasses may add their own)."""
        return self._config_option_types()

    def _config_options(self, config: Any) -> dict[str, Any]:
        """The option values held by ``config``."""
        return {k: getattr(config, k) for k in self._option_types() if hasattr(config, k)}

    def _no_option(self, key: str) -> RBFError:
        return RBFError(f"attack {self.display_name!r} has no option {key!r}; its options are "
                        f"{', '.join(sorted(self._option_types()))}")

    def _coerce_options(self, options: dict[str, Any]) -> dict[str, Any]:
        types_ = self._option_types()
        for k in options:
            if k not in types_:
                raise self._no_option(k)
        return {k: coerce(v, types_[k], where=f"attack {self.display_name!r} option {k!r}")
                for k, v in options.items()}

    def _config_from_options(self, options: dict[str, Any]) -> Any:
        values = self._coerce_options(options)
        try:
            return self.Config(**values)
        except TypeError as exc:  # a Config whose fields are not all options
            raise RBFError(f"attack {self.display_name!r}: {exc}") from None

    def options(self) -> dict[str, Any]:
        """Every option settable on this attack with its current value."""
        return self._config_options(self.config)

    def with_options(self, **options: Any) -> "Attack":
        """A new configured instance with ``options`` changed (same coercion and validation as
        :func:`~robustbench_fundus.attacks.get_attack`); this one is left as it is."""
        new = copy.copy(self)
        new.config = self._config_from_options({**self._config_options(self.config), **options})
        new._validate_config()
        return new

    @property
    def steps(self) -> int | None:
        """The attack's step count (the ``steps`` option), or None when it has none."""
        v = self.options().get("steps")
        return int(v) if isinstance(v, int) and not isinstance(v, bool) else None

    # -- identity ---------------------------------------------------------------------------------
    def _identity_config(self) -> dict[str, Any]:
        """Every option that affects the result (execution-only ones are dropped later)."""
        return dict(self.options())

    def identity(self) -> AttackIdentity:
        """What runs: name, norm, steps, the options that change the result, their hash and a
        leaderboard label (see :class:`AttackIdentity`)."""
        return AttackIdentity.build(self.display_name, self.norm, self.steps,
                                    self._identity_config())

    def _validate_config(self) -> None:
        name = self.display_name
        if self.norm not in NORMS:
            raise RBFError(f"attack {name!r}: norm must be one of {NORMS}, got {self.norm!r}")
        c = self.config
        amp = getattr(c, "amp", "auto")
        if not (amp in (*AMP_CHOICES, "none", "fp32") or isinstance(amp, bool) or amp is None):
            raise RBFError(f"attack {name!r}: amp must be one of {', '.join(AMP_CHOICES)}, got "
                           f"{amp!r}")
        cl = getattr(c, "channels_last", "auto")
        if not (cl == "auto" or isinstance(cl, bool)):
            raise RBFError(f"attack {name!r}: channels_last must be auto, true or false, got "
                           f"{cl!r}")
        se = getattr(c, "sanity_eps", None)
        if se is not None and not (isinstance(se, (int, float)) and math.isfinite(se)
                                   and se >= 0):
            raise RBFError(f"attack {name!r}: sanity_eps must be none or a number >= 0 (0 "
                           f"disables the huge-eps check), got {se!r}")
        ss = getattr(c, "sanity_samples", 8)
        if not isinstance(ss, int) or isinstance(ss, bool) or ss < 0:
            raise RBFError(f"attack {name!r}: sanity_samples must be an integer >= 0, got {ss!r}")

    @property
    def display_name(self) -> str:
        """The name results carry (e.g. ``torchattacks:PGD`` for the adapter)."""
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({getattr(self, 'config', None)!r})"

    # -- the final entry point --------------------------------------------------------------------
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 eps: float | Sequence[float], *, seed: int = 0,
                 sample_ids: torch.Tensor | Sequence[int] | None = None,
                 keep_adv: bool | None = None, head: Any = None) -> SweepResult:
        """Attack ``model`` on ``(x, y)`` at every radius of ``eps`` (ascending).

        ``head`` (a :class:`robustbench_fundus.heads.Head`): how the model's outputs become
        decisions and which loss the attack ascends; ``y`` is then in the head's label space
        (grades, or the 0/1 referral decision of a binary head) and a sample is broken when
        its decision changes. None: a classifier read by argmax, attacked with cross-entropy."""
        eps_list = check_eps(eps)
        x, y, ids = self._check_inputs(x, y, sample_ids)
        keep = self.config.keep_adv if keep_adv is None else bool(keep_adv)
        device = x.device
        ctx = Context(device=device, amp=resolve_amp(self.config.amp, device),
                      channels_last=resolve_channels_last(self.config.channels_last, device),
                      model=model, head=head)
        B = x.shape[0]
        counts = SweepCounts(eps=eps_list, n=B)
        with eval_mode(model):
            if B == 0:
                return self._empty_result(x, y, ids, eps_list, counts, keep, seed)
            with torch.no_grad():
                logits = ctx.forward_fp32(x)
            from ..heads import check_output
            check_output(logits, head)
            if logits.shape[0] != B:
                raise RBFError(f"the model returned {logits.shape[0]} rows for {B} images; it "
                               "must return one row of scores per image")
            ctx.n_classes = int(logits.shape[1])
            clean_correct = ctx.predict(logits) == y
            counts.batches = 1
            counts.n_attacked = int(clean_correct.sum())
            counts.prob_batches = int((head is None or head.name == "classification") and
                                      self._looks_like_probabilities(logits))
            counts.randomized_batches = int(self._looks_randomized(ctx, x, logits))

            att = clean_correct.nonzero().squeeze(1)
            xa, ya, ida = x[att], y[att], ids[att]
            verdicts = rejected = None
            if att.numel():
                proj = self._project_all(xa, self._checked_sweep(ctx, xa, ya, eps_list, seed=seed,
                                                                 sample_ids=ida), eps_list)
                proj, verdicts, rejected = self._reattack_rejected(ctx, xa, ya, ida, eps_list,
                                                                   proj, seed=seed)
                if not ctx.grad_recorded:
                    self._grad_check(ctx, xa, ya)
            else:
                none = torch.zeros(0, dtype=torch.bool, device=device)
                proj = [(xa, torch.full((0,), -1, dtype=torch.int64, device=device), none)
                        for _ in eps_list]

            # final float32 verification, monotonicity, scatter back to the full batch
            per_eps: list[EpsResult] = []
            first_broken = torch.full((B,), -1, dtype=torch.int64, device=device)
            prev_x: torch.Tensor | None = None
            prev_s = torch.zeros(att.numel(), dtype=torch.bool, device=device)
            prev_o = logits[att].float()
            for k, e in enumerate(eps_list):
                xk, steps_k, moved = proj[k]
                counts.n_projected[k] = int(moved.sum()) + int(ctx.projected.get(k, 0))
                claimed = steps_k >= 0
                same = prev_s & (xk == prev_x).flatten(1).all(1) if prev_x is not None else \
                    torch.zeros_like(prev_s)
                need = ~same
                fooled = torch.zeros_like(prev_s)
                todo = need
                if verdicts is not None:  # claims already checked in float32 (autocast runs)
                    known, v_fooled = verdicts[k]
                    reuse = need & known
                    fooled[reuse] = v_fooled[reuse]
                    todo = need & ~known
                out_k = prev_o.clone()
                if need.any():  # the float32 output at every new point (kept in the result)
                    with torch.no_grad():
                        out_k[need] = ctx.forward_fp32(xk[need]).float()
                if todo.any():
                    fooled[todo] = ctx.predict(out_k[todo]) != ya[todo]
                succ = same | (need & fooled)
                unverified = claimed & ~succ
                if rejected is not None:
                    unverified = unverified | rejected[k]
                counts.n_unverified[k] = int(unverified.sum()) + \
                    int(ctx.counters.reattacked.get(k, 0))
                lost = prev_s & ~succ  # broken before: keep the smaller-eps perturbation
                if lost.any():
                    xk = torch.where(lost.view(-1, 1, 1, 1), prev_x, xk)
                    out_k = torch.where(lost.view(-1, 1), prev_o, out_k)
                    succ = succ | lost
                steps_out = torch.where(succ, steps_k.clamp(min=0), torch.full_like(steps_k, -1))
                steps_out = torch.where(same | lost, torch.zeros_like(steps_out), steps_out)
                new = succ & ~prev_s
                s_full = torch.zeros(B, dtype=torch.bool, device=device)
                s_full[att] = succ
                st_full = torch.full((B,), -1, dtype=torch.int64, device=device)
                st_full[att] = steps_out
                fb = first_broken[att]
                fb[new] = k
                first_broken[att] = fb
                x_full = None
                if keep:
                    x_full = x.clone()
                    x_full[att] = xk
                adv_correct = clean_correct & ~s_full
                counts.n_success[k] = int(s_full.sum())
                counts.n_robust[k] = int(adv_correct.sum())
                o_full = logits.float().clone()
                o_full[att] = out_k
                per_eps.append(EpsResult(e, s_full, st_full, adv_correct, x_full, o_full))
                prev_x, prev_s, prev_o = xk, succ, out_k

            self._huge_eps_check(ctx, xa, ya, ida, prev_s, eps_list, counts, seed)
        counts.grad_checked, counts.grad_zero = ctx.grad_checked, ctx.grad_zero
        counts.grad_nonfinite, counts.work = ctx.grad_nonfinite, ctx.work
        return SweepResult(attack=self.display_name, norm=self.norm, eps=eps_list,
                           clean_correct=clean_correct, sample_ids=ids, per_eps=per_eps,
                           counts=counts, first_broken=first_broken, seed=int(seed),
                           config=self.config_dict(), identity=self.identity().to_dict())

    run = __call__

    # -- hooks for subclasses ---------------------------------------------------------------------
    def _sweep(self, ctx: Context, x: torch.Tensor, y: torch.Tensor, eps: list[float], *,
               seed: int, sample_ids: torch.Tensor) -> Sweep:
        """Default sweep: attack each eps separately, only the samples not yet broken, carrying
        broken samples forward. A sample counts as broken only when a float32 forward confirms
        it (see :meth:`_confirm_breaks`). Returns, per eps, the adversarial batch and
        ``broken_at_step`` (-1 where the attack does not claim success)."""
        B = x.shape[0]
        x_adv = x.clone()
        broken = torch.zeros(B, dtype=torch.bool, device=x.device)
        out = []
        for k, e in enumerate(eps):
            steps = torch.full((B,), -1, dtype=torch.int64, device=x.device)
            steps[broken] = 0
            act = (~broken).nonzero().squeeze(1)
            if e > 0 and act.numel():
                xs = self._attack_projected(ctx, x[act], y[act], e, k, seed=seed,
                                            sample_ids=sample_ids[act])
                with torch.no_grad():
                    claim = ctx.predict(ctx.forward(xs)) != y[act]
                ctx.work += int(act.numel())
                xs, fooled = self._confirm_breaks(ctx, x[act], y[act], xs, claim, e, k, seed=seed,
                                                  sample_ids=sample_ids[act])
                x_adv[act] = xs
                idx = act[fooled]
                broken[idx] = True
                steps[idx] = self.nominal_steps
            out.append((x_adv.clone(), steps))
        return out

    def _attack_eps(self, ctx: Context, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                    seed: int, sample_ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} implements neither _sweep nor "
                                  "_attack_eps")

    # -- float32 confirmation (two places: the default sweep, and __call__ for every sweep) -------
    def _confirm_breaks(self, ctx: Context, x: torch.Tensor, y: torch.Tensor, xs: torch.Tensor,
                        claim: torch.Tensor, eps: float, k: int, *, seed: int,
                        sample_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Default sweep, one eps: ``claim`` is the attack-precision check of ``xs``. Under
        autocast every claim is confirmed with a float32 forward; a claim float32 rejects is
        re-attacked by :meth:`_attack_eps` in float32 (:meth:`Context.fp32`: same model and
        counters, autocast off) at this eps, and the float32 outcome decides. Returns
        ``(xs, fooled)``. Without autocast: ``(xs, claim)`` at no extra cost."""
        if not ctx.amp or not bool(claim.any()):
            return xs, claim
        fooled = ctx.confirm(xs, y, claim)
        rej = claim & ~fooled
        if not rej.any():
            return xs, fooled
        ctx.counters.reattacked[k] = ctx.counters.reattacked.get(k, 0) + int(rej.sum())
        idx = rej.nonzero().squeeze(1)
        f32 = ctx.fp32()
        xr = self._attack_projected(f32, x[idx], y[idx], eps, k, seed=seed,
                                    sample_ids=sample_ids[idx])
        with torch.no_grad():
            fr = f32.predict(f32.forward(xr)) != y[idx]
        ctx.work += int(idx.numel())
        xs, fooled = xs.clone(), fooled.clone()
        xs[idx] = xr
        fooled[idx] = fr
        return xs, fooled

    def _reattack_rejected(self, ctx: Context, x: torch.Tensor, y: torch.Tensor,
                           ids: torch.Tensor, eps: list[float], proj: list, *, seed: int
                           ) -> tuple[list, list | None, list | None]:
        """Every sweep, under autocast: check each claimed break of the returned sweep in
        float32; samples with a rejected claim at any eps are attacked again from scratch by
        :meth:`_sweep` over the whole eps list in float32 (:meth:`Context.fp32`), and their
        results replace the first ones. Returns ``(proj, verdicts, rejected)``: per eps the
        float32 verdicts ``(checked, fooled)`` still valid (reused by the final verification)
        and the rejected claims. Without autocast: ``(proj, None, None)``, nothing runs."""
        if not ctx.amp:
            return proj, None, None
        verdicts = self._verify_claims(ctx, x, y, proj)
        rejected = [known & ~fooled for known, fooled in verdicts]
        redo = torch.stack(rejected).any(0)
        if not redo.any():
            return proj, verdicts, rejected
        idx = redo.nonzero().squeeze(1)
        sub = self._project_all(x[idx], self._checked_sweep(ctx.fp32(), x[idx], y[idx], eps,
                                                            seed=seed, sample_ids=ids[idx]), eps)
        out = []
        for k, ((xk, st, mv), (sx, sst, smv)) in enumerate(zip(proj, sub)):
            xk, st, mv = xk.clone(), st.clone(), mv.clone()
            xk[idx], st[idx], mv[idx] = sx, sst, smv
            known, fooled = verdicts[k]
            known = known.clone()
            known[idx] = False  # replaced: verified afresh by the final pass
            verdicts[k] = (known, fooled)
            out.append((xk, st, mv))
        return out, verdicts, rejected

    @staticmethod
    def _verify_claims(ctx: Context, x: torch.Tensor, y: torch.Tensor, proj: list
                       ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per eps: (claimed, fooled in float32) for the claimed samples; a claim carried
        unchanged from the previous eps where it was confirmed is not run again."""
        out = []
        prev_x: torch.Tensor | None = None
        prev_ok = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for xk, st, _ in proj:
            claimed = st >= 0
            carried = claimed & prev_ok & (xk == prev_x).flatten(1).all(1) \
                if prev_x is not None else torch.zeros_like(claimed)
            chk = claimed & ~carried
            fooled = carried.clone()
            if chk.any():
                with torch.no_grad():
                    fooled[chk] = ctx.predict(ctx.forward_fp32(xk[chk])) != y[chk]
            out.append((claimed, fooled))
            prev_x, prev_ok = xk, fooled
        return out

    # -- pieces -----------------------------------------------------------------------------------
    def _checked_sweep(self, ctx: Context, x: torch.Tensor, y: torch.Tensor, eps: list[float],
                       *, seed: int, sample_ids: torch.Tensor) -> Sweep:
        raw = self._sweep(ctx, x, y, eps, seed=seed, sample_ids=sample_ids)
        if len(raw) != len(eps):
            raise RuntimeError(f"{self.display_name}: _sweep returned {len(raw)} results for "
                               f"{len(eps)} eps")
        return raw

    def _repair(self, x: torch.Tensor, raw: Any, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``raw`` projected onto the eps ball and [0,1] (non-finite values reset to ``x``), and
        which samples had to move by more than 1e-6."""
        if not isinstance(raw, torch.Tensor) or tuple(raw.shape) != tuple(x.shape):
            raise RBFError(f"attack {self.display_name!r} returned "
                           f"{type(raw).__name__} {tuple(getattr(raw, 'shape', ()))} for an input "
                           f"of shape {tuple(x.shape)}; it must return a tensor of that shape")
        raw = raw.detach().to(device=x.device, dtype=x.dtype)
        raw = torch.where(torch.isfinite(raw), raw, x)
        xs = project(x, raw, eps, self.norm)
        if x.shape[0] == 0:
            return xs, torch.zeros(0, dtype=torch.bool, device=x.device)
        return xs, (xs - raw).flatten(1).abs().amax(1) > 1e-6

    def _project_all(self, x: torch.Tensor, raw: Sweep, eps: list[float]) -> list:
        out = []
        for e, (xr, st) in zip(eps, raw):
            xk, moved = self._repair(x, xr, e)
            out.append((xk, torch.as_tensor(st).to(device=x.device, dtype=torch.int64), moved))
        return out

    def _attack_projected(self, ctx: Context, x: torch.Tensor, y: torch.Tensor, eps: float,
                          k: int, *, seed: int, sample_ids: torch.Tensor) -> torch.Tensor:
        """One eps of :meth:`_attack_eps`, projected (counted in ``ctx.projected[k]``)."""
        raw = self._attack_eps(ctx, x, y, eps, seed=seed, sample_ids=sample_ids)
        xs, moved = self._repair(x, raw, eps)
        ctx.projected[k] = ctx.projected.get(k, 0) + int(moved.sum())
        return xs

    def config_dict(self) -> dict:
        return {k: (v if isinstance(v, (int, float, str, bool, type(None))) else repr(v))
                for k, v in dataclasses.asdict(self.config).items()}

    def _check_inputs(self, x: Any, y: Any, sample_ids: Any):
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            raise RBFError("attack input x must be a float tensor (B, C, H, W) in [0,1], got "
                           f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
        if x.numel() and (not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1):
            raise RBFError("attack input x must lie in [0,1] (model-input space; normalisation "
                           f"belongs inside the model), got range [{float(x.min()):.3g}, "
                           f"{float(x.max()):.3g}]")
        y = torch.as_tensor(y, device=x.device)
        if y.dim() != 1 or y.shape[0] != x.shape[0] or y.is_floating_point():
            raise RBFError(f"labels y must be an integer tensor of shape ({x.shape[0]},), got "
                           f"{y.dtype} {tuple(y.shape)}")
        y = y.long()
        if sample_ids is None:
            ids = torch.arange(x.shape[0], device=x.device)
        else:
            ids = torch.as_tensor(sample_ids, device=x.device)
            if ids.shape != (x.shape[0],) or ids.is_floating_point():
                raise RBFError(f"sample_ids must be integers of shape ({x.shape[0]},), got "
                               f"{tuple(ids.shape)}")
            ids = ids.long()
        return x.detach(), y, ids

    @staticmethod
    def _looks_like_probabilities(logits: torch.Tensor) -> bool:
        lo = logits.detach()
        if not torch.isfinite(lo).all():
            return False
        return bool(lo.min() > -1e-5 and lo.max() < 1 + 1e-5
                    and ((lo.sum(1) - 1).abs() < 1e-4).all())

    @staticmethod
    def _looks_randomized(ctx: Context, x: torch.Tensor, logits: torch.Tensor, n: int = 32
                          ) -> bool:
        k = min(n, x.shape[0])
        with torch.no_grad():
            again = ctx.forward_fp32(x[:k])
        a = logits[:k] / (logits[:k].norm(dim=1, keepdim=True) + 1e-10)
        b = again / (again.norm(dim=1, keepdim=True) + 1e-10)
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            return False
        return bool((a - b).norm(dim=1).max() > 1e-4
                    or (logits[:k].argmax(1) != again.argmax(1)).any())

    @staticmethod
    def _grad_check(ctx: Context, x: torch.Tensor, y: torch.Tensor, n: int = 64) -> None:
        """Input-gradient check at the clean point (for attacks that did not record one)."""
        k = min(n, x.shape[0])
        with torch.enable_grad():
            xg = x[:k].clone().requires_grad_(True)
            loss = ctx.loss(ctx.forward(xg), y[:k])
            (g,) = torch.autograd.grad(loss, xg)
        ctx.record_grad(g)

    def _default_sanity_eps(self, x: torch.Tensor) -> float:
        if self.config.sanity_eps is not None:
            return float(self.config.sanity_eps)
        if self.norm == "Linf":
            return 0.5
        return 0.25 * math.sqrt(x[0].numel())

    def _huge_eps_check(self, ctx: Context, x: torch.Tensor, y: torch.Tensor,
                        ids: torch.Tensor, broken_last: torch.Tensor, eps: list[float],
                        counts: SweepCounts, seed: int) -> None:
        """Attack up to ``sanity_samples`` survivors of the largest eps at a huge eps with a
        margin-loss PGD (same norm); every one of them should break."""
        if x.shape[0] == 0 or self.config.sanity_samples <= 0:
            return
        huge = self._default_sanity_eps(x)
        if huge <= 0:
            return
        surv = (~broken_last).nonzero().squeeze(1)[: self.config.sanity_samples]
        if surv.numel() == 0:
            return
        if eps[-1] >= huge:  # the sweep itself went that far
            counts.huge_checked += int(surv.numel())
            counts.huge_unbroken += int(surv.numel())
            return
        fooled = sanity_pgd(ctx, self.norm, x[surv], y[surv], huge, seed=seed,
                            sample_ids=ids[surv])
        counts.huge_checked += int(surv.numel())
        counts.huge_unbroken += int((~fooled).sum())

    def _empty_result(self, x, y, ids, eps_list, counts, keep, seed) -> SweepResult:
        z = torch.zeros(0, dtype=torch.bool, device=x.device)
        zi = torch.zeros(0, dtype=torch.int64, device=x.device)
        per = [EpsResult(e, z, zi, z, x.clone() if keep else None) for e in eps_list]
        return SweepResult(self.display_name, self.norm, eps_list, z, ids, per, counts, zi,
                           int(seed), self.config_dict(), identity=self.identity().to_dict())
