"""The drawn-disc helpers of the data-stage tests serve the preprocessing tests too."""
from __future__ import annotations

import sys
from pathlib import Path

_DATA_TESTS = str(Path(__file__).resolve().parents[1] / "data")
if _DATA_TESTS not in sys.path:
    sys.path.insert(0, _DATA_TESTS)
