"""Build (or reuse) the incident scenario workspace: data, trained models, reference, ptytui.toml.

Builds are cached by a hash of every setting and of this code; each one is written into a
temporary folder and renamed into place under a file lock, so readers never see a half build.

Workspace layout (relative to the workspace folder)::

    ptytui.toml                      the study's wiring (see ``workspace_toml``)
    data/train.npz, data/test.npz    the two splits (NPZ contract, uncompressed)
    models/pinn_gs2.keras            gs2 PINN, inference graph ``diffraction_to_obj``
    models/pinn_gs2.json             its sidecar: intensity_scale, gridsize, N, canvas, feeding
    models/baseline_gs1/wts.h5.zip   gs1 PINN as a PtychoPINN-style bundle (diffraction_to_obj/
                                     model.keras + model.h5 carrying the intensity_scale attribute)
    models/supervised_unet.keras     PtychoNN-style supervised U-Net
    reference/epie_test.npz          ePIE (ptytui) reconstruction of the test split, pty-chi layout
    scenario/manifest.json           settings, planted defects, normalization factors, timings,
                                     build-time measurements
    scenario/fingerprints.npz        inputs and outputs of every model on 4 test groups, for
                                     reload checks
    session/                         the workbench's session folder (empty when built)

This module is longer than the others on purpose: it owns one protocol end to end (the cache key,
the lock, publication by rename, the user's copy, the healthy recipe and the defect variants
derived from it), whose steps share private helpers (``_Stages``, ``_finish``,
``_settings_record``) that would otherwise be imported across modules. What a build measures is
in ``scenario.measure``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import time
import uuid
import zlib
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Callable

import numpy as np

import ptytui
from ptytui.core import tfload
from ptytui.errors import InputError, UsageError
from ptytui.inputs.grouping import group_split
from ptytui.inputs.npz import open_split
from ptytui.networks import architectures
from ptytui.scenario import epie, simulate, zoo
from ptytui.scenario.measure import measure_models, predicted_visible_fraction, write_fingerprints
from ptytui.scenario.settings import (
    DEFAULT_DOSE,
    DEFAULT_SEED,
    INCIDENT_DEFECTS,
    Preset,
    get_preset,
    parse_defects,
)

__all__ = [
    "HEALTHY_STAGES",
    "VARIANT_STAGES",
    "ProgressCallback",
    "build_scenario",
    "cache_root",
    "measure_incident",
    "predicted_visible_fraction",
    "read_manifest",
    "scenario_key",
    "workspace_name",
    "workspace_toml",
]

ProgressCallback = Callable[[str, int, int], None]
"""progress(stage, done, total): called as each build stage advances (stage names below)."""

HEALTHY_STAGES = ("simulate", "train pinn_gs2", "train baseline_gs1", "train supervised_unet",
                  "reconstruct (ePIE)", "measure", "write")
VARIANT_STAGES = ("plant defects",)

MANIFEST = "scenario/manifest.json"
FINGERPRINTS = "scenario/fingerprints.npz"
_CODE_FILES = ("scenario/settings.py", "scenario/simulate.py", "scenario/zoo.py", "scenario/epie.py",
               "scenario/measure.py",
               "scenario/build.py", "networks/layers.py", "networks/architectures.py",
               "networks/training.py", "inputs/npz.py", "inputs/npz_reader.py", "inputs/diffraction_scan.py",
               "inputs/grouping.py")


# --------------------------------------------------------------------------------------------
# Cache keys and locations
# --------------------------------------------------------------------------------------------


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where scenarios are cached: ``cache_dir``, else ``$PTYTUI_CACHE_DIR``, else ``~/.cache/ptytui``;
    the builds themselves live in its ``scenarios/`` folder."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("PTYTUI_CACHE_DIR")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "ptytui"


@functools.lru_cache(maxsize=1)
def _code_version() -> str:
    """A hash of the code that determines a build (so a code change never reuses a stale one)."""
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(ptytui.__version__.encode())
    for name in _CODE_FILES:
        path = package / name
        digest.update(name.encode())
        digest.update(path.read_bytes() if path.exists() else b"-")
    return digest.hexdigest()[:16]


def _version(package: str) -> str | None:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return None


def _settings_record(preset: Preset, dose: float, seed: int, defects: tuple[str, ...]) -> dict:
    return {
        "preset": preset.to_dict(),
        "dose": float(dose),
        "seed": int(seed),
        "defects": list(defects),
        "code_version": _code_version(),
        "versions": {
            "ptytui": ptytui.__version__,
            "numpy": np.__version__,
            # TensorFlow/Keras change what is saved; read from the metadata (no TF import).
            "tensorflow": _version("tensorflow") or _version("tensorflow-cpu"),
            "keras": _version("keras"),
        },
    }


def scenario_key(preset: str = "default", *, dose: float = DEFAULT_DOSE, defects=None,
                 seed: int = DEFAULT_SEED) -> str:
    """The cache folder name of a build: ``<preset>-<16 hex digits>`` (hash of all settings)."""
    chosen = get_preset(preset)
    record = _settings_record(chosen, dose, seed, parse_defects(defects))
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
    return f"{chosen.name}-{digest}"


def read_manifest(workspace: str | Path) -> dict:
    """The build manifest (``scenario/manifest.json``) of a scenario workspace."""
    path = Path(workspace) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "a scenario manifest written by 'ptytui demo'", "no such file") from None


def _is_complete(folder: Path) -> bool:
    return (folder / "ptytui.toml").is_file() and (folder / MANIFEST).is_file()


@contextlib.contextmanager
def locked(lock_path: Path):
    """An exclusive advisory lock (fcntl) held for the block; a no-op where fcntl is missing."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl  # noqa: PLC0415
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _publish(tmp: Path, final: Path) -> None:
    """Rename a finished build into place (replacing an older one atomically enough: the old one
    is renamed aside first, then removed)."""
    trash = None
    if final.exists():
        trash = final.with_name(f".trash-{final.name}-{uuid.uuid4().hex[:8]}")
        os.rename(final, trash)
    os.rename(tmp, final)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def _ensure(final: Path, build: Callable[[Path], None], *, rebuild: bool) -> Path:
    """Return ``final`` once a complete build is there, building it under the lock if needed."""
    if not rebuild and _is_complete(final):
        return final
    with locked(final.with_name(f".{final.name}.lock")):
        if not rebuild and _is_complete(final):  # another process built it while we waited
            return final
        tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        tmp.mkdir(parents=True)
        try:
            build(tmp)
            _publish(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def build_scenario(preset: str = "default", *, dose: float = DEFAULT_DOSE, defects=None,
                   seed: int = DEFAULT_SEED, out: str | Path | None = None,
                   cache_dir: str | Path | None = None, rebuild: bool = False,
                   progress: ProgressCallback | None = None) -> Path:
    """Build the incident scenario workspace, or reuse the cached one; return its folder.

    Parameters
    ----------
    preset : "tiny" | "default" | "large"
    dose : float
        Mean photons per diffraction pattern (1e3 as in the study; 1e4, 1e5 also make sense).
    defects : iterable of str, optional
        Planted defects (``settings.DEFECTS``). None plants the incident as the study wired it
        (``INCIDENT_DEFECTS``: absolute positions and the model-kind label); ``()`` or
        ``["none"]`` gives a healthy workspace.
    seed : int
        Seeds the object scan, the noise, the grouping and the training.
    out : path, optional
        Copy the workspace into this folder and return that folder instead: the user's own copy
        (see ``_copy_out``). Without ``out`` the cached build itself is returned: callers must
        treat it as read-only (``ptytui demo`` always copies).
    cache_dir : path, optional
        Cache root (default ``$PTYTUI_CACHE_DIR`` or ``~/.cache/ptytui``); builds live in its
        ``scenarios/<key>`` folders. The healthy build is trained once and every defect variant
        is derived from it (hard links for unchanged files).
    rebuild : bool
        Rebuild (and retrain) even when a cached build exists.
    progress : callable(stage, done, total), optional
        Stage names are HEALTHY_STAGES and VARIANT_STAGES; nothing is reported for a cache hit.
    """
    chosen = get_preset(preset)
    if not (isinstance(dose, (int, float)) and math.isfinite(dose) and dose > 0):
        raise UsageError(f"--dose: expected a positive number of photons per pattern, found {dose!r}")
    planted = parse_defects(defects)
    root = cache_root(cache_dir) / "scenarios"
    healthy_key = scenario_key(chosen.name, dose=dose, defects=(), seed=seed)
    healthy_dir = root / healthy_key
    _ensure(healthy_dir, lambda tmp: _build_healthy(tmp, healthy_key, chosen, dose, seed, progress),
            rebuild=rebuild)
    final = healthy_dir
    if planted:
        key = scenario_key(chosen.name, dose=dose, defects=planted, seed=seed)
        final = root / key
        _ensure(final, lambda tmp: _build_variant(tmp, key, healthy_dir, chosen, dose, seed, planted, progress),
                rebuild=rebuild)
    if out is not None:
        return _copy_out(final, Path(out), replace=rebuild)
    return final


def _copy_out(source: Path, out: Path, *, replace: bool = False) -> Path:
    """Give the user a workspace of their own: real copies of a cached build's files in ``out``
    and an empty session folder, so nothing done there (decisions, retraining, edits in place)
    ever reaches the cache.

    ``out`` may be new or empty; an unchanged copy of the same build is reused as it is (or
    replaced by a fresh copy with ``replace``). Anything else is refused, naming what is there:
    a copy with changes is the user's work and is never overwritten.
    """
    if out.exists() and not out.is_dir():
        raise InputError(out, "a folder for the demo workspace", "a file")
    if out.is_dir() and any(out.iterdir()):
        found = _copy_differences(source, out)
        if found:
            raise InputError(out, "a new or empty folder, or an unchanged copy of this demo build", found,
                             hint=f"open it with 'ptytui {out}', choose another folder with --out, "
                                  "or remove this one to start over")
        if not replace:
            return out
    tmp = out.with_name(f".tmp-{out.name}-{uuid.uuid4().hex[:8]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("session", ".*"))
    (tmp / "session").mkdir()
    if out.exists():
        shutil.rmtree(out)
    os.rename(tmp, out)
    return out


def _copy_differences(source: Path, out: Path) -> str | None:
    """None when ``out`` is an unchanged copy of the build ``source``; else what differs, in words.

    Unchanged: the same scenario key, the same files outside ``session/`` with the same sizes, the
    same ptytui.toml, and no decision recorded. Results saved in the session (a diagnosis, cached
    metrics) do not count as changes.
    """
    if not _is_complete(out):
        return f"a folder with {sum(1 for _ in out.iterdir())} entries that is no demo workspace"
    try:
        key = read_manifest(out).get("scenario_key")
    except (InputError, json.JSONDecodeError):
        return "a demo workspace with an unreadable scenario/manifest.json"
    if key != read_manifest(source).get("scenario_key"):
        return f"the demo workspace of another build ({key})"

    def files(root: Path) -> dict[str, int]:
        return {_relative_path(p, root): p.stat().st_size for p in root.rglob("*")
                if p.is_file() and not p.name.startswith(".") and p.relative_to(root).parts[0] != "session"}

    changes = []
    theirs, ours = files(source), files(out)
    if (out / "ptytui.toml").read_bytes() != (source / "ptytui.toml").read_bytes():
        changes.append("ptytui.toml edited")
    added = sorted(set(ours) - set(theirs))
    if added:
        changes.append(f"{len(added)} file(s) added ({added[0]}{', ...' if len(added) > 1 else ''})")
    altered = sorted(name for name in set(ours) & set(theirs)
                     if ours[name] != theirs[name] and name != "ptytui.toml")
    removed = sorted(set(theirs) - set(ours))
    if altered or removed:
        changes.append(f"{len(altered) + len(removed)} file(s) of the build changed or removed")
    if (out / "session" / "decisions.jsonl").exists():
        changes.append("decisions recorded in session/decisions.jsonl")
    return "a demo workspace with changes: " + "; ".join(changes) if changes else None


# --------------------------------------------------------------------------------------------
# The healthy build
# --------------------------------------------------------------------------------------------


class _Stages:
    """Stage timing plus progress forwarding."""

    def __init__(self, progress: ProgressCallback | None):
        self.progress = progress
        self.seconds: dict[str, float] = {}
        self._started: dict[str, float] = {}

    def report(self, stage: str, done: int, total: int) -> None:
        self._started.setdefault(stage, time.perf_counter())
        if done >= total:
            self.seconds[stage] = round(time.perf_counter() - self._started[stage], 3)
        if self.progress:
            self.progress(stage, done, total)

    def reporter(self, stage: str):
        return lambda done, total: self.report(stage, done, total)


def _relative_path(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _build_healthy(tmp: Path, key: str, preset: Preset, dose: float, seed: int, progress) -> None:
    """The healthy build's recipe, read top to bottom as the study made its files: simulate and
    write the splits, train the gs2 PINN, the gs1 "Baseline" bundle and the supervised U-Net,
    reconstruct the reference, measure, write the manifest. One function on purpose: each stage
    is a few lines, and splitting it would pass a dozen shared locals between functions."""

    started = time.perf_counter()
    stages = _Stages(progress)
    settings = _settings_record(preset, dose, seed, ())
    # simulate: two passes over the M patterns (see simulate.simulate), then write and check
    steps = 2 * (preset.n_train + preset.n_test) + 1
    stages.report("simulate", 0, steps)
    scan = simulate.simulate(preset, dose=dose, seed=seed, progress=lambda d, t: stages.report("simulate", d, steps))
    for name, split in scan.splits.items():
        simulate.write_split(tmp / "data" / f"{name}.npz", scan, split, preset=preset, seed=seed)
    train = open_split(tmp / "data" / "train.npz", "train")  # our own files must pass the contract
    test = open_split(tmp / "data" / "test.npz", "test")
    stages.report("simulate", steps, steps)

    N = preset.N
    scale = architectures.intensity_scale_for(dose, N)
    models_dir = tmp / "models"
    models_dir.mkdir()
    models_record = {}

    def train_pinn_stage(name: str, gridsize: int):
        """One PINN trained with relative offsets through the physics branch (its own stage)."""
        stage = f"train {name}"
        stages.report(stage, 0, preset.epochs[name])
        grouping = group_split(train, gridsize, seed=seed, n_groups=preset.train_groups)
        batch = grouping.batch(train, slice(None))
        seed_initial_weights(seed, name)
        model = architectures.build_pinn(N, gridsize, scale, preset.filters, scan.probe)
        losses = zoo.train_pinn(model, batch.diffraction, batch.relative_offsets, intensity_scale=scale,
                                epochs=preset.epochs[name], batch_size=preset.batch_size,
                                learning_rate=preset.learning_rate, seed=seed, progress=stages.reporter(stage))
        return model, grouping, losses

    # gs2 PINN, trained with relative offsets through the physics branch
    pinn, grouping, losses = train_pinn_stage("pinn_gs2", 2)
    pinn.diffraction_to_obj.save(models_dir / "pinn_gs2.keras")
    pinn_sidecar = {
        "model": "pinn_gs2", "intensity_scale": scale, "gridsize": 2, "N": N,
        "canvas_size": architectures.canvas_size(N, 2), "positions": "relative",
        "input_scaling": "input = stored amplitude * intensity_scale (sqrt(dose) / (N/2))",
    }
    zoo.sidecar(models_dir / "pinn_gs2.json", pinn_sidecar)
    models_record["pinn_gs2"] = {
        "path": "models/pinn_gs2.keras", "sidecar": "models/pinn_gs2.json", "gridsize": 2,
        "canvas_size": architectures.canvas_size(N, 2), "intensity_scale": scale, "train_groups": len(grouping),
        "train_loss": losses, "parameters": int(pinn.diffraction_to_obj.count_params()),
    }

    # gs1 PINN "Baseline", trained with zero (relative) offsets, saved as a bundle
    baseline, grouping1, losses = train_pinn_stage("baseline_gs1", 1)
    zoo.save_bundle(baseline.diffraction_to_obj, models_dir / "baseline_gs1", intensity_scale=scale,
                    work_dir=tmp / ".work")
    models_record["baseline_gs1"] = {
        "path": "models/baseline_gs1", "bundle": "models/baseline_gs1/wts.h5.zip", "gridsize": 1,
        "canvas_size": architectures.canvas_size(N, 1), "intensity_scale": scale, "train_groups": len(grouping1),
        "train_positions": "relative (all zero at gridsize 1)",
        "train_loss": losses, "parameters": int(baseline.diffraction_to_obj.count_params()),
    }

    # supervised U-Net on ground-truth patches
    stage = "train supervised_unet"
    stages.report(stage, 0, preset.epochs["supervised_unet"])
    patterns = grouping1.indices[:, 0]
    seed_initial_weights(seed, "supervised_unet")
    unet = architectures.build_supervised_unet(N, preset.filters)
    losses = zoo.train_supervised(unet, train.diffraction_batch(patterns)[..., None],
                                  train.ground_truth_batch(patterns)[..., None],
                                  epochs=preset.epochs["supervised_unet"], batch_size=preset.batch_size,
                                  learning_rate=preset.learning_rate, seed=seed, progress=stages.reporter(stage))
    unet.save(models_dir / "supervised_unet.keras")
    models_record["supervised_unet"] = {
        "path": "models/supervised_unet.keras", "gridsize": 1, "train_patterns": int(patterns.size),
        "train_loss": losses, "parameters": int(unet.count_params()),
    }

    # the iterative reference
    stage = "reconstruct (ePIE)"
    stages.report(stage, 0, preset.epie_iterations)
    reconstruction = epie.epie_reconstruct(
        np.asarray(test.diffraction), test.xcoords, test.ycoords, scan.probe,
        iterations=preset.epie_iterations, batch=preset.epie_batch, seed=seed, progress=stages.reporter(stage))
    epie.write_reconstruction(tmp / "reference" / "epie_test.npz", reconstruction, split="test",
                              extra={"preset": preset.name, "dose": dose})

    stage = "measure"
    stages.report(stage, 0, 1)
    models = {"pinn_gs2": pinn.diffraction_to_obj, "baseline_gs1": baseline.diffraction_to_obj,
              "supervised_unet": unet}
    measured = measure_models(models, train, test, preset, scale, seed) if preset.measure_at_build else None
    write_fingerprints(tmp / FINGERPRINTS, models, test, scale, seed)
    stages.report(stage, 1, 1)

    stages.report("write", 0, 1)
    shutil.rmtree(tmp / ".work", ignore_errors=True)
    (tmp / "session").mkdir()
    manifest = {
        "scenario_key": key,
        **settings,
        "healthy_key": key,
        "intensity_scale": scale,
        "split": {"axis": "y", "fraction": 0.5, "split_y": scan.split_y},
        "probe_scale": scan.probe_scale,
        "splits": {name: _split_record(split, N) for name, split in scan.splits.items()},
        "models": models_record,
        "reference": {"path": "reference/epie_test.npz", "algorithm": epie.ALGORITHM_LABEL, "split": "test",
                      "iterations": reconstruction.iterations, "fourier_error": reconstruction.fourier_error,
                      "canvas_origin_yx": [reconstruction.origin_y, reconstruction.origin_x]},
        "measured": measured,
    }
    _finish(tmp, manifest, (), scale, stages, started)


def seed_initial_weights(seed: int, model_name: str) -> None:
    """Seed Python, numpy and TensorFlow before a model is built, so its initial weights (drawn
    from Keras' global generator when the layers are created) depend on the seed and the model's
    name only. Without it two builds with one cache key trained different models."""
    derived = np.random.SeedSequence([int(seed), zlib.crc32(model_name.encode())]).generate_state(1)[0]
    tfload.keras().utils.set_random_seed(int(derived))


def _split_record(split, N: int) -> dict:
    return {
        "n_patterns": split.M,
        "normalization": {"mean_pattern_energy_before": split.mean_pattern_energy_raw,
                          "target_energy": (N / 2) ** 2, "amplitude_factor": split.amplitude_factor,
                          "energy_factor": split.amplitude_factor**2},
        "positions": {"x_mean": float(split.xcoords.mean()), "x_std": float(split.xcoords.std()),
                      "y_mean": float(split.ycoords.mean()), "y_std": float(split.ycoords.std()),
                      "x_range": [float(split.xcoords.min()), float(split.xcoords.max())],
                      "y_range": [float(split.ycoords.min()), float(split.ycoords.max())]},
    }


def _finish(tmp: Path, manifest: dict, defects: tuple[str, ...], scale: float, stages: _Stages,
            started: float) -> None:
    """Write ptytui.toml and the manifest (last: a manifest means the build is complete)."""
    (tmp / "ptytui.toml").write_text(workspace_toml(manifest["preset"]["name"], defects, scale, manifest))
    stages.report("write", 1, 1)
    manifest["build_seconds"] = {**manifest.get("build_seconds", {}), **stages.seconds,
                                 "total": round(time.perf_counter() - started, 3)}
    manifest["built_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    manifest["files"] = {
        _relative_path(p, tmp): p.stat().st_size
        for p in sorted(tmp.rglob("*")) if p.is_file() and not p.name.startswith(".")
    }
    (tmp / "scenario").mkdir(exist_ok=True)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=False, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


# --------------------------------------------------------------------------------------------
# Measurements (build time, and reusable by tests)
# --------------------------------------------------------------------------------------------


def measure_incident(workspace: str | Path, *, limit: int | None = None) -> dict:
    """Reload a scenario workspace's models and measure the incident's numbers.

    Returns ``{"baseline_gs1": {"absolute"|"relative": {split: record}}, "pinn_gs2": {"relative":
    {split: record}}}`` where a record holds nonzero_fraction, nan_count, amplitude_mean,
    per_patch_amplitude_std (and predicted_visible_fraction for absolute offsets). Reads the
    models of the folder as they are (a planted model defect shows up here); ``limit`` keeps a
    seeded contiguous subset of that many groups per split. The grouping uses the build's seed.
    """

    root = Path(workspace)
    manifest = read_manifest(root)
    preset = get_preset(manifest["preset"]["name"])
    if limit is not None:
        preset = dataclasses.replace(preset, measure_limit=limit)
    models = {
        "pinn_gs2": zoo.load_scenario_model(root / "models" / "pinn_gs2.keras"),
        "baseline_gs1": zoo.load_scenario_model(root / "models" / "baseline_gs1"),
    }
    train = open_split(root / "data" / "train.npz", "train")
    test = open_split(root / "data" / "test.npz", "test")
    return measure_models(models, train, test, preset, float(manifest["intensity_scale"]), int(manifest["seed"]))


# --------------------------------------------------------------------------------------------
# Defect variants
# --------------------------------------------------------------------------------------------


def link_tree(source: Path, target: Path, skip: set[str]) -> None:
    """Hard-link every file of ``source`` into ``target`` (copy where links are impossible)."""
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if rel.parts[0] in skip or path.name.startswith("."):
            continue
        dest = target / rel
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, dest)
        except OSError:
            shutil.copy2(path, dest)


def _unlinked(path: Path) -> Path:
    """Remove ``path`` before rewriting it: it may be a hard link shared with the healthy build."""
    if path.exists():
        path.unlink()
    return path


def _rewrite_split(path: Path, defects: tuple[str, ...]) -> dict:
    """Apply data defects to one split file; return what was done."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays["_metadata"]))
    done = {}
    if "swapped-xy" in defects:
        for a, b in (("xcoords", "ycoords"), ("xcoords_start", "ycoords_start")):
            arrays[a], arrays[b] = arrays[b].copy(), arrays[a].copy()
        done["swapped-xy"] = "xcoords <-> ycoords, xcoords_start <-> ycoords_start"
    if "uint16-intensity" in defects:
        factor = next(t["amplitude_factor"] for t in meta["data_transformations"] if t["operation"] == "normalize")
        counts = np.rint((arrays["diffraction"].astype(np.float64) / factor) ** 2)
        counts = np.clip(counts, 0, np.iinfo(np.uint16).max).astype(np.uint16)
        arrays["diffraction"] = counts.astype(np.float32)
        done["uint16-intensity"] = {"max": float(counts.max()),
                                    "stored": "raw uint16 photon counts cast to float32"}
    meta["data_transformations"] += [{"operation": "planted-defect", "defect": d}
                                     for d in defects if d in ("swapped-xy", "uint16-intensity")]
    arrays["_metadata"] = np.array(json.dumps(meta))
    with open(_unlinked(path), "wb") as fh:
        np.savez(fh, **arrays)
    return done


def _build_variant(tmp: Path, key: str, healthy: Path, preset: Preset, dose: float, seed: int,
                   defects: tuple[str, ...], progress) -> None:
    started = time.perf_counter()
    stages = _Stages(progress)
    total = len(defects)
    stages.report("plant defects", 0, total)
    link_tree(healthy, tmp, skip={"scenario", "session", "ptytui.toml"})
    (tmp / "session").mkdir(exist_ok=True)
    manifest = read_manifest(healthy)
    manifest.pop("files", None)
    manifest.pop("build_seconds", None)
    details: dict = {}
    done = 0

    data_defects = tuple(d for d in defects if d in ("swapped-xy", "uint16-intensity"))
    if data_defects:
        for name in ("train", "test"):
            for defect, what in _rewrite_split(tmp / "data" / f"{name}.npz", data_defects).items():
                details.setdefault(defect, {})[name] = what
        done += len(data_defects)
        stages.report("plant defects", done, total)

    model_defects = tuple(d for d in defects if d in ("dead-layer", "nan-weights"))
    if model_defects:

        model = zoo.load_scenario_model(healthy / "models" / "pinn_gs2.keras")
        if "dead-layer" in model_defects:
            details["dead-layer"] = {"model": "pinn_gs2", **zoo.plant_dead_layer(model)}
        if "nan-weights" in model_defects:
            details["nan-weights"] = {"model": "pinn_gs2", **zoo.plant_nan_weights(model)}
        model.save(_unlinked(tmp / "models" / "pinn_gs2.keras"))
        test = open_split(healthy / "data" / "test.npz", "test")
        write_fingerprints(tmp / FINGERPRINTS, {"pinn_gs2": model}, test, float(manifest["intensity_scale"]),
                            seed, previous=healthy / FINGERPRINTS)
        done += len(model_defects)
        stages.report("plant defects", done, total)
    else:
        (tmp / "scenario").mkdir(exist_ok=True)
        shutil.copy2(healthy / FINGERPRINTS, tmp / FINGERPRINTS)

    for defect in defects:
        if defect in ("absolute-positions", "model-kind", "missing-scale", "double-scale"):
            details[defect] = {"where": "ptytui.toml"}
    stages.report("plant defects", total, total)
    stages.report("write", 0, 1)
    manifest["scenario_key"] = key
    manifest["defects"] = list(defects)
    manifest["defect_details"] = details
    manifest["measured_note"] = "'measured' holds the healthy models' numbers (before defects)"
    _finish(tmp, manifest, defects, float(manifest["intensity_scale"]), stages, started)


# --------------------------------------------------------------------------------------------
# ptytui.toml
# --------------------------------------------------------------------------------------------


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def workspace_name(preset: str, defects, *, dose: float = DEFAULT_DOSE, seed: int = DEFAULT_SEED) -> str:
    """The workspace's name: ``incident-<preset>``, ``healthy-<preset>`` or ``<preset>-<defects>``;
    a dose or seed other than the defaults is appended (``-dose1e+04``, ``-seed3``) when given."""
    defects = parse_defects(defects)
    if not defects:
        name = f"healthy-{preset}"
    elif set(defects) == set(INCIDENT_DEFECTS):
        name = f"incident-{preset}"
    else:
        name = f"{preset}-" + "+".join(sorted(defects))
    if float(dose) != DEFAULT_DOSE:
        name += f"-dose{float(dose):.0e}"
    if int(seed) != DEFAULT_SEED:
        name += f"-seed{int(seed)}"
    return name


def workspace_toml(preset: str, defects: tuple[str, ...], intensity_scale: float, manifest: dict | None = None) -> str:
    """The workspace file, wired as the study did for the planted ``defects``.

    Healthy wiring: pinn_gs2 fed relative offsets with its intensity scale applied; baseline_gs1
    (a gs1 PINN bundle) fed relative offsets and labelled what it is (expected_kind "pinn");
    supervised_unet fed the stored amplitude with no scale; the ePIE reference of the test split.
    Defects change only the lines they name (see settings.DEFECTS).
    """
    defects = tuple(defects)
    name = workspace_name(preset, defects)
    pinn_scale: str | float = "apply"
    if "missing-scale" in defects:
        pinn_scale = "none"
    elif "double-scale" in defects:
        pinn_scale = intensity_scale * intensity_scale  # applied twice: s * s
    baseline_positions = "absolute" if "absolute-positions" in defects else "relative"
    baseline_kind = "supervised" if "model-kind" in defects else "pinn"

    def value(v) -> str:
        return _toml_string(v) if isinstance(v, str) else repr(float(v))

    lines = [
        f"# ptytui demo scenario: preset {preset}, planted defects: {', '.join(defects) or 'none'}",
        "# (see scenario/manifest.json for settings, normalization factors and build-time measurements)",
        "[workspace]",
        f"name = {_toml_string(name)}",
        'session = "session"',
        "",
        "[splits]",
        'train = "data/train.npz"',
        'test = "data/test.npz"',
        "",
        "[models.pinn_gs2]",
        'path = "models/pinn_gs2.keras"',
        'label = "PtychoPINN"',
        "gridsize = 2",
        'positions = "relative"',
        f"intensity_scale = {value(pinn_scale)}",
        'expected_kind = "pinn"',
        f"description = {_toml_string(f'gs2 PINN; its intensity scale is {intensity_scale:.6g} (models/pinn_gs2.json)')}",
        "",
        "[models.baseline_gs1]",
        'path = "models/baseline_gs1"',
        'label = "Baseline"',
        "gridsize = 1",
        f"positions = {_toml_string(baseline_positions)}",
        'intensity_scale = "apply"',
        f"expected_kind = {_toml_string(baseline_kind)}",
        'description = "PtychoPINN-style gs1 PINN bundle (wts.h5.zip), trained with zero offsets"',
        "",
        "[models.supervised_unet]",
        'path = "models/supervised_unet.keras"',
        'label = "SupervisedUNet"',
        "gridsize = 1",
        'intensity_scale = "none"',
        'expected_kind = "supervised"',
        'description = "PtychoNN-style supervised U-Net: what the Baseline should have been"',
        "",
        "[reference]",
        'path = "reference/epie_test.npz"',
        'label = "ePIE"',
        'split = "test"',
        'description = "ePIE (ptytui) reconstruction of the test split, pty-chi NPZ layout"',
        "",
    ]
    return "\n".join(lines)
