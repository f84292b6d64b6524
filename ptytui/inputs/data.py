"""The NPZ data contract: open a ptychography split lazily (memory-mapped), validate it, and group it.

Every contract violation becomes a one-line ``InputError``; softer observations (suspicious scale,
centred coordinates, ...) go to ``Split.warnings`` for the diagnosis to turn into findings.

Conventions (see DOMAIN.md section 2)
-------------------------------------
- ``diffraction`` is amplitude (sqrt of counts), shape (M, N, N); legacy files call it ``diff3d``,
  may store it as (N, N, M) and may carry a trailing singleton axis. ``Split.diffraction`` is always
  an (M, N, N) *view* on the stored array (a ``np.memmap`` for uncompressed members), never a copy.
- Positions ``xcoords`` (column) and ``ycoords`` (row) are absolute, in object pixels.
- Grouping: gridsize gs gives C = gs**2 patterns per group; global offset = group mean position
  (G, 1, 2, 1) in order [x, y]; relative offsets = -(position - mean), (G, 1, 2, C).
"""

from __future__ import annotations

import json
import math
import mmap
import struct
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ptytui.errors import InputError, one_line

__all__ = [
    "AMPLITUDE_MAX_SUSPECT",
    "MAX_OVER_MEAN_SUSPECT",
    "DiffractionScan",
    "GroupBatch",
    "Grouping",
    "NormalizationRecord",
    "Split",
    "group_split",
    "open_split",
]

# A stored amplitude whose maximum is far above this suggests intensity stored as amplitude or a
# photon scale already applied (DOMAIN.md section 2).
AMPLITUDE_MAX_SUSPECT = 10.0
# max/mean of all diffraction pixels. DOMAIN.md says "above ~100"; real PtychoPINN amplitude data
# (the lines_N64 fixtures, a peaky high-dose pattern) already sit at ~130, while the same data
# squared (intensity stored as amplitude) reach ~490, so the line is drawn between the two.
MAX_OVER_MEAN_SUSPECT = 300.0

# Rows per streaming chunk are chosen so one chunk holds about this many elements.
_CHUNK_ELEMENTS = 4_000_000
# Patterns read when open_split(scan="sample").
_SAMPLE_PATTERNS = 256

_LOCAL_HEADER_SIGNATURE = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NormalizationRecord:
    """How bright a split is relative to PtychoPINN's per-split normalization.

    PtychoPINN normalizes each split on its own so that the mean per-pattern energy
    sum(amplitude**2) equals (N/2)**2; a brightness shift between splits is then invisible unless
    both factors are shown. ptytui never rescales the data: it records the factor instead.

    Attributes
    ----------
    mean_pattern_energy : float
        Mean over the measured patterns of sum(amplitude**2) over the N x N pixels.
    target_energy : float
        (N/2)**2, the energy PtychoPINN normalizes to.
    factor : float
        target_energy / mean_pattern_energy: the energy factor that would normalize this split
        (1.0 means already normalized; inf for an all-zero split). Amplitudes scale by sqrt(factor).
    n_patterns : int
        How many patterns the mean was taken over.
    scope : str
        "all" (every pattern, streamed) or "sample" (a seeded sample of patterns).
    """

    mean_pattern_energy: float
    target_energy: float
    factor: float
    n_patterns: int
    scope: str

    @property
    def amplitude_factor(self) -> float:
        """sqrt(factor): the multiplier on amplitudes that would normalize this split."""
        return math.sqrt(self.factor) if math.isfinite(self.factor) else math.inf

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["amplitude_factor"] = self.amplitude_factor
        return d


@dataclass(frozen=True)
class DiffractionScan:
    """Summary of the diffraction amplitudes measured while opening a split (streamed in chunks).

    Statistics are over finite values of the measured patterns (all of them for scope "all").
    """

    n_patterns: int
    scope: str
    count: int
    mean: float
    min: float
    max: float
    zero_fraction: float
    zero_energy_patterns: int
    nan_count: int
    inf_count: int

    @property
    def max_over_mean(self) -> float:
        return self.max / self.mean if self.mean > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["max_over_mean"] = self.max_over_mean
        return d


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
        _release_pages(view)
    return rows


