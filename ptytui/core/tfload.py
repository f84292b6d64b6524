"""Lazy, quiet TensorFlow import: the one place that imports TF for the engine.

TensorFlow costs seconds and hundreds of MB to import, so nothing imports it at module level;
engine functions call ``tf()`` / ``keras()`` when they need it. Startup noise is sent away
without touching oneDNN (TF_ENABLE_ONEDNN_OPTS=0 would cost ~40% on CPU).
"""

from __future__ import annotations

import os
import threading

from ptytui.errors import MissingDependency

_lock = threading.Lock()
_tf = None

INSTALL_HINT = "install it with: pip install 'ptytui[cpu]' (or 'ptytui[gpu]' on a CUDA node)"


def tf():
    """Import TensorFlow once, quietly, with GPU memory growth on; return the module."""
    global _tf
    if _tf is not None:
        return _tf
    with _lock:
        if _tf is not None:
            return _tf
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        try:
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


def keras():
    """Keras 3, imported through TensorFlow's lazy loader."""
    tf()
    import keras as keras_module  # noqa: PLC0415

    return keras_module


def is_loaded() -> bool:
    """True once TensorFlow has been imported in this process."""
    return _tf is not None
