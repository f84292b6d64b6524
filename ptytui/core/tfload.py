"""Lazy, quiet TensorFlow import: the one place that imports TF for the engine.

TensorFlow costs seconds and hundreds of MB to import, so nothing imports it at module level;
engine functions call ``tf()`` / ``keras()`` when they need it.

Quiet by default, loud on request (``ptytui --verbose`` calls ``set_verbose(True)``):

- ``TF_CPP_MIN_LOG_LEVEL=3`` (unless the user set it) silences TensorFlow's C++ log once it is
  running, e.g. ``E0000 ... oneDNN supports DT_INT32 only on platforms with AVX-512`` printed
  in the middle of a training run. The errors it hides also reach Python as exceptions.
- The banners written before absl's logging is initialized (``WARNING: All log messages before
  absl::InitializeLog() ...`` and ``I0000 ... oneDNN custom operations are on``, once per shared
  library) ignore that level: they are written straight to file descriptor 2 during the import.
  While ``import tensorflow`` runs, fd 2 is a pipe read by a thread that drops those lines and
  passes everything else on at once (another thread, e.g. the workbench's UI or a progress bar,
  may be writing to stderr meanwhile). Dropped lines are kept in ``import_log()``.

oneDNN itself is left on: TF_ENABLE_ONEDNN_OPTS=0 would cost ~40% of CPU inference time.
"""

from __future__ import annotations

import os
import re
import sys
import threading

from ptytui.errors import MissingDependency

_lock = threading.Lock()
_tf = None
_verbose = False
_import_log: list[str] = []

INSTALL_HINT = "install it with: pip install 'ptytui[cpu]' (or 'ptytui[gpu]' on a CUDA node)"

# Lines TensorFlow's C++ runtime writes to fd 2 while it is imported: absl's notice about its
# uninitialized log, and records like "I0000 00:00:1712345678.123456  12345 port.cc:153] ..."
# (before that initialization the date reads 0000 and the time is seconds since the epoch).
_BANNER = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR\r?\n"
    rb"|[IWE]\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.\-/]+:\d+\] [^\n]*\n"
)


def set_verbose(verbose: bool) -> None:
    """Let TensorFlow's C++ log and import banners through (``ptytui --verbose``); call before
    the first ``tf()``."""
    global _verbose
    _verbose = bool(verbose)


def import_log() -> list[str]:
    """The banner lines held back while TensorFlow was imported (empty when verbose)."""
    return list(_import_log)


def tf():
    """Import TensorFlow once, quietly, with GPU memory growth on; return the module."""
    global _tf
    if _tf is not None:
        return _tf
    with _lock:
        if _tf is not None:
            return _tf
        if not _verbose:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        try:
            if _verbose:
                import tensorflow as tensorflow_module  # noqa: PLC0415
            else:
                with _banners_held_back():
                    import tensorflow as tensorflow_module  # noqa: PLC0415
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise MissingDependency(f"TensorFlow is not installed ({exc}); {INSTALL_HINT}") from None
        try:
            tensorflow_module.get_logger().setLevel("ERROR")
            for gpu in tensorflow_module.config.list_physical_devices("GPU"):
                try:
                    tensorflow_module.config.experimental.set_memory_growth(gpu, True)
                except (RuntimeError, ValueError):
                    pass  # already initialized: growth cannot change any more
        except Exception:  # pragma: no cover - defensive: logging/device setup must never block
            pass
        _tf = tensorflow_module
        return _tf


class _banners_held_back:
    """Route fd 2 through a filtering pipe for the duration of the block (see the module doc).

    Falls back to doing nothing where fd 2 cannot be duplicated (no stderr at all).
    """

    def __enter__(self):
        self._saved = None
        try:
            sys.stderr.flush()
            self._saved = os.dup(2)
            read_end, write_end = os.pipe()
        except (OSError, ValueError, AttributeError):
            if self._saved is not None:
                os.close(self._saved)
                self._saved = None
            return self
        self._reader = threading.Thread(target=self._forward, args=(read_end,), daemon=True,
                                        name="ptytui-tf-import-stderr")
        self._reader.start()
        os.dup2(write_end, 2)
        os.close(write_end)
        return self

    def _forward(self, read_end: int) -> None:
        pending = b""
        try:
            while True:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                pending += chunk
                # Hold back only an unfinished line that may still become a banner.
                cut = pending.rfind(b"\n") + 1
                if not _may_become_banner(pending[cut:]):
                    cut = len(pending)
                ready, pending = pending[:cut], pending[cut:]
                self._pass_on(ready)
            self._pass_on(pending)
        finally:
            os.close(read_end)

    def _pass_on(self, data: bytes) -> None:
        if not data:
            return
        for match in _BANNER.finditer(data):
            _import_log.append(match.group(0).decode("utf-8", "replace").rstrip("\n"))
        kept = _BANNER.sub(b"", data)
        while kept:
            written = os.write(self._saved, kept)
            kept = kept[written:]

    def __exit__(self, *exc):
        if self._saved is None:
            return False
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self._saved, 2)  # closes the pipe's last write end: the reader sees EOF
        self._reader.join(timeout=5)
        if not self._reader.is_alive():  # else a child process holds the pipe: leave the fd to it
            os.close(self._saved)
        return False


_ABSL_NOTICE = b"WARNING: All log messages before absl::InitializeLog()"


def _may_become_banner(tail: bytes) -> bool:
    """Whether an unfinished line could still turn out to be a banner (then it waits for more)."""
    if not tail:
        return False
    if _ABSL_NOTICE.startswith(tail) or tail.startswith(_ABSL_NOTICE):
        return True
    return bool(re.fullmatch(rb"[IWE]\d{0,4}( [\d:]*)?", tail) or re.match(rb"[IWE]\d{4} \d\d:", tail))


def keras():
    """Keras 3, imported through TensorFlow's lazy loader."""
    tf()
    import keras as keras_module  # noqa: PLC0415

    return keras_module


def is_loaded() -> bool:
    """True once TensorFlow has been imported in this process."""
    return _tf is not None
