"""``evaluate()``: clean, corrupted and attacked performance of one model in one pass.

The run, stage by stage (each in its own module of this package):

* :mod:`.resolve`: the model (checkpoint, module or the demo model) with the preprocessing that
  feeds it, the data set and its fingerprint, the device; the attack through the attack stage's
  :func:`~robustbench_fundus.attacks.resolve_attack` (an ``Attack`` or a registered name only);
* :mod:`.conditions`: what is measured, each condition with the identity of what produced it;
* :mod:`.plan`: which (chunk, condition) pairs the store still needs, and the chunk loop;
* :mod:`.pipeline`: one batch through every pending condition, as integer counts;
* :mod:`.rows` and :mod:`.report`: rows from summed counts, the typed report from rows;
* :mod:`.flags`, :mod:`.saliency`, :mod:`.progress`; :mod:`robustbench_fundus.distributed` for
  ``torchrun`` sharding.

**Tensor input.** ``data=(x, y)`` is taken as model input already: no preprocessing is applied,
and corruptions (when requested) are applied to ``x`` directly, with geometry estimated from
``x`` -- meaningful only when ``x`` is a raw working-size photograph and the model expects no
preprocessing; pass a folder or a dataset to get the full raw-photo flow.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import platform
import time
from typing import Any

import torch

from .. import __version__
from ..distributed import Dist
from ..errors import RBFError
from ..grades import NUM_GRADES
from .conditions import (Condition, attack_conditions, clean_condition, corruption_condition,
                         eps_sweep, resolve_corruptions, saliency_condition)
from .budget import StageClock
from .flags import make_flags, sanity_flags
from .options import DataOptions, RunOptions
from .plan import make_plan, precision, run_plan
from .report import BenchReport, Flag
from .resolve import resolve_data, resolve_device, resolve_model
from .rows import build_report, finalize_row
from .saliency import run_saliency

DEFAULT_SALIENCY_STEPS = 32


def build_conditions(corruptions: Any, severities: Any, attack: Any, eps: Any,
                     n_labels: int = NUM_GRADES, referral_threshold: int | None = None
                     ) -> list[Condition]:
    """The conditions of a run: clean, each corruption at each severity, ``attack`` (an
    :class:`~robustbench_fundus.attacks.Attack` or None) at each eps of its sweep, and, with
    ``referral_threshold``, the same attack on the referral decision (referral flips);
    ``n_labels``: the labels of the model's decision (5 grades, 2 for a binary head)."""
    from ..corruptions import get_corruption, parse_severities

    conds = [clean_condition(n_labels)]
    names = resolve_corruptions(corruptions)
    if names:
        sevs = parse_severities(severities if severities is not None else "1-4",
                                max_severity=max(get_corruption(n).max_severity for n in names))
        for n in names:
            corr = get_corruption(n)
            over = [s for s in sevs if s > corr.max_severity]
            if over:
                raise RBFError(f"--severities {','.join(map(str, over))}: {n} has severities "
                               f"1-{corr.max_severity}; ask for those, or leave {n} out")
            for s in sevs:
                conds.append(corruption_condition(corr, s, n_labels))
    if attack is not None:
        sweep = eps_sweep(eps, attack.norm, attack.default_eps)
        conds += attack_conditions(attack, sweep, n_labels)
        if referral_threshold is not None:
            conds += attack_conditions(attack, sweep, n_labels, kind="referral",
                                       threshold=referral_threshold)
    return conds


