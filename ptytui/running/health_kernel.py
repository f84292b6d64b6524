"""ptytui's one-pass layer-health kernel: built on first use against the installed TensorFlow.

Stock TensorFlow reduces a layer output for ``running.layer_health`` in about six passes over
the tensor (compare, cast, the count reduction, the sum, and on moment batches sum of squares,
min and max); on a CPU these passes, not the arithmetic, are the cost, since a model's
activations far exceed the caches (MobileNetV2 at 64x64, batch 32: 228 MB per batch). The C++
kernel in ``kernels/layer_health_op.cc`` computes the same numbers in one pass per sample, NaN
and Inf counts included, so a batch with non-finite values needs no second, exact run.
The counting runs 16 lanes at a time on the float bits (GCC vector extensions, whatever
``-march=native`` offers), and the op also derives the records of the TF ``Relu``/``Relu6`` ops
applied to its input, and of zero paddings of either, from the same pass
(``layer_health.derived_sources``): those outputs are exact functions of a finite input, so
MobileNetV2's 35 ReLU6 and 4 padding outputs and DenseNet121's 121 ReLU outputs are never read.
Where the input to a ReLU has NaN, Inf or a positive subnormal (TensorFlow's CPU threads flush
those) its derived records are discarded and the batch is read exactly.

Used on the CPU only (no GPU is visible; on a GPU the stock ops are fast and the kernel would pull
every activation to the host). Its numbers equal the stock path's: counts and histograms
exactly, moments to float32 rounding (the kernel sums in float64).

The build: ``g++`` (``$CXX``) with TensorFlow's own compile and link flags and
``-O3 -march=native``, once per (source, TensorFlow version, compiler, CPU) into
``$PTYTUI_KERNEL_DIR`` (default ``~/.cache/ptytui/kernels``): about 8 s on 2 cores. A failed build
is remembered there (and retried when any of those change); the stock path is then used and
``status()`` says why. ``PTYTUI_HEALTH_KERNEL=stock`` never builds or uses it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ptytui.core.tfload import tf as _tf

SOURCE = Path(__file__).with_name("kernels") / "layer_health_op.cc"
MODE_ENV = "PTYTUI_HEALTH_KERNEL"  # "stock": never; anything else: build and use where possible
DIR_ENV = "PTYTUI_KERNEL_DIR"
BUILD_TIMEOUT_S = 300
OPTIMIZE = ["-O3", "-march=native", "-fopenmp-simd", "-shared", "-fPIC", "-w"]

_lock = threading.Lock()
_state: dict[str, Any] = {}  # "module" (or None) and "status", once resolved in this process


def kernel_dir() -> Path:
    env = os.environ.get(DIR_ENV)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "ptytui" / "kernels"


def _cpu_flags() -> str:
    """The CPU's feature flags (the binary is built for this CPU: ``-march=native``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler() -> tuple[str | None, str]:
    """The C++ compiler's path and its version line ("" when there is none)."""
    path = shutil.which(os.environ.get("CXX", "g++"))
    if path is None:
        return None, ""
    try:
        run = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=False)
        return path, (run.stdout.splitlines() or [""])[0]
    except (OSError, subprocess.SubprocessError):
        return None, ""


def _flags(tf) -> list[str]:
    return list(tf.sysconfig.get_compile_flags()) + list(tf.sysconfig.get_link_flags())


def _key(tf, compiler_version: str) -> str:
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), tf.__version__.encode(), " ".join(_flags(tf) + OPTIMIZE).encode(),
                 compiler_version.encode(), _cpu_flags().encode()):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def build(tf) -> tuple[Path | None, str]:
    """The kernel's shared library for this TensorFlow and CPU, built if needed: (path, status)."""
    if not SOURCE.is_file():
        return None, f"stock (the kernel's source is not installed: {SOURCE})"
    compiler, version = _compiler()
    if compiler is None:
        return None, f"stock (no C++ compiler: {os.environ.get('CXX', 'g++')} not found)"
    folder = kernel_dir()
    key = _key(tf, version)
    library, failed = folder / f"layer_health_{key}.so", folder / f"layer_health_{key}.failed"
    if library.exists():
        return library, "native"
    if failed.exists():
        return None, (f"stock (the kernel's build failed: {failed.read_text(encoding='utf-8').strip()}; "
                      f"delete {failed} to try again)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=folder, prefix=f".layer_health_{key}.", suffix=".so")
        os.close(handle)
    except OSError as exc:
        return None, f"stock (cannot write {folder}: {exc.strerror or exc})"
    command = [compiler, *OPTIMIZE, str(SOURCE), "-o", partial, *_flags(tf)]
    sys.stderr.write("ptytui: building the layer-health kernel for this CPU and TensorFlow "
                     f"(once, about 10 s) into {folder}\n")
    sys.stderr.flush()
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
        if run.returncode != 0:
            errors = [ln for ln in run.stderr.splitlines() if "error" in ln] or run.stderr.splitlines()[-1:]
            reason = (errors[0] if errors else f"exit {run.returncode}").strip()[:300]
            failed.write_text(reason + "\n", encoding="utf-8")
            return None, f"stock (the kernel's build failed: {reason}; delete {failed} to try again)"
        os.chmod(partial, 0o755)  # mkstemp made it private; a shared kernel folder can load it
        os.replace(partial, library)  # atomic: a concurrent build of the same key wins either way
        return library, "native"
    except subprocess.TimeoutExpired:
        return None, f"stock (the kernel's build took over {BUILD_TIMEOUT_S} s)"
    except OSError as exc:  # the compiler would not start, or the folder is not writable
        return None, f"stock (the kernel could not be built: {exc.strerror or exc})"
    finally:
        if os.path.exists(partial):
            with suppress(OSError):
                os.unlink(partial)


def kernel():
    """The loaded op module (``.ptytui_layer_health``), or None where the stock path is used."""
    with _lock:
        if "status" not in _state:
            _state["module"], _state["status"] = _resolve()
        return _state["module"]


def status() -> str:
    """"native", or "stock (why)": how this process computes layer health on the CPU."""
    kernel()
    return _state["status"]


def _resolve() -> tuple[Any, str]:
    if os.environ.get(MODE_ENV, "").strip().lower() == "stock":
        return None, f"stock ({MODE_ENV}=stock)"
    tf = _tf()
    if tf.config.list_logical_devices("GPU"):
        return None, "stock (a GPU is visible: the stock reductions run there)"
    library, state = build(tf)
    if library is None:
        return None, state
    try:
        return tf.load_op_library(str(library)), "native"
    except Exception as exc:  # noqa: BLE001 - a library TF refuses: say why, use the stock path
        return None, f"stock (TensorFlow refused the kernel: {str(exc).splitlines()[0][:200]})"


@contextmanager
def stock_only():
    """Within this block, steps built use the stock ops (the bench's and the tests' side-by-side
    comparison; a step keeps the path it was built with)."""
    kernel()
    with _lock:
        saved = dict(_state)
        _state.update(module=None, status="stock (for this comparison)")
    try:
        yield
    finally:
        with _lock:
            _state.clear()
            _state.update(saved)
