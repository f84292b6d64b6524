"""Run a script that splits the CPU into logical devices in a fresh process (TensorFlow's device
layout is fixed once it starts) and read back the one JSON line it prints after ``REPORT ``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_report_script(script: str, folder: Path) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    env.pop("PTYTUI_CPU_REPLICAS", None)
    out = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True,
                         cwd=folder, env=env, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(li for li in out.stdout.splitlines() if li.startswith("REPORT "))
    return json.loads(line[len("REPORT "):])
