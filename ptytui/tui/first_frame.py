"""The startup benchmark's probe (bench/startup.py, PTYTUI_FIRST_FRAME_FILE): when the first frame
was drawn and which heavy modules were loaded by then. The app writes it once and quits."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

# Modules the first frame must not import (each costs 50-5000 ms): TensorFlow and Keras load in
# the engine's worker, numpy with the first engine event, pydantic never (typer < 0.29).
FIRST_FRAME_EXCLUDED = ("tensorflow", "keras", "numpy", "pydantic")


def write_first_frame_record(path: Path) -> None:
    """Write the probe's JSON record: the time (Unix seconds) and the heavy modules loaded."""
    path.write_text(json.dumps({
        "first_frame_unix_s": time.time(),
        "tensorflow_imported": "tensorflow" in sys.modules,
        # What the first frame must not wait for: the engine's imports load in the worker.
        "heavy_modules": sorted(name for name in FIRST_FRAME_EXCLUDED if name in sys.modules),
    }))
