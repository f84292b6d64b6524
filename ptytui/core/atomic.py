"""Atomic file writes: a reader (or a crash) sees the old file or the whole new one, never a part.

Every file ptytui writes for the user (reports, CSVs, JSON, NPZ dumps, figures, the workspace
toml, retrained models) goes through here: a temporary file in the same folder, fsync, os.replace.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Iterator

__all__ = ["atomic_open", "atomic_path", "atomic_write_bytes", "atomic_write_text", "fsync_directory"]


def fsync_directory(folder: str | Path) -> None:
    """Flush a folder's entry table so a rename inside it survives a power cut (POSIX; a no-op
    where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _process_umask() -> int:
    """The process umask, read without changing it where Linux reports it (``os.umask`` alone
    sets it, and another thread creating a file in between would get the wrong mode)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _mode_for(target: Path) -> int:
    """Permissions for the file that replaces ``target``: those it has now, else what a plain
    ``open`` would give (0o666 less the umask). ``mkstemp`` makes 0o600 files, which would hide a
    report from colleagues on a shared node and narrow a user's own ptytui.toml on rewrite."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~_process_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path, *, suffix: str | None = None) -> Iterator[Path]:
    """A temporary path in ``path``'s folder; on success it is fsynced and renamed onto ``path``.

    For writers that insist on a file name (Keras ``model.save`` wants a name ending in
    ``.keras``): ``suffix`` (default ``.tmp``) ends the temporary name. On an
    exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp",
                                     dir=target.parent)
    os.close(fd)
    mode = _mode_for(target)
    temp = Path(temp_name)
    try:
        yield temp
        os.chmod(temp, mode)  # after the writer: it may have replaced the file (Keras does)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_directory(target.parent)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", *, encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success flush, fsync, rename.

    ``mode`` is "wb" or "w" (text, UTF-8 unless ``encoding``). Use it for writers that take a
    file object (``np.savez``, ``csv.writer``, ``matplotlib`` ``savefig``).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open: mode 'wb' or 'w', not {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, _mode_for(target))
        if mode == "w":
            handle = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline="")
        else:
            handle = os.fdopen(fd, "wb")
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    fsync_directory(target.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, os.replace)."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; newlines are written as given (no translation)."""
    return atomic_write_bytes(path, text.encode(encoding))
