"""What the scenario's build measures and keeps: each model's outputs on both splits (nonzero
fractions, the geometry's predicted visible fraction beside them) and fingerprints (inputs and
outputs on a few test groups) with which a later process checks it reloads identical models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ptytui.diagnosis.geometry import visible_fraction
from ptytui.inputs.grouping import group_split
from ptytui.scenario.settings import Preset

FINGERPRINT_GROUPS = 4


def _predict(model, inputs, batch_size: int = 256) -> list[np.ndarray]:
    """Eager, batched model calls (no predict() tracing); outputs as a list of numpy arrays."""
    count = inputs[0].shape[0]
    chunks: list[list[np.ndarray]] = []
    for start in range(0, count, batch_size):
        part = [a[start : start + batch_size] for a in inputs]
        out = model(part if len(part) > 1 else part[0], training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        chunks.append([np.asarray(o) for o in out])
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


def predicted_visible_fraction(offsets_xy: np.ndarray, N: int) -> float:
    """Mean over patches of (1 - |dx|/N)(1 - |dy|/N), each factor clipped at 0: the share of a
    crop that a patch translated by (dx, dy) still covers (gridsize 1)."""

    visible = visible_fraction(np.asarray(offsets_xy, np.float64).reshape(-1, 2), N)
    return float(visible.mean()) if visible.size else float("nan")


def _output_record(output: np.ndarray) -> dict:
    return {"nonzero_fraction": float(np.count_nonzero(output) / output.size),
            "nan_count": int(np.isnan(output).sum()),
            "amplitude_mean": float(np.nanmean(np.abs(output))),
            "per_patch_amplitude_std": float(np.nanmean(np.abs(output).std(axis=(1, 2, 3))))}


def measure_models(models: dict, train, test, preset: Preset, scale: float, seed: int) -> dict:
    """Nonzero fractions of baseline_gs1 (absolute vs zero offsets) and pinn_gs2 per split."""

    result: dict = {"baseline_gs1": {"absolute": {}, "relative": {}}, "pinn_gs2": {"relative": {}}}
    for split in (train, test):
        g1 = group_split(split, 1, seed=seed, n_groups=preset.measure_limit)
        b1 = g1.batch(split, slice(None))
        x = b1.diffraction * np.float32(scale)
        absolute = _predict(models["baseline_gs1"], [x, b1.global_offsets])[0]
        relative = _predict(models["baseline_gs1"], [x, b1.relative_offsets])[0]
        result["baseline_gs1"]["absolute"][split.name] = {
            **_output_record(absolute),
            "predicted_visible_fraction": predicted_visible_fraction(b1.global_offsets[:, 0, :, 0], preset.N),
            "n_groups": len(g1),
        }
        result["baseline_gs1"]["relative"][split.name] = {**_output_record(relative), "n_groups": len(g1)}
        g2 = group_split(split, 2, seed=seed, n_groups=preset.measure_limit)
        b2 = g2.batch(split, slice(None))
        pinn_out = _predict(models["pinn_gs2"], [b2.diffraction * np.float32(scale), b2.relative_offsets])[0]
        result["pinn_gs2"]["relative"][split.name] = {**_output_record(pinn_out), "n_groups": len(g2)}
    return result


def _fingerprint_inputs(test, scale: float, seed: int) -> dict[str, list[np.ndarray]]:

    b2 = group_split(test, 2, seed=seed).batch(test, slice(0, FINGERPRINT_GROUPS))
    b1 = group_split(test, 1, seed=seed).batch(test, slice(0, FINGERPRINT_GROUPS))
    return {
        "pinn_gs2": [b2.diffraction * np.float32(scale), b2.relative_offsets],
        "baseline_gs1": [b1.diffraction * np.float32(scale), b1.relative_offsets],
        "supervised_unet": [b1.diffraction[..., :1]],
    }


def write_fingerprints(path: Path, models: dict, test, scale: float, seed: int,
                        previous: Path | None = None) -> None:
    """Inputs and outputs of each model on FINGERPRINT_GROUPS test groups: ``NAME.input.K`` and
    ``NAME.output.K`` arrays. Models missing from ``models`` are copied from ``previous``."""
    arrays: dict[str, np.ndarray] = {}
    if previous is not None:
        with np.load(previous) as old:
            arrays.update({k: old[k] for k in old.files if k.split(".")[0] not in models})
    inputs = _fingerprint_inputs(test, scale, seed)
    for name, model in models.items():
        outputs = _predict(model, inputs[name])
        for k, a in enumerate(inputs[name]):
            arrays[f"{name}.input.{k}"] = a
        for k, a in enumerate(outputs):
            arrays[f"{name}.output.{k}"] = a
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
