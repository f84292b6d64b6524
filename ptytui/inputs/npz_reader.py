"""Reading an NPZ archive's members without loading them: .npy headers first, arrays on demand.

Uncompressed (ZIP_STORED) members are memory-mapped straight from the file; compressed or pickled
members are loaded one array at a time. A damaged, truncated or encrypted archive, or one that is
not a zip at all, is a one-line ``InputError`` naming what the file is instead.
"""

from __future__ import annotations

import mmap
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptytui.errors import InputError, one_line

__all__ = ["NpzMember", "NpzReader", "release_pages"]

_LOCAL_HEADER_SIGNATURE = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"


def release_pages(view: np.ndarray) -> None:
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


@dataclass(frozen=True)
class NpzMember:
    """One ``.npy`` member of the archive, as its header describes it (no array bytes read)."""

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


class NpzReader:
    """Reads NPZ members without loading them: headers first, arrays on demand.

    Uncompressed (ZIP_STORED) members are memory-mapped: the local zip header gives where the
    member's bytes start, the .npy header gives dtype/shape/order, and the array bytes follow.
    Compressed members cannot be mapped and are loaded one array at a time.
    """

    def __init__(self, path: Path, shown: str):
        self.path = path
        self.shown = shown
        self.file_size = path.stat().st_size
        self.members: dict[str, NpzMember] = {}
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

    def _read_member_header(self, zf: zipfile.ZipFile, fh, info: zipfile.ZipInfo, key: str) -> NpzMember:
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
            return NpzMember(key, info.filename, shape, dtype, fortran_order, False, data_offset)
        try:
            with zf.open(info) as stream:
                shape, fortran_order, dtype = self._parse_npy_header(stream, info.filename)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
            raise InputError(self.shown, f"a readable member '{info.filename}'",
                             one_line(exc), hint="the file is corrupt") from None
        return NpzMember(key, info.filename, shape, dtype, fortran_order, True, None)

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

    def numeric(self, key: str, trust: bool) -> np.ndarray:
        """The member as an array; a trusted pickled object array is converted to numbers."""
        m = self.members[key]
        if not m.is_object:
            if m.dtype.names is not None:
                raise InputError(self.shown, f"key '{key}' as a plain numeric array", f"a structured dtype {m.dtype}")
            return self.array(key)
        arr = self.array(key, allow_pickle=trust)  # raises without trust
        try:
            return np.array(arr.tolist())
        except (ValueError, TypeError) as exc:
            raise InputError(self.shown, f"key '{key}' convertible to a numeric array",
                             f"an object array that is not ({one_line(exc)})") from None


def _describe_non_zip(path: Path, exc: BaseException) -> str:
    """What a file that zipfile refused is instead (empty, a lone .npy, truncated zip, HDF5, ...)."""
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
