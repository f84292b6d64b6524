"""The NPZ data contract: open a ptychography split lazily (memory-mapped) and validate it.

Every contract violation becomes a one-line ``InputError``; softer observations (suspicious scale,
centred coordinates, ...) go to ``Split.warnings`` for the diagnosis to turn into findings.

Conventions (see DOMAIN.md section 2)
-------------------------------------
- ``diffraction`` is amplitude (sqrt of counts), shape (M, N, N); legacy files call it ``diff3d``,
  may store it as (N, N, M) and may carry a trailing singleton axis. ``Split.diffraction`` is always
  an (M, N, N) *view* on the stored array (a ``np.memmap`` for uncompressed members), never a copy.
- Positions ``xcoords`` (column) and ``ycoords`` (row) are absolute, in object pixels.
- ``_metadata`` (often a pickled JSON string) is read only under trust.

Grouping lives in ``ptytui.inputs.grouping``; the amplitude scan and normalization record in
``ptytui.inputs.diffraction_scan``; reading the archive's members in ``ptytui.inputs.npz_reader``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ptytui.errors import InputError, one_line
from ptytui.inputs.diffraction_scan import (
    DiffractionScan,
    NormalizationRecord,
    normalization_record,
    scale_warnings,
    scan_diffraction,
)
from ptytui.inputs.npz_reader import NpzReader, release_pages

__all__ = ["Split", "open_split"]


@dataclass(repr=False)
class Split:
    """One validated NPZ split, opened lazily.

    Array fields are views on the file (``np.memmap`` for uncompressed members); they keep the
    stored dtype (float32 per the contract). Read batches through ``diffraction_batch`` /
    ``ground_truth_batch``, which read only the requested rows and return float32 / complex64.

    Attributes
    ----------
    path, name : the file and the split's name ("train", "test", ...).
    N, M : pattern size in pixels and number of patterns.
    diffraction : (M, N, N) amplitude view (legacy layouts normalized to this order as views).
    probe : (N, N) complex64.
    object : (H, W) complex view, or None when the file has no ``objectGuess``.
    xcoords, ycoords : (M,) float64, absolute positions in object pixels (x = column, y = row).
    xcoords_start, ycoords_start : (M,) float64 nominal positions (fall back to xcoords/ycoords).
    scan_index : (M,) int64 or None.
    ground_truth : (M, N, N) complex view from ``Y`` or ``ground_truth_patches``, or None.
    metadata : the ``_metadata`` JSON as a dict, only when opened with trust=True; else None.
    normalization : NormalizationRecord (the per-split factor, stated not applied).
    scan : DiffractionScan (min/max/mean/zeros/NaN of the amplitudes).
    source_keys : what was actually found: keys, layout, storage, fallbacks.
    warnings : observations for the diagnosis (not errors), one line each.
    notes : neutral facts about how the file was read (fallbacks, ignored keys), one line each.
    """

    path: Path
    name: str
    N: int
    M: int
    diffraction: np.ndarray
    probe: np.ndarray
    object: np.ndarray | None
    xcoords: np.ndarray
    ycoords: np.ndarray
    xcoords_start: np.ndarray
    ycoords_start: np.ndarray
    scan_index: np.ndarray | None
    ground_truth: np.ndarray | None
    metadata: dict | None
    normalization: NormalizationRecord
    scan: DiffractionScan
    source_keys: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return (
            f"Split(name={self.name!r}, path={str(self.path)!r}, M={self.M}, N={self.N}, "
            f"diffraction={self.source_keys.get('diffraction')!r}, "
            f"layout={self.source_keys.get('layout')!r}, storage={self.source_keys.get('storage')!r})"
        )

    @property
    def positions(self) -> np.ndarray:
        """(M, 2) float64 absolute positions, columns [x, y] in object pixels."""
        return np.stack([self.xcoords, self.ycoords], axis=1)

    def diffraction_batch(self, idx: Any) -> np.ndarray:
        """Read only the patterns ``idx`` (ints, an int array or a slice) as float32 (B, N, N).

        Returns a fresh C-contiguous array; the rest of the split stays on disk.
        """
        return _read_rows(self.diffraction, idx, np.float32)

    def ground_truth_batch(self, idx: Any) -> np.ndarray | None:
        """Ground-truth patches ``idx`` as complex64 (B, N, N), or None when the split has none."""
        if self.ground_truth is None:
            return None
        return _read_rows(self.ground_truth, idx, np.complex64)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no arrays): identity, sizes, coordinate ranges, records."""
        return {
            "name": self.name,
            "path": str(self.path),
            "N": self.N,
            "M": self.M,
            "object_shape": list(self.object.shape) if self.object is not None else None,
            "has_ground_truth": self.ground_truth is not None,
            "x_range": [float(self.xcoords.min()), float(self.xcoords.max())],
            "y_range": [float(self.ycoords.min()), float(self.ycoords.max())],
            "normalization": self.normalization.to_dict(),
            "scan": self.scan.to_dict(),
            "source_keys": dict(self.source_keys),
            "metadata_read": self.metadata is not None,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


def _read_rows(view: np.ndarray, idx: Any, dtype: Any) -> np.ndarray:
    if isinstance(idx, slice):
        rows = view[idx]
    else:
        order = np.asarray(idx, dtype=np.int64).reshape(-1)
        rows = view[order]
    rows = np.ascontiguousarray(rows, dtype=dtype)
    if not np.may_share_memory(rows, view):  # a copy: the pages it was read from can go
        release_pages(view)
    return rows



# --------------------------------------------------------------------------------------------
# open_split: each validation step is one function, in the order the file is checked
# --------------------------------------------------------------------------------------------


def open_split(path: str | Path, name: str | None = None, *, trust: bool = False, scan: str = "full") -> Split:
    """Open and validate one NPZ split lazily.

    Parameters
    ----------
    path : str or Path
        The .npz file.
    name : str, optional
        The split's name ("train", "test"); defaults to the file's stem.
    trust : bool
        Allow pickled members: ``_metadata`` (a pickled JSON string) is read only when True, and
        object arrays elsewhere are refused without it. Pickle can run code when loaded.
    scan : {"full", "sample"}
        "full" streams every diffraction pattern in chunks (NaN/Inf/negative checks and the
        normalization over all patterns); "sample" reads a seeded sample of 256 patterns only.

    Returns
    -------
    Split

    Raises
    ------
    InputError
        One line naming the file, what was expected and what was found, for any contract
        violation (missing keys, shapes, dtypes, non-finite values, a damaged file, ...).
    """
    p = Path(path)
    shown = str(path)
    if scan not in ("full", "sample"):
        raise ValueError(f"scan must be 'full' or 'sample', not {scan!r}")
    _check_regular_file(p, shown)
    opening = _Opening(NpzReader(p, shown), shown, trust)
    _check_required_keys(opening)
    probe = _read_probe(opening)
    N = int(probe.shape[0])
    diff = _read_diffraction(opening, N, probe.shape)
    M = int(diff.patterns.shape[0])
    xcoords, ycoords, xcoords_start, ycoords_start = _read_positions(opening, M, diff.key)
    scan_index = _read_scan_index(opening, M)
    obj = _read_object(opening, N)
    ground_truth, gt_key = _read_ground_truth(opening, M, N)
    opening.source["ground_truth"] = gt_key
    metadata = _read_metadata(opening)

    scan_record, energy_mean = scan_diffraction(shown, diff.key, diff.stored, diff.pattern_axis,
                                                diff.patterns, scan)
    normalization = normalization_record(scan_record, energy_mean, N)
    opening.warnings.extend(scale_warnings(scan_record, normalization))
    opening.warnings.extend(_coordinate_warnings(xcoords, ycoords, obj))

    return Split(
        path=p,
        name=name if name is not None else p.stem,
        N=N,
        M=M,
        diffraction=diff.patterns,
        probe=probe,
        object=obj,
        xcoords=xcoords,
        ycoords=ycoords,
        xcoords_start=xcoords_start,
        ycoords_start=ycoords_start,
        scan_index=scan_index,
        ground_truth=ground_truth,
        metadata=metadata,
        normalization=normalization,
        scan=scan_record,
        source_keys=opening.source,
        warnings=opening.warnings,
        notes=opening.notes,
    )


@dataclass
class _Opening:
    """What open_split's steps share: the archive, the file as messages name it, and what the steps
    record (``source`` becomes ``Split.source_keys``; notes and warnings keep the order of the steps)."""

    reader: NpzReader
    shown: str
    trust: bool
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.source["keys"] = sorted(self.keys)
        if self.reader.ignored:
            self.notes.append(f"ignored non-array members: {', '.join(self.reader.ignored)}")

    @property
    def keys(self) -> dict:
        """The archive's array members by key."""
        return self.reader.members

    @property
    def found_keys(self) -> str:
        """The keys the file has, as the 'found' part of a message."""
        return f"keys {sorted(self.keys)}" if self.keys else "no arrays"

    def numeric(self, key: str) -> np.ndarray:
        """The member as a numeric array (pickled members only under trust)."""
        return self.reader.numeric(key, self.trust)


@dataclass(frozen=True)
class _Diffraction:
    """The diffraction member as stored and as the (M, N, N) view on it."""

    key: str  # "diffraction" or legacy "diff3d"
    stored: np.ndarray  # as stored, a trailing singleton axis dropped
    pattern_axis: int  # the pattern axis of ``stored`` (0, or 2 for the legacy (N, N, M) layout)
    patterns: np.ndarray  # (M, N, N) view on ``stored``


def _check_regular_file(p: Path, shown: str) -> None:
    """The path names an existing regular file (not a directory, device or pipe)."""
    if not p.exists():
        raise InputError(shown, "an NPZ file", "no such file")
    if p.is_dir():
        raise InputError(shown, "an NPZ file", "a directory")
    if not p.is_file():
        raise InputError(shown, "an NPZ file", "not a regular file")


def _check_required_keys(opening: _Opening) -> None:
    """All required keys are checked first so one message names every missing one."""
    keys = opening.keys
    missing = []
    if "diffraction" not in keys and "diff3d" not in keys:
        missing.append("key 'diffraction' (M, N, N) float32 (or legacy 'diff3d')")
    if "probeGuess" not in keys:
        missing.append("key 'probeGuess' (N, N) complex64")
    missing += [f"key '{k}' (M,) float64 positions" for k in ("xcoords", "ycoords") if k not in keys]
    if missing:
        raise InputError(opening.shown, ", ".join(missing), opening.found_keys,
                         hint="is this a ptychography NPZ?" if len(missing) > 2 else None)


def _read_probe(opening: _Opening) -> np.ndarray:
    """probeGuess as (N, N) complex64; its size fixes N for every other check."""
    shown = opening.shown
    probe_raw = opening.numeric("probeGuess")
    if probe_raw.ndim != 2 or probe_raw.shape[0] != probe_raw.shape[1] or probe_raw.shape[0] == 0:
        raise InputError(shown, "'probeGuess' of shape (N, N)", f"shape {probe_raw.shape}")
    if probe_raw.dtype.kind == "c":
        probe = np.asarray(probe_raw, dtype=np.complex64)
    elif probe_raw.dtype.kind == "f":
        probe = np.asarray(probe_raw, dtype=np.complex64)
        opening.notes.append(f"probeGuess stored as real {probe_raw.dtype}; read as complex64 with zero phase")
    else:
        raise InputError(shown, "'probeGuess' complex64", f"dtype {probe_raw.dtype}",
                         hint="the probe is a complex field, not counts or labels")
    if not np.isfinite(probe).all():
        raise InputError(shown, "a finite 'probeGuess'", f"{int((~np.isfinite(probe)).sum())} NaN/Inf values")
    if not np.any(probe):
        opening.warnings.append("probeGuess is all zeros")
    return probe


def _read_diffraction(opening: _Opening, N: int, probe_shape: tuple[int, ...]) -> _Diffraction:
    """The diffraction member (modern or legacy key), its dtype and storage, then its layout."""
    diff_key = _diffraction_key(opening)
    stored = opening.numeric(diff_key)
    _check_diffraction_dtype(opening.shown, diff_key, stored.dtype)
    _note_diffraction_storage(opening, diff_key, stored)
    return _diffraction_layout(opening, diff_key, stored, N, probe_shape)


def _diffraction_key(opening: _Opening) -> str:
    """'diffraction', else the legacy 'diff3d' (noted)."""
    keys = opening.keys
    if "diffraction" in keys:
        diff_key = "diffraction"
        if "diff3d" in keys:
            opening.notes.append("both 'diffraction' and legacy 'diff3d' present; used 'diffraction'")
    else:
        diff_key = "diff3d"
        opening.notes.append("legacy key 'diff3d' used as 'diffraction'")
    opening.source["diffraction"] = diff_key
    return diff_key


def _check_diffraction_dtype(shown: str, key: str, dtype: np.dtype) -> None:
    """Amplitudes are real floats: integer counts and complex wavefields are refused with a hint."""
    if dtype.kind == "f":
        return
    if dtype.kind in "iu":
        raise InputError(shown, f"'{key}' float32 amplitude (sqrt of counts)", f"{dtype} counts",
                         hint="raw detector intensity? store amplitude = sqrt(counts) as float32")
    if dtype.kind == "c":
        raise InputError(shown, f"'{key}' real float32 amplitude", f"complex dtype {dtype}",
                         hint="store |FFT| amplitudes, not complex wavefields")
    raise InputError(shown, f"'{key}' float32 amplitude", f"dtype {dtype}")


def _note_diffraction_storage(opening: _Opening, diff_key: str, stored: np.ndarray) -> None:
    """Record whether the diffraction is memory-mapped, and note a dtype other than float32."""
    if stored.dtype != np.float32:
        opening.notes.append(f"'{diff_key}' stored as {stored.dtype}; batches are converted to float32")
    compressed = opening.keys[diff_key].compressed
    storage = "loaded (compressed member)" if compressed else (
        "memmap" if isinstance(stored, np.memmap) else "loaded")
    opening.source["storage"] = storage
    if storage != "memmap":
        opening.notes.append(f"'{diff_key}' is a {'compressed' if compressed else 'pickled'} member: "
                             "loaded into memory (save with np.savez, not savez_compressed, to memory-map it)")


def _diffraction_layout(opening: _Opening, diff_key: str, stored: np.ndarray, N: int,
                        probe_shape: tuple[int, ...]) -> _Diffraction:
    """(M, N, N) or legacy (N, N, M), a trailing singleton axis allowed, at least one pattern."""
    shown = opening.shown
    stored_shape = tuple(stored.shape)
    stored, trailing = _squeeze_trailing(stored)
    opening.source["trailing_singleton"] = trailing
    if stored.ndim != 3:
        raise InputError(shown, f"'{diff_key}' of shape (M, {N}, {N}) (or legacy ({N}, {N}, M))",
                         f"shape {stored_shape}",
                         hint="grouped (M, N, N, C) data? give ptytui ungrouped patterns" if stored.ndim == 4 else None)
    if stored.shape[1:] == (N, N):
        layout, pattern_axis = "MNN", 0
        diffraction = stored
    elif stored.shape[:2] == (N, N):
        layout, pattern_axis = "NNM", 2
        diffraction = np.moveaxis(stored, 2, 0)  # a view: no copy of the legacy layout
        opening.notes.append(f"legacy (N, N, M) layout of '{diff_key}' read as (M, N, N)")
    else:
        raise InputError(shown, f"'{diff_key}' patterns of {N} x {N} to match probeGuess {probe_shape}",
                         f"shape {stored.shape}")
    opening.source["layout"] = layout
    if stored.shape == (N, N, N):
        opening.notes.append(f"'{diff_key}' is ({N}, {N}, {N}): ambiguous layout, read as (M, N, N)")
    if diffraction.shape[0] == 0:
        raise InputError(shown, f"at least one diffraction pattern in '{diff_key}'",
                         f"shape {stored.shape} (empty split)")
    return _Diffraction(diff_key, stored, pattern_axis, diffraction)


def _squeeze_trailing(arr: np.ndarray) -> tuple[np.ndarray, bool]:
    """Drop a legacy trailing singleton axis of a 4-d array (a view); True when one was dropped."""
    if arr.ndim == 4 and arr.shape[-1] == 1:
        return arr[..., 0], True
    return arr, False


def _read_positions(opening: _Opening, M: int,
                    diff_key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """xcoords, ycoords and their nominal twins (``*_start``, falling back to the actual ones)."""
    xcoords = _read_coords(opening, "xcoords", M, diff_key)
    ycoords = _read_coords(opening, "ycoords", M, diff_key)
    starts = []
    for axis, actual in (("x", xcoords), ("y", ycoords)):
        key = f"{axis}coords_start"
        if key in opening.keys:
            starts.append(_read_coords(opening, key, M, diff_key))
            opening.source[key] = key
        else:
            starts.append(actual)
            opening.source[key] = f"{axis}coords (fallback)"
            opening.notes.append(f"no '{key}': nominal positions taken from '{axis}coords'")
    xcoords_start, ycoords_start = starts
    # How far actual positions sit from nominal ones (jitter); 0 when the twins are copies.
    opening.source["start_deviation_px"] = float(max(np.abs(xcoords - xcoords_start).max(),
                                                     np.abs(ycoords - ycoords_start).max()))
    return xcoords, ycoords, xcoords_start, ycoords_start


def _read_coords(opening: _Opening, key: str, M: int, diff_key: str) -> np.ndarray:
    """One (M,) positions member as a float64 copy; (M, 1) / (1, M) are accepted and flattened."""
    shown = opening.shown
    if key not in opening.keys:
        raise InputError(shown, f"key '{key}' ({M},) float64 (scan positions in object pixels)", opening.found_keys)
    raw = opening.numeric(key)
    if raw.ndim == 2 and 1 in raw.shape and raw.size == M:
        raw = raw.reshape(-1)
    if raw.shape != (M,):
        raise InputError(shown, f"'{key}' of shape ({M},) to match the {M} patterns of '{diff_key}'",
                         f"shape {raw.shape}")
    if raw.dtype.kind not in "fiu":
        raise InputError(shown, f"'{key}' float64 positions", f"dtype {raw.dtype}")
    coords = np.array(raw, dtype=np.float64)  # a copy: (M,) is small and callers may keep it
    bad = ~np.isfinite(coords)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(shown, f"finite '{key}'", f"{int(bad.sum())} NaN/Inf values (first at index {first})")
    return coords


def _read_scan_index(opening: _Opening, M: int) -> np.ndarray | None:
    """scan_index as (M,) int64; an unusable one is a warning, never fatal."""
    if "scan_index" not in opening.keys:
        return None
    raw = opening.numeric("scan_index")
    if raw.shape != (M,) or raw.dtype.kind not in "iu":
        opening.warnings.append(f"scan_index ignored: expected ({M},) integers, found {raw.shape} {raw.dtype}")
        return None
    return np.asarray(raw, dtype=np.int64)


def _read_object(opening: _Opening, N: int) -> np.ndarray | None:
    """objectGuess as an (H, W) complex view, or None (noted) when the file has none."""
    if "objectGuess" not in opening.keys:
        opening.source["object"] = None
        opening.notes.append("no 'objectGuess': metrics against the full object are unavailable")
        return None
    raw = opening.numeric("objectGuess")
    if raw.ndim != 2:
        raise InputError(opening.shown, "'objectGuess' of shape (H, W)", f"shape {raw.shape}")
    if raw.dtype.kind not in "cf":
        raise InputError(opening.shown, "'objectGuess' complex64", f"dtype {raw.dtype}")
    obj = raw if raw.dtype.kind == "c" else raw.astype(np.complex64)
    opening.source["object"] = "objectGuess"
    if raw.shape[0] < N or raw.shape[1] < N:
        opening.warnings.append(f"objectGuess {raw.shape} is smaller than one {N} x {N} pattern")
    return obj


def _read_ground_truth(opening: _Opening, M: int, N: int) -> tuple[np.ndarray | None, str | None]:
    """Y if usable, else ground_truth_patches; unusable ground truth is noted, never fatal."""
    members = opening.keys
    for key in ("Y", "ground_truth_patches"):
        if key not in members:
            continue
        m = members[key]
        if m.is_object and not opening.trust:
            opening.notes.append(f"'{key}' is a pickled object array: not read (pass --trust)")
            continue
        if m.shape[:1] != (M,):
            opening.notes.append(f"'{key}' ignored: its first axis {m.shape[:1]} is not the {M} patterns")
            continue
        arr, _ = _squeeze_trailing(opening.numeric(key))
        if arr.shape != (M, N, N):
            opening.warnings.append(f"'{key}' ignored: expected ({M}, {N}, {N}) patches, found {m.shape}")
            continue
        if arr.dtype.kind == "c":
            return arr, key
        if arr.dtype.kind == "f":
            opening.notes.append(f"'{key}' stored as real {arr.dtype}; read as complex with zero phase")
            return arr, key
        opening.warnings.append(f"'{key}' ignored: expected complex64 patches, found dtype {arr.dtype}")
    return None, None


def _read_metadata(opening: _Opening) -> dict | None:
    """``_metadata`` as a dict: a plain member always, a pickled one only under trust."""
    keys, reader = opening.keys, opening.reader
    if "_metadata" not in keys:
        opening.source["metadata"] = "absent"
        return None
    if not keys["_metadata"].is_object:
        metadata = _metadata_dict(np.asarray(reader.array("_metadata")), opening.warnings)
    elif opening.trust:
        metadata = _metadata_dict(reader.array("_metadata", allow_pickle=True), opening.warnings)
    else:
        opening.source["metadata"] = "present, not read (pickled; needs --trust)"
        opening.notes.append("'_metadata' present but not read: it is pickled (pass --trust, or set trust = true "
                             "under [workspace] in ptytui.toml, to read it)")
        return None
    opening.source["metadata"] = "read" if metadata is not None else "unreadable"
    return metadata


def _metadata_dict(arr: np.ndarray, warnings: list[str]) -> dict | None:
    """The member's value as a dict (a dict, or a JSON object as str/bytes), else None and a warning."""
    value = arr.item() if arr.shape == () else arr
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            warnings.append(f"_metadata is not valid JSON ({one_line(exc)})")
            return None
        if isinstance(parsed, dict):
            return parsed
    warnings.append(f"_metadata is not a JSON object (found {type(value).__name__})")
    return None


def _coordinate_warnings(x: np.ndarray, y: np.ndarray, obj: np.ndarray | None) -> list[str]:
    """Observations (not errors) about the positions: all identical, centred, beyond the object."""
    out = []
    if np.ptp(x) == 0 and np.ptp(y) == 0 and x.size > 1:
        out.append(f"all {x.size} scan positions are identical ({x[0]:.4g}, {y[0]:.4g})")
    # Absolute object-pixel positions are >= 0; values straddling 0 look centred (relative).
    if (x.min() < 0 < x.max()) or (y.min() < 0 < y.max()):
        out.append(f"positions straddle 0 (x {x.min():.4g}..{x.max():.4g}, y {y.min():.4g}..{y.max():.4g}): "
                   "centred/relative, but the contract says absolute object pixels")
    if obj is not None:
        H, W = obj.shape
        if x.max() > W or y.max() > H:
            out.append(f"positions reach beyond objectGuess ({W} x {H} px): "
                       f"x max {x.max():.4g}, y max {y.max():.4g} (x/y swapped or other units?)")
    return out

