"""Training recipes: baseline, corruption-augmented and PGD adversarial training (``rbf train``).

>>> from robustbench_fundus.train import TrainConfig, train
>>> res = train(TrainConfig(arch="tiny_cnn", data="synthetic:500", size=64, epochs=2,
...                         recipe="corruption", severities=(1, 2, 3, 4), out="m.safetensors"))

See :mod:`.loop` (epochs, validation, checkpoints, resumption, AMP, DDP), :mod:`.recipes` (what
a batch goes through), :mod:`.augment` (seeded batched augmentation) and :mod:`.demo` (the bundled
demo model).
"""
from .augment import AugmentConfig, augment_batch
from .config import RECIPES, TrainConfig
from .demo import DEMO_COMMAND, demo_model_path
from .loop import TrainResult, last_path, load_train_state, train

__all__ = ["AugmentConfig", "augment_batch", "RECIPES", "TrainConfig", "TrainResult",
           "last_path", "load_train_state", "train", "DEMO_COMMAND", "demo_model_path"]
