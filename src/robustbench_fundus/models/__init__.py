"""Models and checkpoints.

* :data:`REGISTRY` of architectures (timm-backed reference architectures resnet18, resnet50,
  inception_v3, efficientnet_b0..b3, the small ``tiny_cnn``; any other timm name passes through;
  plugins register with :func:`register_model` or the ``robustbench_fundus.models`` entry-point
  group).
* :class:`FundusClassifier`: takes [0, 1] input and owns normalisation, input size, classes,
  label names and the preprocessing it expects.
* :func:`load_model` reads any supported checkpoint safely; :func:`save_checkpoint` writes the
  library's own format (safetensors + JSON metadata); :func:`inspect_checkpoint` describes one.
* :func:`create_pretrained_model` starts efficientnet_lite0/1/2 from ImageNet weights found in
  installed packages (the ``[pretrained]`` extra; nothing is downloaded).
"""
from __future__ import annotations

from .archs import (REFERENCE_ARCHS, REGISTRY, ModelSpec, classifier_key, create_model, describe,
                    get_spec, register_model, signature)
from .checkpoint import (FORMAT_NAME, FORMAT_VERSION, RawCheckpoint, check_finite,
                         check_state_dict, file_sha256, guess_arch, inspect_checkpoint, load_model,
                         read_checkpoint, save_checkpoint, weights_sha256)
from .pretrained import (PretrainedWeights, create_pretrained_model, get_pretrained,
                         pretrained_archs)
from .wrapper import (GRADE_NAMES, IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD,
                      NUM_CLASSES, FundusClassifier)

__all__ = [
    "REGISTRY", "REFERENCE_ARCHS", "ModelSpec", "register_model", "get_spec", "create_model",
    "describe", "signature", "classifier_key", "FundusClassifier", "GRADE_NAMES", "NUM_CLASSES",
    "IMAGENET_MEAN", "IMAGENET_STD", "INCEPTION_MEAN", "INCEPTION_STD", "load_model",
    "save_checkpoint", "inspect_checkpoint", "read_checkpoint", "RawCheckpoint", "file_sha256",
    "weights_sha256", "guess_arch", "check_state_dict", "check_finite", "FORMAT_NAME",
    "FORMAT_VERSION", "create_pretrained_model", "pretrained_archs", "get_pretrained",
    "PretrainedWeights",
]