def evaluate(model: Any = None, data: Any = None, corruptions: Any = "all",
             severities: Any = (1, 2, 3, 4), attack: Any = "pgd", eps: Any = None,
             steps: int | None = None, seed: int = 0, device: str | torch.device | None = None,
             limit: int | None = None, store: Any = None, *,
             attack_options: dict | None = None, preprocessing: Any = None,
             head: Any = None, head_options: dict | None = None, data_space: str | None = None,
             referable_threshold: int = 2, referral_flip: bool = False,
             screening_line: dict | None = None,
             name: str | None = None, arch: str | None = None, trust_checkpoint: bool = False,
             saliency: int = 0, saliency_steps: int = DEFAULT_SALIENCY_STEPS,
             data_options: DataOptions | None = None,
             run: RunOptions | None = None) -> BenchReport:
    """Benchmark ``model`` on ``data``: clean, corrupted and attacked. Returns a
    :class:`~robustbench_fundus.bench.BenchReport`.

    ``model``: a checkpoint path (any format :func:`~robustbench_fundus.models.load_model`
    reads, never unpickled unless ``trust_checkpoint=True``; ``arch`` when it cannot tell), an
    ``nn.Module`` taking [0,1] RGB input and owning its normalisation, or None (the bundled demo
    model). ``preprocessing``: ``"graham"`` or ``"none"`` (or a
    :class:`~robustbench_fundus.preprocessing.Preprocessing`) to override what the model
    declares; a model that declares nothing gets the library default (Graham), flagged
    ``preprocessing_assumed``; what was applied is in ``report.provenance["preprocessing"]``.
    ``head``: how the model's output is read (``"classification"``: 5 logits, argmax;
    ``"regression"``: 1 score cut at ``head_options={"thresholds": (0.5, 1.5, 2.5, 3.5)}``;
    ``"ordinal"``: 4 cumulative logits; ``"binary"``: referable DR from 1 or 2 logits, with
    ``head_options={"threshold": 2}``; see :mod:`robustbench_fundus.heads`); None: what the
    model declares (the library's checkpoints record it), else classification. An output no
    head reads is a one-line error naming the width and the heads that fit.
    ``data``: a folder of labelled photographs, ``"synthetic:N"``, None (synthetic images), the
    library's datasets, ``(x, y)`` tensors, or data a user has: a Dataset of ``(image, grade)``
    tuples or dicts, an ``ImageFolder`` (folders named 0-4), a ``DataLoader`` (not shuffled), a
    list of ``(path, grade)`` (see :mod:`robustbench_fundus.data.adapters`). ``data_space``:
    ``"photo"`` (raw photographs: geometry, corruptions and the preprocessing apply) or
    ``"model_input"`` (already model input: corruptions act on it directly, nothing is
    preprocessed); None: ``(x, y)`` tensors are model input, everything else photographs;
    recorded in the report. ``corruptions``:
    ``"all"`` (the four fundus corruptions), ``"imagenet-c"``, ``"none"``/None, or names (a list
    or a comma-separated string). ``severities``: ``"1-4"``, ``[2, 4]``.
    ``attack``: a registered name (``"pgd"``, ``"pgd_l2"``, ``"fgsm"``, ``"autoattack"``,
    ``"torchattacks:<Name>"``, a plugin's), an :class:`~robustbench_fundus.attacks.Attack`
    instance, or None; ``attack_options``: fields of its config (``{"steps": 20,
    "loss": "margin"}``), ``steps`` the shorthand for attacks that have steps (None: the
    attack's default). ``eps``: values or ``"2/255"`` strings (L-inf in [0,1] pixel units; L2
    the L2 norm in those units); None: the attack's default sweep. ``limit``: evaluate
    ``limit`` images spread evenly over the set. ``store``: a
    :class:`~robustbench_fundus.bench.ResultStore` or a path: finished conditions are read from
    it and not recomputed; new ones are written as they complete.
    ``saliency=N``: also score integrated-gradients saliency (``saliency_steps`` steps; baseline
    grey for a Graham model, else black) on N images spread evenly over the evaluated set (see
    :mod:`robustbench_fundus.bench.saliency`).
    **The screening view** (see :mod:`robustbench_fundus.bench.screening`): every clean,
    corrupted and attacked row carries referable-DR sensitivity, specificity, PPV and NPV at
    the model's decision (referable: grade >= ``referable_threshold``, default 2, plus
    vision-threatening grade >= 3), the AUROC of the referable score, ECE and Brier score,
    the referral curve, Wilson intervals on every proportion and bootstrap intervals on kappa
    and balanced accuracy; ``report.screening`` is the screening card against
    ``screening_line`` (default sensitivity 0.85, specificity 0.825). ``referral_flip=True``
    also runs the attack on the referral decision (missed referrals and over-referrals per
    eps, ``report.referral_flips``).
    ``data_options`` (:class:`DataOptions`: working size, crop cache, synthetic count) and
    ``run`` (:class:`RunOptions`: batch and chunk size, workers, progress, log) change how the
    run is carried out, not what it measures.
    """
    from ..attacks import resolve_attack
    from .store import ResultStore

    dopt = data_options or DataOptions()
    ropt = run or RunOptions()
    t_start = time.perf_counter()
    dev = resolve_device(device)
    if int(saliency) < 0:
        raise RBFError(f"--saliency {saliency}: give a number of images (0: no saliency)")
    if int(saliency) and int(saliency_steps) < 1:
        raise RBFError(f"--saliency-steps {saliency_steps}: must be at least 1")
    dd = Dist(dev.type)
    dd.use_device(dev)
    say = ropt.log if (ropt.log is not None and dd.main) else (lambda s: None)
    st = None
    try:
        atk = resolve_attack(attack, steps=steps, options=attack_options)
        mi = resolve_model(model, arch=arch, device=dev, name=name,
                           trust_checkpoint=trust_checkpoint, preprocessing=preprocessing,
                           head=head, head_options=head_options)
        if ropt.amp != "off":   # bf16 forwards read the same weights differently: own entry
            mi = dataclasses.replace(mi, sha256=hashlib.sha256(
                f"{mi.sha256}|forward={precision(ropt)['forward']}".encode()).hexdigest())
        work = dopt.size or (max(mi.input_size) if mi.input_size else 224)
        synthetic_n = int(limit) if data is None and limit is not None else dopt.synthetic_n
        di = resolve_data(data, work, limit=limit, cache_dir=dopt.cache_dir,
                          synthetic_n=synthetic_n, space=data_space, split=dopt.split,
                          val_fraction=dopt.val_fraction, split_seed=dopt.split_seed)
        t_ref = int(referable_threshold)
        if not 1 <= t_ref <= NUM_GRADES - 1:
            raise RBFError(f"--referable-threshold {referable_threshold}: give the lowest "
                           f"referable grade, 1-{NUM_GRADES - 1} (2: moderate NPDR or worse)")
        if not mi.head.five_grade and t_ref != mi.head.threshold:
            t_ref = mi.head.threshold  # a binary head decides at its own threshold
        conds = build_conditions(corruptions, severities, atk, eps, mi.head.n_labels,
                                 t_ref if referral_flip and atk is not None else None)
        attacks = {}
        if atk is not None:
            ident = atk.identity()
            attacks[(ident.name, ident.norm, ident.config_hash)] = atk
        sal_cond = None
        if int(saliency):
            sal_cond = saliency_condition(min(int(saliency), len(di.indices)),
                                          int(saliency_steps),
                                          "grey" if mi.preprocessing.enhancement == "graham"
                                          else "black")
        entry = {"model_sha256": mi.sha256, "dataset_fingerprint": di.fingerprint,
                 "seed": int(seed), "library_version": __version__}
        if store is not None and dd.main:
            st = store if isinstance(store, ResultStore) else ResultStore(store)
            st.add_model(mi.sha256, mi.name, mi.arch, {
                **mi.meta, "input_size": mi.input_size,
                "preprocessing": mi.preprocessing.to_dict(), "head": mi.head.to_dict()})
            st.add_dataset(di.fingerprint, di.name, len(di.indices), di.meta)

        N = len(di.indices)
        n_chunks = max(1, math.ceil(N / ropt.chunk_size))
        # the plan: which conditions each chunk still needs (rank 0 decides, all follow)
        plan = helpers = sal_todo = None
        if dd.main:
            plan, helpers, n_done = make_plan(conds, N, ropt.chunk_size, st, entry)
            if n_done:
                say(f"rbf bench: {n_done} of {len(conds)} conditions already in the store")
            sal_todo = sal_cond is not None
            if sal_cond is not None and st is not None and \
                    sal_cond.key in st.done_conditions(entry):
                say(f"rbf bench: {sal_cond.key} already in the store")
                sal_todo = False
        plan, helpers, sal_todo = dd.broadcast((plan, helpers, sal_todo))

        totals: dict[Condition, list] = {}
        clock = StageClock(dev)       # the run's time budget, read by _report
        timing = {"data_s": 0.0, "compute_s": 0.0, "clock": clock}
        n_loaded = 0
        if plan:
            n_loaded = run_plan(plan, conds, helpers, mi, di, dd, dev, seed, attacks, ropt,
                                n_chunks, st, entry, totals, timing)
        sal_row = None
        if sal_todo:
            say(f"rbf bench: saliency ({sal_cond.name}, {sal_cond.steps} steps, baseline "
                f"{sal_cond.baseline}) on {sal_cond.n_images} images")
            with clock("saliency"):
                sal_row = run_saliency(sal_cond, mi, di, dd, dev, seed, ropt.batch_size, st,
                                       entry)
            timing["saliency_s"] = clock.seconds["saliency"]
        # rows of all requested conditions
        rows: dict[str, dict] = {}
        if dd.main:
            if st is not None:
                for r in st.results(**entry):
                    rows[r["condition"]] = r
            else:
                for c, (vec, secs) in totals.items():
                    rows[c.key] = finalize_row(c, vec, secs, {})
                if sal_row is not None:
                    rows[sal_cond.key] = sal_row
        rows = dd.broadcast(rows)
        return _report(rows, conds, sal_cond, mi, di, dd, dev, seed, atk, ropt, st, store,
                       plan, timing, n_loaded, t_start, t_ref, screening_line)
    finally:
        if st is not None and not isinstance(store, ResultStore):
            st.close()
        dd.close()


