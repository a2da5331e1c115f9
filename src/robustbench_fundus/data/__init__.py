"""Data stage: readers for common fundus data-set layouts, subject-grouped stratified splits,
working-size crops (cached) and the synthetic generator.

Flow: ``read_records(root)`` -> ``split_records(records)`` -> ``FundusDataset(records, size)``
-> ``make_loader(...)`` -> batches of uint8 crops -> (corruptions) ->
``Preprocessing.model_input`` (:mod:`robustbench_fundus.preprocessing`). Geometry, crop and
Graham live in :mod:`robustbench_fundus.preprocessing`; they are re-exported here unchanged.
"""
from .cache import default_cache_dir, load_working, working_crop
from .dataset import FundusDataset, FundusLoader, collate, dataset_fingerprint, make_loader
# through the re-export modules, so ``data.graham`` (the submodule) is loaded here and the
# package attribute ``graham`` stays the function whatever is imported later
from .geometry import Geometry, crop_resize, estimate_geometry
from .graham import graham
from .io import IMAGE_EXTENSIONS, check_image, decode_bytes, load_image
from .layouts import (GRADES, LAYOUTS, Record, RecordSet, check_records, detect_layout,
                      read_records, subject_from_name)
from .split import split_records, subject_overlap

__all__ = [
    "Geometry", "crop_resize", "estimate_geometry", "graham",
    "IMAGE_EXTENSIONS", "check_image", "decode_bytes", "load_image",
    "GRADES", "LAYOUTS", "Record", "RecordSet", "check_records", "detect_layout", "read_records",
    "subject_from_name",
    "split_records", "subject_overlap",
    "default_cache_dir", "load_working", "working_crop",
    "FundusDataset", "FundusLoader", "collate", "dataset_fingerprint", "make_loader",
]

try:  # the synthetic generator (written separately); optional until it lands
    from .synth import EYEPACS_PRIOR, SyntheticDataset, make_synthetic, write_synthetic
except ImportError:  # pragma: no cover - until synth.py exists
    pass
else:
    __all__ += ["EYEPACS_PRIOR", "SyntheticDataset", "make_synthetic", "write_synthetic"]
