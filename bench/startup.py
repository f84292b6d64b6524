"""Startup benchmark: process start to the workbench's first frame, beside TensorFlow's import.

Runs ``python -m ptytui [ARGS]`` in a subprocess with PTYTUI_FIRST_FRAME_FILE set: the app
writes the time of its first drawn frame there (and whether TensorFlow was imported by then),
then quits. Prints medians over several runs and the ratio to ``import tensorflow``.

    .venv/bin/python bench/startup.py                       # on the recorded incident (replay)
    .venv/bin/python bench/startup.py path/to/workspace     # on a real workspace
Target: first frame <= 0.6 s, with neither TensorFlow nor numpy imported by then.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDING = ROOT / "tests" / "screens" / "data" / "incident_tiny_recorded.jsonl"


def first_frame_seconds(args: list[str]) -> tuple[float, list[str]]:
    with tempfile.TemporaryDirectory() as folder:
        marker = Path(folder) / "first_frame.json"
        env = {**os.environ, "PTYTUI_FIRST_FRAME_FILE": str(marker)}
        started = time.time()
        subprocess.run([sys.executable, "-m", "ptytui", *args], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        record = json.loads(marker.read_text())
        return record["first_frame_unix_s"] - started, list(record.get("heavy_modules", []))


def seconds_of(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=300,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workspace", nargs="?", help="a workspace (default: replay the recorded incident)")
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    args = [options.workspace] if options.workspace else ["--replay", str(RECORDING)]

    frames, heavy = [], set()
    for _ in range(options.runs):
        seconds, imported = first_frame_seconds(args)
        frames.append(seconds)
        heavy.update(imported)
    interpreter = statistics.median(seconds_of("pass") for _ in range(options.runs))
    tf_import = statistics.median(seconds_of("import tensorflow") for _ in range(3))
    frame = statistics.median(frames)
    print(f"workbench first frame   median {frame:.3f} s  (min {min(frames):.3f}, max {max(frames):.3f}, "
          f"{options.runs} runs; target <= 0.6 s)")
    print(f"imported by the first frame (tensorflow, keras, numpy, pydantic): "
          f"{', '.join(sorted(heavy)) + ' (regression)' if heavy else 'none'}")
    print(f"python -c pass          median {interpreter:.3f} s")
    print(f"python -c 'import tensorflow'  median {tf_import:.3f} s")
    print(f"ratio first frame / TF import: {frame / tf_import:.2f}")


if __name__ == "__main__":
    main()
