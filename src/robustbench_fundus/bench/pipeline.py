"""The batch pipeline: one batch of images through every pending condition, as integer counts.

Per batch (the flow of an image)::

    working crop (uint8) -> x = image/255 -> geometry of the clean crop        (once per batch)
      clean:        model(pre(x))
      corruption c: model(pre(c(x, severity, seed, sample ids, geometry)))  all severities batched
      attack a:     a(model, pre(x), y, eps list, seed, sample ids)         (model-input space)

``pre`` is the model's :class:`~robustbench_fundus.preprocessing.Preprocessing` (Graham or
none, the mask, the resize to the model's input size), always with the clean crop's geometry.
Corruptions are called only through the corruption contract (:class:`Corruption.__call__`),
attacks only through the attack contract (:class:`Attack.__call__`), the model only as the
module it was resolved to. ``(x, y)`` tensor input is model input already: nothing is
preprocessed (see :func:`~robustbench_fundus.bench.evaluate`).
"""
from __future__ import annotations

import time
from typing import Any

import torch

from ..errors import RBFError
from ..grades import NUM_GRADES
from .conditions import ATTACK_SANITY, Condition
from .budget import StageClock
from .screening import batch_counts

Counts = tuple[list[int], float]   # (integer counts + [bad-logits flag], seconds)