def _release_pages(view: np.ndarray) -> None:
    """Unmap the file pages a read of a memory-mapped member touched (MADV_DONTNEED).

    Pages of a read-only file mapping stay mapped after a read, so a run over a whole split would
    count every page of the file in the process's resident memory (RSS) although each batch is
    needed once. Dropping them keeps RSS bounded by the batch; the data stay in the page cache,
    and a later read simply maps them again. No-op where madvise is unavailable.
    """
    handle = getattr(view, "_mmap", None)
    if handle is None or not hasattr(handle, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    try:
        handle.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError):
        pass


# --------------------------------------------------------------------------------------------
# NPZ members: header parsing and memory mapping
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Member:
    key: str
    member_name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    compressed: bool
    data_offset: int | None  # absolute file offset of the array bytes (uncompressed members)

    @property
    def is_object(self) -> bool:
        return self.dtype.hasobject


class _NpzReader:
    """Reads NPZ members without loading them: headers first, arrays on demand.

    Uncompressed (ZIP_STORED) members are memory-mapped: the local zip header gives where the
    member's bytes start, the .npy header gives dtype/shape/order, and the array bytes follow.
    Compressed members cannot be mapped and are loaded one array at a time.
    """

    def __init__(self, path: Path, shown: str):
        self.path = path
        self.shown = shown
        self.file_size = path.stat().st_size
        self.members: dict[str, _Member] = {}
        self.ignored: list[str] = []
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise InputError(shown, "an NPZ file (zip archive of .npy arrays)", _describe_non_zip(path, exc)) from None
        with zf:
            infos = zf.infolist()
            with open(path, "rb") as fh:
                for info in infos:
                    if info.is_dir():
                        continue
                    if not info.filename.endswith(".npy"):
                        self.ignored.append(info.filename)
                        continue
                    key = info.filename[: -len(".npy")]
                    self.members[key] = self._read_member_header(zf, fh, info, key)

    # -- headers ------------------------------------------------------------------------------

    def _read_member_header(self, zf: zipfile.ZipFile, fh, info: zipfile.ZipInfo, key: str) -> _Member:
        if info.flag_bits & 0x1:
            raise InputError(self.shown, f"an unencrypted member '{info.filename}'", "an encrypted zip member")
        if info.compress_type == zipfile.ZIP_STORED:
            fh.seek(info.header_offset)
            local = fh.read(30)
            if len(local) < 30 or local[:4] != _LOCAL_HEADER_SIGNATURE:
                raise InputError(self.shown, f"a zip local header for member '{info.filename}'",
                                 "damaged bytes", hint="the file is corrupt or truncated")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + name_len + extra_len
            fh.seek(start)
            shape, fortran_order, dtype = self._parse_npy_header(fh, info.filename)
            data_offset = fh.tell()
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if not dtype.hasobject else 0
            ends_past_eof = start + info.file_size > self.file_size and not dtype.hasobject
            if data_offset + nbytes > self.file_size or ends_past_eof:
                raise InputError(self.shown, f"{nbytes} bytes of array '{key}' {shape}",
                                 f"a file of {self.file_size} bytes that ends inside it",
                                 hint="the file is truncated")
            return _Member(key, info.filename, shape, dtype, fortran_order, False, data_offset)
        try:
            with zf.open(info) as stream:
                shape, fortran_order, dtype = self._parse_npy_header(stream, info.filename)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
            raise InputError(self.shown, f"a readable member '{info.filename}'",
                             one_line(exc), hint="the file is corrupt") from None
        return _Member(key, info.filename, shape, dtype, fortran_order, True, None)

    def _parse_npy_header(self, stream, member_name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
        try:
            magic = stream.read(len(_NPY_MAGIC))
            if magic != _NPY_MAGIC:
                raise ValueError(f"starts with {magic[:6]!r}")
            version = tuple(stream.read(2))
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except (ValueError, EOFError, OSError, zlib.error, zipfile.BadZipFile, SyntaxError) as exc:
            raise InputError(self.shown, f"member '{member_name}' in .npy format",
                             f"an invalid array header ({one_line(exc)})", hint="the file is corrupt") from None
        return tuple(int(s) for s in shape), bool(fortran_order), np.dtype(dtype)

    # -- arrays -------------------------------------------------------------------------------

    def array(self, key: str, *, allow_pickle: bool = False) -> np.ndarray:
        """The member as an array: a read-only np.memmap when stored, else loaded from the zip."""
        m = self.members[key]
        if m.is_object and not allow_pickle:
            raise InputError(self.shown, f"key '{key}' as a numeric array",
                             "a pickled object array (reading it can run code)",
                             hint="pass --trust only if you trust this file")
        if not m.compressed and not m.is_object:
            if int(np.prod(m.shape, dtype=np.int64)) == 0:
                return np.empty(m.shape, dtype=m.dtype)  # mmap cannot map zero bytes
            return np.memmap(self.path, dtype=m.dtype, mode="r", offset=m.data_offset, shape=m.shape,
                             order="F" if m.fortran_order else "C")
        try:
            with zipfile.ZipFile(self.path) as zf, zf.open(m.member_name) as stream:
                return np.lib.format.read_array(stream, allow_pickle=allow_pickle)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            raise InputError(self.shown, f"a readable array '{key}' {m.shape}",
                             one_line(exc),
                             hint="the file is corrupt or truncated") from None



def _describe_non_zip(path: Path, exc: BaseException) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as err:
        return f"an unreadable file ({one_line(err)})"
    if not head:
        return "an empty file (0 bytes)"
    if head.startswith(_NPY_MAGIC):
        return "a single .npy array, not an .npz archive"
    if head.startswith(_LOCAL_HEADER_SIGNATURE):
        return f"a damaged zip archive ({one_line(exc)}; truncated?)"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file"
    return "a file that is not a zip archive"


# --------------------------------------------------------------------------------------------
# open_split
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
    if not p.exists():
        raise InputError(shown, "an NPZ file", "no such file")
    if p.is_dir():
        raise InputError(shown, "an NPZ file", "a directory")
    if not p.is_file():
        raise InputError(shown, "an NPZ file", "not a regular file")

    reader = _NpzReader(p, shown)
    keys = reader.members
    notes: list[str] = []
    warnings: list[str] = []
    source: dict[str, Any] = {"keys": sorted(keys)}
    if reader.ignored:
        notes.append(f"ignored non-array members: {', '.join(reader.ignored)}")
    found_keys = f"keys {sorted(keys)}" if keys else "no arrays"

    # All required keys are checked first so one message names every missing one.
    missing = []
    if "diffraction" not in keys and "diff3d" not in keys:
        missing.append("key 'diffraction' (M, N, N) float32 (or legacy 'diff3d')")
    if "probeGuess" not in keys:
        missing.append("key 'probeGuess' (N, N) complex64")
    missing += [f"key '{k}' (M,) float64 positions" for k in ("xcoords", "ycoords") if k not in keys]
    if missing:
        raise InputError(shown, ", ".join(missing), found_keys,
                         hint="is this a ptychography NPZ?" if len(missing) > 2 else None)

    # -- probe fixes N ------------------------------------------------------------------------
    probe_raw = _numeric(reader, "probeGuess", trust)
    if probe_raw.ndim != 2 or probe_raw.shape[0] != probe_raw.shape[1] or probe_raw.shape[0] == 0:
        raise InputError(shown, "'probeGuess' of shape (N, N)", f"shape {probe_raw.shape}")
    if probe_raw.dtype.kind == "c":
        probe = np.asarray(probe_raw, dtype=np.complex64)
    elif probe_raw.dtype.kind == "f":
        probe = np.asarray(probe_raw, dtype=np.complex64)
        notes.append(f"probeGuess stored as real {probe_raw.dtype}; read as complex64 with zero phase")
    else:
        raise InputError(shown, "'probeGuess' complex64", f"dtype {probe_raw.dtype}",
                         hint="the probe is a complex field, not counts or labels")
    if not np.isfinite(probe).all():
        raise InputError(shown, "a finite 'probeGuess'", f"{int((~np.isfinite(probe)).sum())} NaN/Inf values")
    N = int(probe.shape[0])
    if not np.any(probe):
        warnings.append("probeGuess is all zeros")

    # -- diffraction --------------------------------------------------------------------------
    if "diffraction" in keys:
        diff_key = "diffraction"
        if "diff3d" in keys:
            notes.append("both 'diffraction' and legacy 'diff3d' present; used 'diffraction'")
    else:
        diff_key = "diff3d"
        notes.append("legacy key 'diff3d' used as 'diffraction'")
    source["diffraction"] = diff_key
    stored = _numeric(reader, diff_key, trust)
    _check_diffraction_dtype(shown, diff_key, stored.dtype)
    if stored.dtype != np.float32:
        notes.append(f"'{diff_key}' stored as {stored.dtype}; batches are converted to float32")
    storage = "loaded (compressed member)" if keys[diff_key].compressed else (
        "memmap" if isinstance(stored, np.memmap) else "loaded")
    source["storage"] = storage
    if storage != "memmap":
        notes.append(f"'{diff_key}' is a {'compressed' if keys[diff_key].compressed else 'pickled'} member: "
                     "loaded into memory (save with np.savez, not savez_compressed, to memory-map it)")

    stored_shape = tuple(stored.shape)
    stored, trailing = _squeeze_trailing(stored)
    source["trailing_singleton"] = trailing
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
        notes.append(f"legacy (N, N, M) layout of '{diff_key}' read as (M, N, N)")
    else:
        raise InputError(shown, f"'{diff_key}' patterns of {N} x {N} to match probeGuess {probe.shape}",
                         f"shape {stored.shape}")
    source["layout"] = layout
    if stored.shape == (N, N, N):
        notes.append(f"'{diff_key}' is ({N}, {N}, {N}): ambiguous layout, read as (M, N, N)")
    M = int(diffraction.shape[0])
    if M == 0:
        raise InputError(shown, f"at least one diffraction pattern in '{diff_key}'",
                         f"shape {stored.shape} (empty split)")

    # -- coordinates --------------------------------------------------------------------------
    xcoords = _coords(reader, shown, "xcoords", M, diff_key, trust, found_keys)
    ycoords = _coords(reader, shown, "ycoords", M, diff_key, trust, found_keys)
    starts = []
    for axis, actual in (("x", xcoords), ("y", ycoords)):
        key = f"{axis}coords_start"
        if key in keys:
            starts.append(_coords(reader, shown, key, M, diff_key, trust, found_keys))
            source[key] = key
        else:
            starts.append(actual)
            source[key] = f"{axis}coords (fallback)"
            notes.append(f"no '{key}': nominal positions taken from '{axis}coords'")
    xcoords_start, ycoords_start = starts
    # How far actual positions sit from nominal ones (jitter); 0 when the twins are copies.
    source["start_deviation_px"] = float(max(np.abs(xcoords - xcoords_start).max(),
                                             np.abs(ycoords - ycoords_start).max()))

    scan_index = None
    if "scan_index" in keys:
        raw = _numeric(reader, "scan_index", trust)
        if raw.shape != (M,) or raw.dtype.kind not in "iu":
            warnings.append(f"scan_index ignored: expected ({M},) integers, found {raw.shape} {raw.dtype}")
        else:
            scan_index = np.asarray(raw, dtype=np.int64)

    # -- object and ground truth --------------------------------------------------------------
    obj = None
    if "objectGuess" in keys:
        raw = _numeric(reader, "objectGuess", trust)
        if raw.ndim != 2:
            raise InputError(shown, "'objectGuess' of shape (H, W)", f"shape {raw.shape}")
        if raw.dtype.kind not in "cf":
            raise InputError(shown, "'objectGuess' complex64", f"dtype {raw.dtype}")
        obj = raw if raw.dtype.kind == "c" else raw.astype(np.complex64)
        source["object"] = "objectGuess"
        if raw.shape[0] < N or raw.shape[1] < N:
            warnings.append(f"objectGuess {raw.shape} is smaller than one {N} x {N} pattern")
    else:
        source["object"] = None
        notes.append("no 'objectGuess': metrics against the full object are unavailable")

    ground_truth, gt_key = _ground_truth(reader, shown, M, N, trust, notes, warnings)
    source["ground_truth"] = gt_key

    # -- metadata -----------------------------------------------------------------------------
    metadata = None
    if "_metadata" in keys:
        if not keys["_metadata"].is_object:
            metadata = _metadata_dict(np.asarray(reader.array("_metadata")), warnings)
            source["metadata"] = "read" if metadata is not None else "unreadable"
        elif trust:
            metadata = _metadata_dict(reader.array("_metadata", allow_pickle=True), warnings)
            source["metadata"] = "read" if metadata is not None else "unreadable"
        else:
            source["metadata"] = "present, not read (pickled; needs --trust)"
            notes.append("'_metadata' present but not read: it is pickled (pass --trust, or set trust = true "
                         "under [workspace] in ptytui.toml, to read it)")
    else:
        source["metadata"] = "absent"

    # -- diffraction scan: finiteness, sign, normalization ------------------------------------
    scan_record, energy_mean = _scan_diffraction(shown, diff_key, stored, pattern_axis, diffraction, scan)
    target = (N / 2) ** 2
    factor = target / energy_mean if energy_mean > 0 else math.inf
    normalization = NormalizationRecord(energy_mean, target, factor, scan_record.n_patterns, scan_record.scope)

    warnings.extend(_scale_warnings(scan_record, normalization))
    warnings.extend(_coordinate_warnings(xcoords, ycoords, obj))

    return Split(
        path=p,
        name=name if name is not None else p.stem,
        N=N,
        M=M,
        diffraction=diffraction,
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
        source_keys=source,
        warnings=warnings,
        notes=notes,
    )


def _numeric(reader: _NpzReader, key: str, trust: bool) -> np.ndarray:
    """The member as an array; a trusted pickled object array is converted to numbers."""
    m = reader.members[key]
    if not m.is_object:
        if m.dtype.names is not None:
            raise InputError(reader.shown, f"key '{key}' as a plain numeric array", f"a structured dtype {m.dtype}")
        return reader.array(key)
    arr = reader.array(key, allow_pickle=trust)  # raises without trust
    try:
        return np.array(arr.tolist())
    except (ValueError, TypeError) as exc:
        raise InputError(reader.shown, f"key '{key}' convertible to a numeric array",
                         f"an object array that is not ({one_line(exc)})") from None


def _check_diffraction_dtype(shown: str, key: str, dtype: np.dtype) -> None:
    if dtype.kind == "f":
        return
    if dtype.kind in "iu":
        raise InputError(shown, f"'{key}' float32 amplitude (sqrt of counts)", f"{dtype} counts",
                         hint="raw detector intensity? store amplitude = sqrt(counts) as float32")
    if dtype.kind == "c":
        raise InputError(shown, f"'{key}' real float32 amplitude", f"complex dtype {dtype}",
                         hint="store |FFT| amplitudes, not complex wavefields")
    raise InputError(shown, f"'{key}' float32 amplitude", f"dtype {dtype}")


def _squeeze_trailing(arr: np.ndarray) -> tuple[np.ndarray, bool]:
    if arr.ndim == 4 and arr.shape[-1] == 1:
        return arr[..., 0], True
    return arr, False


def _coords(reader: _NpzReader, shown: str, key: str, M: int, diff_key: str, trust: bool,
            found_keys: str) -> np.ndarray:
    if key not in reader.members:
        raise InputError(shown, f"key '{key}' ({M},) float64 (scan positions in object pixels)", found_keys)
    raw = _numeric(reader, key, trust)
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


def _ground_truth(reader: _NpzReader, shown: str, M: int, N: int, trust: bool,
                  notes: list[str], warnings: list[str]) -> tuple[np.ndarray | None, str | None]:
    """Y if usable, else ground_truth_patches; unusable ground truth is noted, never fatal."""
    for key in ("Y", "ground_truth_patches"):
        if key not in reader.members:
            continue
        m = reader.members[key]
        if m.is_object and not trust:
            notes.append(f"'{key}' is a pickled object array: not read (pass --trust)")
            continue
        if m.shape[:1] != (M,):
            notes.append(f"'{key}' ignored: its first axis {m.shape[:1]} is not the {M} patterns")
            continue
        arr, _ = _squeeze_trailing(_numeric(reader, key, trust))
        if arr.shape != (M, N, N):
            warnings.append(f"'{key}' ignored: expected ({M}, {N}, {N}) patches, found {m.shape}")
            continue
        if arr.dtype.kind == "c":
            return arr, key
        if arr.dtype.kind == "f":
            notes.append(f"'{key}' stored as real {arr.dtype}; read as complex with zero phase")
            return arr, key
        warnings.append(f"'{key}' ignored: expected complex64 patches, found dtype {arr.dtype}")
    return None, None


def _metadata_dict(arr: np.ndarray, warnings: list[str]) -> dict | None:
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


def _scan_diffraction(shown: str, key: str, stored: np.ndarray, pattern_axis: int,
                      diffraction: np.ndarray, scope: str) -> tuple[DiffractionScan, float]:
    """Stream the amplitudes in storage order, chunk by chunk, and refuse NaN/Inf/negatives.

    Chunks follow the slowest-varying stored axis so each chunk is one contiguous read, whatever
    the layout; per-pattern energies are accumulated across chunks.
    """
    M = diffraction.shape[0]
    if scope == "sample":
        n = min(M, _SAMPLE_PATTERNS)
        rows = np.sort(np.random.default_rng(0).choice(M, size=n, replace=False))
        stored, pattern_axis = diffraction[rows], 0
        offset_of = rows
    else:
        offset_of = None
    n_patterns = stored.shape[pattern_axis]
    fortran = isinstance(stored, np.ndarray) and stored.flags.f_contiguous and not stored.flags.c_contiguous
    chunk_axis = stored.ndim - 1 if fortran else 0
    per_index = max(1, int(np.prod([s for i, s in enumerate(stored.shape) if i != chunk_axis], dtype=np.int64)))
    step = max(1, _CHUNK_ELEMENTS // per_index)
    other_axes = tuple(i for i in range(stored.ndim) if i != pattern_axis)

    energy = np.zeros(n_patterns, dtype=np.float64)
    total = 0.0
    count = nan_count = inf_count = zero_count = 0
    vmin, vmax = math.inf, -math.inf
    for start in range(0, stored.shape[chunk_axis], step):
        sl = [slice(None)] * stored.ndim
        sl[chunk_axis] = slice(start, start + step)
        block = np.asarray(stored[tuple(sl)], dtype=np.float64)
        _release_pages(stored)  # the float64 copy is all the scan needs (see _release_pages)
        finite = np.isfinite(block)
        if not finite.all():
            nans = int(np.isnan(block).sum())
            nan_count += nans
            inf_count += int((~finite).sum()) - nans
            where = np.unravel_index(int(np.flatnonzero(~finite.ravel())[0]), block.shape)
            pattern = int(where[pattern_axis]) + (start if chunk_axis == pattern_axis else 0)
            if offset_of is not None:
                pattern = int(offset_of[pattern])
            raise InputError(shown, f"finite amplitudes in '{key}'",
                             f"NaN/Inf values (first in pattern {pattern})")
        bmin = float(block.min())
        if bmin < 0:
            where = np.unravel_index(int(block.argmin()), block.shape)
            pattern = int(where[pattern_axis]) + (start if chunk_axis == pattern_axis else 0)
            if offset_of is not None:
                pattern = int(offset_of[pattern])
            raise InputError(shown, f"amplitudes >= 0 in '{key}' (amplitude = sqrt(counts))",
                             f"min {bmin:.4g} in pattern {pattern}",
                             hint="background-subtracted intensity? clip at 0 and take sqrt")
        vmin = min(vmin, bmin)
        vmax = max(vmax, float(block.max()))
        total += float(block.sum())
        count += block.size
        zero_count += int(np.count_nonzero(block == 0))
        partial = np.square(block).sum(axis=other_axes)
        if chunk_axis == pattern_axis:
            energy[start:start + partial.shape[0]] += partial
        else:
            energy += partial
    record = DiffractionScan(
        n_patterns=n_patterns,
        scope="all" if scope == "full" else "sample",
        count=count,
        mean=total / count if count else 0.0,
        min=vmin if count else 0.0,
        max=vmax if count else 0.0,
        zero_fraction=zero_count / count if count else 0.0,
        zero_energy_patterns=int(np.count_nonzero(energy == 0)),
        nan_count=nan_count,
        inf_count=inf_count,
    )
    return record, float(energy.mean()) if n_patterns else 0.0


def _scale_warnings(scan: DiffractionScan, norm: NormalizationRecord) -> list[str]:
    out = []
    if scan.max > AMPLITUDE_MAX_SUSPECT:
        out.append(f"diffraction max {scan.max:.4g} is far above ~{AMPLITUDE_MAX_SUSPECT:g}: "
                   "intensity stored as amplitude, or a photon scale already applied?")
    if scan.max_over_mean > MAX_OVER_MEAN_SUSPECT:
        out.append(f"diffraction max/mean {scan.max_over_mean:.4g} is above ~{MAX_OVER_MEAN_SUSPECT:g}: "
                   "intensity stored as amplitude?")
    if scan.zero_energy_patterns:
        out.append(f"{scan.zero_energy_patterns} of {scan.n_patterns} measured diffraction patterns are all zero")
    if not math.isfinite(norm.factor):
        out.append("diffraction is all zero: no normalization factor")
    return out


def _coordinate_warnings(x: np.ndarray, y: np.ndarray, obj: np.ndarray | None) -> list[str]:
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


# --------------------------------------------------------------------------------------------
# Grouping
# --------------------------------------------------------------------------------------------


@dataclass
class GroupBatch:
    """One batch of groups, ready to feed: arrays in the layouts a PtychoPINN model expects.

    diffraction (B, N, N, C) float32 amplitude (stored scale, no intensity_scale applied);
    global_offsets (B, 1, 2, 1) and relative_offsets (B, 1, 2, C) float32, [x, y];
    positions (B, C, 2) float64 absolute [x, y]; ground_truth (B, N, N, C) complex64 or None;
    indices (B, C) int64 pattern indices into the split; group_indices (B,) into the grouping.
    """

    diffraction: np.ndarray
    global_offsets: np.ndarray
    relative_offsets: np.ndarray
    positions: np.ndarray
    ground_truth: np.ndarray | None
    indices: np.ndarray
    group_indices: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.shape[0])


@dataclass(repr=False)
class Grouping:
    """Groups of C = gridsize**2 patterns of one split, with their offsets.

    Attributes
    ----------
    gridsize, C : gridsize and patterns per group (C = gridsize**2).
    indices : (G, C) int64 pattern indices.
    global_offsets : (G, 1, 2, 1) float64, the group mean position [x, y] in object pixels.
    relative_offsets : (G, 1, 2, C) float64, -(position - mean) per pattern, [x, y].
    seed, k_neighbors : how the groups were drawn (gs >= 2).
    n_groups_requested : the ``n_groups`` asked for, or None for all.
    anchor : [x, y] of the subset's anchor point when a subset was taken, else None.
    """

    gridsize: int
    C: int
    indices: np.ndarray
    global_offsets: np.ndarray
    relative_offsets: np.ndarray
    seed: int = 0
    k_neighbors: int = 7
    n_groups_requested: int | None = None
    anchor: tuple[float, float] | None = None

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __repr__(self) -> str:
        return (f"Grouping(gridsize={self.gridsize}, C={self.C}, G={len(self)}, seed={self.seed}, "
                f"n_groups_requested={self.n_groups_requested})")

    def select(self, group_idx: Any) -> "Grouping":
        """A Grouping of only the groups ``group_idx`` (a slice or int array), e.g. for a shard."""
        sel = group_idx if isinstance(group_idx, slice) else np.asarray(group_idx, dtype=np.int64)
        return Grouping(self.gridsize, self.C, self.indices[sel], self.global_offsets[sel],
                        self.relative_offsets[sel], self.seed, self.k_neighbors,
                        self.n_groups_requested, self.anchor)

    def batch(self, split: Split, idx: Any, *, ground_truth: bool = True) -> GroupBatch:
        """Read groups ``idx`` (a slice or int array of group indices) from ``split``.

        Each distinct pattern is read once from disk, even when groups share patterns.
        ``ground_truth=False`` skips reading the ground-truth patches (``batch.ground_truth`` is
        None): inference does not use them, and they are twice the size of the diffraction.
        """
        gidx = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx, dtype=np.int64).reshape(-1)
        members = self.indices[gidx]  # (B, C)
        unique, inverse = np.unique(members, return_inverse=True)
        patterns = split.diffraction_batch(unique)  # (U, N, N) float32
        inverse = inverse.reshape(members.shape)
        diffraction = np.ascontiguousarray(np.moveaxis(patterns[inverse], 1, -1))  # (B, C, N, N) -> (B, N, N, C)
        gt = split.ground_truth_batch(unique) if ground_truth else None
        gt_patches = None if gt is None else np.ascontiguousarray(np.moveaxis(gt[inverse], 1, -1))
        positions = np.stack([split.xcoords[members], split.ycoords[members]], axis=-1)
        return GroupBatch(
            diffraction=diffraction,
            global_offsets=self.global_offsets[gidx].astype(np.float32),
            relative_offsets=self.relative_offsets[gidx].astype(np.float32),
            positions=positions,
            ground_truth=gt_patches,
            indices=members,
            group_indices=gidx,
        )

    def iter_batches(self, split: Split, batch_size: int) -> Iterator[GroupBatch]:
        """Yield consecutive batches of at most ``batch_size`` groups, reading each from disk."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        for start in range(0, len(self), batch_size):
            yield self.batch(split, slice(start, min(start + batch_size, len(self))))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no arrays)."""
        return {"gridsize": self.gridsize, "C": self.C, "n_groups": len(self), "seed": self.seed,
                "k_neighbors": self.k_neighbors, "n_groups_requested": self.n_groups_requested,
                "anchor": list(self.anchor) if self.anchor is not None else None}


