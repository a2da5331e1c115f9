"""What one training batch goes through, per recipe (the flow of one image, docs/architecture.md)::

    uint8 working-size crop -> x = image / 255
      -> augment (train only: flips, rotation, scale, brightness, contrast)
      -> fundus geometry of the (augmented) clean image
      -> [corruption recipe: a random corruption at a random severity per sample, raw image space,
          from the same corruption objects the benchmark uses, with that geometry]
      -> Preprocessing.model_input with that geometry (Graham or none, the fundus mask, the
         model's input size), the model's preprocessing resolved once by
         :func:`~robustbench_fundus.preprocessing.resolve_preprocessing`, as the benchmark does
      -> model input in [0, 1]  -> [adversarial recipe: PGD on this input, model in eval mode]

Validation batches skip the augmentation and the corruption.
"""
from __future__ import annotations

from typing import Any

import torch

from ..errors import RBFError
from ..preprocessing import Preprocessing, resolve_preprocessing
from .augment import augment_batch
from .config import TrainConfig


class BatchPipeline:
    """Turns loader batches into model inputs for one run (``model`` is the unwrapped
    :class:`~robustbench_fundus.models.FundusClassifier`, also used for the attack)."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, device: torch.device, *,
                 channels_last: bool = False, amp_dtype: torch.dtype | None = None):
        self.model = model
        self.cfg = cfg
        self.device = device
        self.channels_last = channels_last
        self.amp_dtype = amp_dtype
        #: the model's preprocessing stage (resolved once; ``.enhancement`` is the name)
        self.stage: Preprocessing = resolve_preprocessing(model)
        self.preprocessing = self.stage.enhancement
        self.corruptor = make_corruptor(cfg) if cfg.recipe == "corruption" else None
        from ..heads import make_head
        self.head = make_head(cfg.head, **cfg.head_options)
        self.attack = make_attack(cfg, self.head) if cfg.recipe == "adversarial" else None

    def inputs(self, images: torch.Tensor, draws: torch.Tensor, *, train: bool,
               epoch: int = 0) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True).float().div_(255.0)
        if train:
            x = augment_batch(x, draws, seed=self.cfg.seed, epoch=epoch, config=self.cfg.augment)
        geom = self.stage.geometry(x)  # of the (augmented) clean image
        if train and self.corruptor is not None:
            x = self.corruptor(x, geom, draws, epoch)
        x = self.stage.model_input(x, geom)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def adversarial(self, x: torch.Tensor, y: torch.Tensor, draws: torch.Tensor,
                    epoch: int = 0) -> torch.Tensor:
        """PGD examples for ``x`` (model input space); the model is attacked in eval mode (BN
        statistics frozen, no dropout) and is left in eval mode (the caller switches back)."""
        was_training = self.model.training
        self.model.eval()
        try:
            x_adv = self.attack(self.model, x, y, draws, epoch)
        finally:
            self.model.train(was_training)
        return x_adv.detach()


# -- corruption recipe ----------------------------------------------------------------------------
def make_corruptor(cfg: TrainConfig):
    """A callable ``(x, geom, draws, epoch) -> x_corrupted`` drawing, per sample, one corruption
    of ``cfg.corruptions`` (the benchmark's set when None) and one severity of ``cfg.severities``,
    through the corruption stage's :class:`RandomCorruption`."""
    from ..corruptions import RandomCorruption

    sev = tuple(sorted(cfg.severities))
    if sev != tuple(range(sev[0], sev[-1] + 1)):
        raise RBFError(f"--severities {list(sev)}: the corruption recipe draws from a contiguous "
                       "range; write it like 1-4 or 2-3")
    kwargs: dict[str, Any] = {"severities": (sev[0], sev[-1]), "p": cfg.corruption_prob}
    if cfg.corruptions:
        kwargs["names"] = list(cfg.corruptions)
    rc = RandomCorruption(**kwargs)

    def corrupt(x: torch.Tensor, geom, draws: torch.Tensor, epoch: int) -> torch.Tensor:
        # Draws depend on (seed, epoch, draw): a fresh corruption each time a sample is seen,
        # independent of the batch it sits in.
        return rc(x, seed=cfg.seed, step=int(epoch), sample_ids=draws.cpu(), geom=geom)

    corrupt.random_corruption = rc  # type: ignore[attr-defined]
    return corrupt


# -- adversarial recipe ---------------------------------------------------------------------------
def make_attack(cfg: TrainConfig, head=None):
    """A callable ``(model, x, y, draws, epoch) -> x_adv`` for the adversarial recipe, at
    ``cfg.eps`` (L-inf) with ``cfg.steps`` steps of 2.5 eps/steps from a random start, on the
    loss of the model's ``head`` (labels ``y`` in its label space).

    ``cfg.adv_mode == "madry"`` (the default, the recipe as stated by Madry et al. 2018): every
    sample of the batch is perturbed for all the steps and the last iterate is trained on.
    ``"early-stop"``: the benchmark's PGD engine, which attacks only the samples the model gets
    right and stops stepping each at its first misclassifying iterate, so misclassified
    samples enter the adversarial loss unperturbed ("friendly" adversarial training, Zhang et
    al., ICML 2020); only when asked for. The mode is recorded in the checkpoint's recipe."""
    from ..attacks import Context, get_attack
    from ..attacks.engine import pgd_fixed_steps

    early = get_attack("pgd", steps=cfg.steps, sanity_eps=0.0, keep_adv=True) \
        if cfg.adv_mode == "early-stop" else None

    def run(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, draws: torch.Tensor,
            epoch: int) -> torch.Tensor:
        # random-start noise keyed by (seed, sample): make it differ between epochs too
        ids = draws.to(torch.long).cpu() + int(epoch) * (1 << 31)
        if early is not None:
            res = early(model, x, y, [cfg.eps], seed=cfg.seed, sample_ids=ids, head=head)
            return res[0].x_adv
        ctx = Context(x.device, amp=False, channels_last=False, model=model, head=head)
        return pgd_fixed_steps(ctx, x, y, cfg.eps, steps=cfg.steps, seed=cfg.seed,
                               sample_ids=ids)

    run.attack = early  # type: ignore[attr-defined]
    return run