def _report(rows, conds, sal_cond, mi, di, dd, dev, seed, atk, ropt, st, store, plan, timing,
            n_loaded, t_start, t_ref, screening_line) -> BenchReport:
    from .screening import card
    clean, cors, atks, flips = build_report(rows, conds, t_ref, seed)
    scard = card(clean, cors, atks, t_ref, screening_line)
    sal_summary = None
    if sal_cond is not None and sal_cond.key in rows:
        r = rows[sal_cond.key]
        sal_summary = {**(r.get("metrics") or {}).get("saliency", {}),
                       "seconds": round(float(r.get("seconds") or 0.0), 4)}
    flags = make_flags(clean, cors, atks, di, mi)
    flags += sanity_flags(rows, conds)
    if scard["crossed"]:
        ln = scard["line"]
        flags.append(Flag("screening_line_crossed", f"referable sensitivity or specificity "
                          f"below {ln['sensitivity']:g} / {ln['specificity']:g} under "
                          f"{len(scard['crossed'])} condition(s): "
                          + ", ".join(scard["crossed"][:4])
                          + (" ..." if len(scard["crossed"]) > 4 else ""), None,
                          {"conditions": scard["crossed"]}))
    if sal_summary is not None and di.meta.get("kind") != "synthetic" and \
            sal_summary.get("n_lesion", 0) == 0:
        flags.append(Flag("no_lesion_masks", "saliency: the data carry no lesion masks, so "
                          "lesion_share is undefined (use synthetic data for it)",
                          sal_cond.key))
    if di.meta.get("unreadable"):
        flags.append(Flag("unreadable_images", f"{di.meta['unreadable']} images in the folder "
                          "could not be read and were left out"))
    computed = {k for _, t in (plan or []) for k in t}
    total_s = time.perf_counter() - t_start
    prov = {
        "library_version": __version__,
        "model_sha256": mi.sha256,
        "model_file_sha256": mi.meta.get("file_sha256"),
        "dataset_fingerprint": di.fingerprint,
        "preprocessing": (None if di.tensor_input else mi.preprocessing.to_dict()),
        "data_space": di.space,
        "head": mi.head.to_dict(),
        "attack": None if atk is None else atk.identity().to_dict(),
        "seed": int(seed),
        "device": str(dev),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "world_size": dd.world,
        "batch_size": ropt.batch_size,
        "precision": precision(ropt),
        "chunk_size": ropt.chunk_size,
        "store": str(st.path) if st is not None else (str(store) if store else None),
        "conditions_computed": len(computed),
        "conditions_from_store": len(conds) - len(computed),
        "timings": {"total_s": round(total_s, 3),
                    "data_s": round(timing["data_s"], 3),
                    "compute_s": round(timing["compute_s"], 3),
                    "saliency_s": round(timing.get("saliency_s", 0.0), 3),
                    "images_evaluated": n_loaded,
                    "per_condition_s": {c.key: round(float(rows[c.key].get("seconds") or 0), 4)
                                        for c in conds if c.key in rows},
                    # this process's time budget (docs/bench.md, "Where the time goes")
                    **timing["clock"].budget(total_s)},
    }
    return BenchReport(
        clean, cors, atks, flags, prov,
        model={"name": mi.name, "arch": mi.arch, "sha256": mi.sha256,
               "input_size": list(mi.input_size) if mi.input_size else None,
               "preprocessing": mi.preprocessing.enhancement, "head": mi.head.to_dict(),
               **{k: v for k, v in mi.meta.items()}},
        dataset={"name": di.name, "fingerprint": di.fingerprint, "n": len(di.indices),
                 **di.meta},
        saliency=sal_summary, referral_flips=flips, screening=scard)