def group_split(split: Split, gridsize: int, *, k_neighbors: int = 7, seed: int = 0,
                n_groups: int | None = None) -> Grouping:
    """Group a split's patterns the way PtychoPINN does.

    gridsize 1: every pattern is its own group (G = M), global offset = its position, relative
    offset 0. gridsize gs >= 2: every pattern is a seed (G = M groups, as PtychoPINN makes about
    one group per scan point); each group is C = gs**2 patterns drawn at random (seeded, without
    replacement) from the ``k_neighbors`` nearest neighbours of the seed, the seed included
    (scipy cKDTree). Members are kept in neighbour-distance order.

    Parameters
    ----------
    split : Split
    gridsize : int
        1, 2, ... (C = gridsize**2 patterns per group).
    k_neighbors : int
        K nearest neighbours to draw from (PtychoPINN uses 7 for gs2); at least C.
    seed : int
        Seeds both the neighbour draw and the subset anchor.
    n_groups : int, optional
        Keep only this many groups: the ``n_groups`` groups whose centres are nearest a seeded
        anchor (the centre of a randomly drawn group), i.e. a contiguous region that preserves
        geometry, never a sparse random pick. None or >= G keeps all groups.

    Returns
    -------
    Grouping
        Offsets in object pixels, [x, y] order: global (G, 1, 2, 1) = group mean position,
        relative (G, 1, 2, C) = -(position - mean).
    """
    if isinstance(gridsize, bool) or not isinstance(gridsize, (int, np.integer)) or gridsize < 1:
        raise InputError(str(split.path), "gridsize an integer >= 1", repr(gridsize))
    gridsize = int(gridsize)
    C = gridsize * gridsize
    if n_groups is not None and (isinstance(n_groups, bool) or int(n_groups) < 1):
        raise InputError(str(split.path), "n_groups >= 1", repr(n_groups))
    positions = split.positions  # (M, 2) [x, y]
    M = positions.shape[0]
    if C == 1:
        indices = np.arange(M, dtype=np.int64)[:, None]
    else:
        if M < C:
            raise InputError(str(split.path), f"at least {C} patterns for gridsize {gridsize}", f"{M} patterns")
        K = min(max(int(k_neighbors), C), M)
        from scipy.spatial import cKDTree  # noqa: PLC0415 - slow to import; only grouping needs it

        _, neighbours = cKDTree(positions).query(positions, k=K)  # (M, K), nearest first (self)
        neighbours = np.asarray(neighbours, dtype=np.int64).reshape(M, K)
        rng = np.random.default_rng(seed)
        # C distinct ranks out of K per seed: the first C of a random permutation, kept sorted
        ranks = np.sort(np.argsort(rng.random((M, K)), axis=1)[:, :C], axis=1)
        indices = np.take_along_axis(neighbours, ranks, axis=1)
        k_neighbors = K

    member_positions = positions[indices]  # (G, C, 2)
    mean = member_positions.mean(axis=1)  # (G, 2)
    global_offsets = mean[:, None, :, None].copy()  # (G, 1, 2, 1)
    relative = -(member_positions - mean[:, None, :])  # (G, C, 2)
    relative_offsets = np.transpose(relative, (0, 2, 1))[:, None, :, :].copy()  # (G, 1, 2, C)

    grouping = Grouping(gridsize, C, indices, global_offsets, relative_offsets, seed=seed,
                        k_neighbors=int(k_neighbors), n_groups_requested=n_groups)
    G = len(grouping)
    if n_groups is None or int(n_groups) >= G:
        return grouping
    keep, anchor = _contiguous_subset(mean, int(n_groups), seed)
    sub = grouping.select(keep)
    sub.anchor = anchor
    return sub


def _contiguous_subset(centres: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, tuple[float, float]]:
    """The k groups whose centres are nearest a seeded anchor, in original order."""
    from scipy.spatial import cKDTree  # noqa: PLC0415 - slow to import; only grouping needs it

    # A separate stream from the neighbour draw, so n_groups does not change which groups exist.
    rng = np.random.default_rng([seed, 1])
    anchor = centres[int(rng.integers(centres.shape[0]))]
    _, nearest = cKDTree(centres).query(anchor, k=k)
    keep = np.sort(np.asarray(nearest, dtype=np.int64).reshape(-1))
    return keep, (float(anchor[0]), float(anchor[1]))