class BatchPipeline:
    """Runs the pending conditions of one batch and returns their integer counts."""

    def __init__(self, mi, di, device: torch.device, seed: int, attacks: dict,
                 progress: Any = None, clock: StageClock | None = None,
                 amp: str = "off", channels_last: bool = False):
        self.progress = progress    # anything with advance(units, stage); see work_units
        self.clock = clock if clock is not None else StageClock(device)   # the time budget
        self.m = mi.module
        self.head = mi.head
        self.mi, self.di = mi, di
        self.device = device
        self.seed = int(seed)
        self.pre = None if di.tensor_input else mi.preprocessing
        self.attacks = attacks      # attack_id -> Attack
        self.amp_dtype = torch.bfloat16 if amp == "bf16" else None
        self.memory_format = torch.channels_last if channels_last else None
        if self.memory_format is not None:
            self.m = self.m.to(memory_format=self.memory_format)
        self._corr: dict[str, Any] = {}

    def _advance(self, c: Condition, n: int) -> None:
        if self.progress is not None:
            self.progress.advance(n * work_units(c), c.display)

    def corruption(self, name: str):
        if name not in self._corr:
            from ..corruptions import get_corruption
            self._corr[name] = get_corruption(name)
        return self._corr[name]

    def model_input(self, x_work: torch.Tensor, geom) -> torch.Tensor:
        """A (clean or corrupted) working crop -> model input (tensor input: unchanged)."""
        if self.pre is None:
            return x_work
        with self.clock("preprocessing"):
            return self.pre.model_input(x_work, geom)

    def geometry(self, x_work: torch.Tensor, params: torch.Tensor | None = None):
        """The clean crops' geometry: rebuilt from ``params`` (the loader's ``geometry``, stored
        with each cached crop) when given, else estimated on ``x_work``; the same either way."""
        from ..preprocessing import Geometry, estimate_geometry
        from ..preprocessing.geometry import PARAM_NAMES
        with self.clock("decode_geometry"):
            if params is not None:
                H, W = x_work.shape[-2:]
                want = (x_work.shape[0], len(PARAM_NAMES))
                if tuple(params.shape) != want:
                    raise RBFError(f"batch['geometry'] of shape {tuple(params.shape)} for "
                                   f"{want[0]} images: expected {want} from the loader")
                return Geometry.from_params(params, H, W, device=x_work.device)
            return self.pre.geometry(x_work) if self.pre is not None else \
                estimate_geometry(x_work)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, bool, torch.Tensor]:
        """The head's decisions (grades, or the referral decision), whether any output was
        non-finite, and the outputs. An output the head cannot read is a one-line error."""
        with self.clock("model_forward"):
            if self.memory_format is not None:
                x = x.contiguous(memory_format=self.memory_format)
            if self.amp_dtype is not None:
                with torch.autocast(x.device.type, dtype=self.amp_dtype):
                    out = self.m(x)
                out = out.float()
            else:
                out = self.m(x)
            out = self.head.check(out)
        if out.shape[0] != x.shape[0]:
            raise RBFError(f"the model returned {out.shape[0]} rows for {x.shape[0]} images; it "
                           "must return one row of scores per image")
        bad = not bool(torch.isfinite(out).all())
        return self.head.decode(out), bad, out.float()

    def run(self, batch: dict, pending: list[Condition],
            helpers: dict | None = None) -> dict[Condition, Counts]:
        """Counts of every condition in ``pending`` on ``batch``. ``helpers`` maps an attack
        configuration (``Condition.attack_id``) to extra eps that are swept with the pending ones
        but not returned (the smaller eps already in the store: see ``plan``)."""
        out: dict[Condition, Counts] = {}
        img = batch["image"]
        grades = batch["label"].to(self.device)
        y = self.head.labels(grades)            # the decision's labels (grades, or referable)
        K = self.head.n_labels
        ids = batch["index"].cpu()
        img = img.to(self.device)
        x_raw = img.float().div_(255.0) if img.dtype == torch.uint8 else img.float()
        t0 = time.perf_counter()
        need_geom = self.pre is not None or any(c.kind == "corruption" for c in pending)
        geom = self.geometry(x_raw, batch.get("geometry")) if need_geom else None
        x_clean = self.model_input(x_raw, geom)
        shared = time.perf_counter() - t0
        B = x_raw.shape[0]

        def counts_of(pred, o):   # the decisions' confusion matrix and the screening counts
            with self.clock("metrics_store"):
                return confusion_counts(y, pred, K) + batch_counts(self.head, grades, o, pred,
                                                                   clean_pred)

        # clean (also the reference for the attacks)
        t0 = time.perf_counter()
        clean_pred, bad, clean_out = self.predict(x_clean)
        t_clean = time.perf_counter() - t0 + shared
        clean = next((c for c in pending if c.kind == "clean"), None)
        if clean is not None:
            out[clean] = (counts_of(clean_pred, clean_out) + [int(bad)], t_clean)
            self._advance(clean, B)

        # corruptions: all severities of one corruption in one batched call
        by_name: dict[str, list[Condition]] = {}
        for c in pending:
            if c.kind == "corruption":
                by_name.setdefault(c.name, []).append(c)
        for name, conds in by_name.items():
            t0 = time.perf_counter()
            corr = self.corruption(name)
            sev = torch.tensor([c.severity for c in conds]).repeat_interleave(B)
            rep = torch.arange(B).repeat(len(conds))
            xs = x_raw[rep.to(self.device)]
            g = geom[rep.to(geom.mask.device)]
            with self.clock("corruption"):
                xc = corr(xs, sev, seed=self.seed, sample_ids=ids[rep], geom=g)
            xin = self.model_input(xc, g)
            dt = (time.perf_counter() - t0) / len(conds) + shared
            for k, c in enumerate(conds):
                pk, bk, ok = self.predict(xin[k * B:(k + 1) * B])
                out[c] = (counts_of(pk, ok) + [int(bk)], dt)
                self._advance(c, B)

        # attacks: one sweep per attack configuration over its pending (and helper) eps; a
        # referral-flip configuration attacks the referral decision (the same attack, read
        # through the referral head)
        by_attack: dict[tuple, list[Condition]] = {}
        for c in pending:
            if c.kind in ("attack", "referral"):
                by_attack.setdefault(c.attack_id, []).append(c)
        for aid, conds in by_attack.items():
            t0 = time.perf_counter()
            conds = sorted(conds, key=lambda c: c.eps)
            extra = sorted(set((helpers or {}).get(aid, ())) - {c.eps for c in conds})
            eps = sorted({c.eps for c in conds} | set(extra))
            referral = conds[0].kind == "referral"
            head, labels = self.head, y
            if referral:
                from ..heads import ReferralHead
                head = ReferralHead(base=self.head, threshold=conds[0].threshold)
                labels = head.labels(grades)
            x_atk = x_clean if self.memory_format is None else \
                x_clean.contiguous(memory_format=self.memory_format)
            with torch.enable_grad(), self.clock("attack"):
                res = self.attacks[aid[:3]](self.m, x_atk, labels, eps, seed=self.seed,
                                            sample_ids=ids, keep_adv=False, head=head)
            counts = res.counts
            dt = (time.perf_counter() - t0) / len(conds) + shared + t_clean / len(conds)
            for c in conds:
                k = eps.index(c.eps)
                if referral:
                    vec = referral_counts(labels, res.clean_correct, res.per_eps[k].success)
                else:
                    san = []
                    for name in ATTACK_SANITY:
                        v = getattr(counts, name)
                        san.append(int(v[k]) if isinstance(v, (list, tuple)) else int(v))
                    adv_out = res.per_eps[k].adv_out
                    adv_pred = self.head.decode(adv_out)
                    vec = [counts.n, counts.n_attacked, int(counts.n_success[k]), *san,
                           *counts_of(adv_pred, adv_out)]
                out[c] = (vec + [int(bad)], dt)
                self._advance(c, B)
        return out


def referral_counts(labels: torch.Tensor, attacked: torch.Tensor, flipped: torch.Tensor
                    ) -> list[int]:
    """:data:`~robustbench_fundus.bench.conditions.REFERRAL_COUNTS` of one batch: per
    referral label, the eyes, those decided right on clean input (attacked) and those whose
    decision the attack flipped."""
    ref = labels == 1
    out = []
    for side in (ref, ~ref):
        out += [int(side.sum()), int((side & attacked).sum()), int((side & flipped).sum())]
    return out


def work_units(c: Condition) -> int:
    """The relative cost of one image through condition ``c``, for progress: one forward for
    clean and corrupted images, the step count (at least 1) of an attack at one eps."""
    if c.kind in ("attack", "referral"):
        return max(1, int(c.steps or 1))
    return 1


def confusion_counts(y: torch.Tensor, pred: torch.Tensor, k: int = NUM_GRADES) -> list[int]:
    """The flattened K x K confusion matrix (rows = true label) of one batch. A decision
    outside 0..K-1 (-1: non-finite output, which the caller reports) is never clamped into a
    label: it is counted in no cell."""
    ok = (pred >= 0) & (pred < k)
    return torch.bincount((y[ok] * k + pred[ok]).cpu(), minlength=k * k).tolist()
