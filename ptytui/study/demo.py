"""``ptytui demo --study``: a built-in tiny study like PtychoPINN's dose study: doses 1e3, 1e4,
1e5 x {Baseline gs1, PINN gs2}, each cell a workspace with its model and the ePIE reference.
The incident (absolute positions) is planted in every Baseline cell and one other defect in one
PINN cell, so the matrix shows a pattern and an exception.

Built from the scenario builder's cached workspaces (one per dose and defect set), hard-linked.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

from ptytui.errors import InputError
from ptytui.scenario.build import link_tree, locked

DEMO_DOSES = (1e3, 1e4, 1e5)
# view -> the scenario model the cell keeps, and the defects every such cell gets
DEMO_VIEWS = {"baseline": ("baseline_gs1", ("absolute-positions",)), "pinn": ("pinn_gs2", ())}
DEMO_EXCEPTION = (1e4, "pinn", ("dead-layer",))  # the one cell that breaks the pattern
DEMO_PATTERN = "runs/dose_{dose}/{view}/ptytui.toml"
READY_FILE = ".ptytui-study-ready"


def dose_text(dose: float) -> str:
    """1000.0 -> '1e3' (a power of ten as written in the study), else '%g'."""
    power = math.log10(dose)
    return f"1e{int(round(power))}" if abs(power - round(power)) < 1e-9 else f"{dose:g}"


def demo_cells(doses=DEMO_DOSES) -> list[tuple[float, str, str, tuple[str, ...]]]:
    """(dose, view, model, defects) of every demo cell."""
    cells = []
    for dose in doses:
        for view, (model, defects) in DEMO_VIEWS.items():
            if (dose, view) == DEMO_EXCEPTION[:2]:
                defects = tuple(sorted(set(defects) | set(DEMO_EXCEPTION[2])))
            cells.append((dose, view, model, defects))
    return cells


def build_demo_study(out: str | Path | None = None, *, preset: str = "tiny", seed: int = 0,
                     doses=DEMO_DOSES, cache_dir: str | Path | None = None,
                     progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Build the demo study (cached) and return its folder (holding ptytui-study.toml).

    Parameters
    ----------
    out : a new or empty folder for the study; default the cache's ``studies/<key>`` folder.
    preset, seed, cache_dir, progress : as for ``ptytui.scenario.build_scenario``.
    """
    from ptytui.scenario import cache_root, scenario_key  # noqa: PLC0415

    cells = demo_cells(tuple(doses))
    keys = [scenario_key(preset, dose=dose, defects=defects or ("none",), seed=seed)
            for dose, _, _, defects in cells]
    digest = hashlib.sha256(json.dumps([preset, seed, keys, DEMO_PATTERN]).encode()).hexdigest()[:16]
    if out is None:
        final = cache_root(cache_dir) / "studies" / f"{preset}-{digest}"
    else:
        final = Path(out)
        if final.exists() and not final.is_dir():
            raise InputError(final, "a folder for the study", "a file")
    if _ready(final, digest):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    # Another process (a pytest-xdist worker, a second terminal) may be building the same study:
    # one builds under the lock, the others then find it ready.
    with locked(final.parent / f".{final.name}.lock"):
        if _ready(final, digest):
            return final
        _build_study(final, digest, cells, preset=preset, seed=seed, cache_dir=cache_dir, progress=progress)
    return final


def _ready(final: Path, digest: str) -> bool:
    return (final / READY_FILE).is_file() and (final / READY_FILE).read_text().strip() == digest


def _build_study(final: Path, digest: str, cells, *, preset: str, seed: int, cache_dir, progress) -> None:
    """Build every cell's scenario and link the study into ``final`` (under the caller's lock)."""
    from ptytui.scenario import build_scenario  # noqa: PLC0415

    if final.is_dir() and any(final.iterdir()):
        raise InputError(final, "a new or empty folder for the study",
                         f"a folder with {sum(1 for _ in final.iterdir())} entries")
    built = {}
    for (dose, view, model, defects) in cells:
        built[(dose, view)] = build_scenario(preset, dose=dose, defects=defects or ("none",), seed=seed,
                                             cache_dir=cache_dir, progress=progress)
    tmp = final.with_name(f".tmp-{final.name}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        for (dose, view, model, defects) in cells:
            cell = tmp / "runs" / f"dose_{dose_text(dose)}" / view
            source = built[(dose, view)]
            link_tree(source, cell, skip={"session", "ptytui.toml", "scenario"})
            (cell / "session").mkdir(exist_ok=True)
            text = (source / "ptytui.toml").read_text(encoding="utf-8")
            name = f"dose {dose_text(dose)} {view}" + (f" ({', '.join(defects)})" if defects else "")
            (cell / "ptytui.toml").write_text(keep_one_model(text, model, name=name), encoding="utf-8")
        (tmp / "ptytui-study.toml").write_text(study_toml(preset, seed), encoding="utf-8")
        (tmp / READY_FILE).write_text(digest + "\n")
        if final.exists():
            final.rmdir()  # empty (checked above)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def study_toml(preset: str, seed: int) -> str:
    base, exception = DEMO_VIEWS["baseline"][1], DEMO_EXCEPTION
    return "\n".join([
        f"# ptytui demo study: preset {preset}, seed {seed}. Planted: {', '.join(base)} in every",
        f"# Baseline cell; {', '.join(exception[2])} in the {exception[1]} cell at dose {dose_text(exception[0])}.",
        "[study]",
        'name = "dose study (demo)"',
        f"cells = {json.dumps(DEMO_PATTERN)}",
        "",
        "[run]",
        "batch_size = 64",
        f"seed = {seed}",
        "",
    ])


def keep_one_model(toml_text: str, model: str, *, name: str | None = None) -> str:
    """A scenario ptytui.toml with only ``[models.<model>]`` kept (and the workspace renamed)."""
    out, section = [], None
    for line in toml_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped.strip("[]").strip()
        if section is not None and section.startswith("models.") and section != f"models.{model}":
            continue
        if name is not None and section == "workspace" and stripped.startswith("name ="):
            line = f"name = {json.dumps(name)}"
        out.append(line)
    return "\n".join(out) + "\n"
