"""PtychoPINN bundles loaded the way PtychoPINN's own loader does, one bundle at a time.

ptytui never carries PtychoPINN's code: it imports the user's installed ``ptycho`` package and
reproduces what ``ModelManager.load_model`` relies on, without its process-wide side effects.

What PtychoPINN's layers need, and how this module gives it to them
-------------------------------------------------------------------
- Its layer modules print to stdout while importing (``No GPU found ...``) and while a
  reassembly layer is called or traced (``DEBUG _flat_to_channel ...``), and its disk memoizer
  creates ``./memoized_data/`` when ``ptycho.diffsim`` is imported. ``quiet()`` sends stdout to
  stderr (file descriptor 1 as well as ``sys.stdout``) for the import, the load and every call
  of a bundle's layers; the import runs with PtychoPINN's own switch
  ``PTYCHO_DISABLE_MEMOIZE=1``, so nothing is written to the user's current folder.
- ``IntensityScaler`` reads ``ptycho.params.cfg['intensity_scale']`` when it is built and keeps
  its divisor in a process-wide ``tf.Variable`` cached in ``ptycho.model._lazy_cache`` (the
  scale is not a saved weight). ``BundleConfiguration.active()`` gives ``cfg`` this bundle's
  ``params.dill`` (in place: other modules hold the same dict) and this bundle's own cache
  entries, under one process-wide lock, and puts back exactly what was there on exit. Two
  bundles of one workspace (a gridsize-1 and a gridsize-2 bundle, say) never see each other's
  configuration or scale.
- ``bind_configuration`` makes every PtychoPINN layer of a loaded model enter that scope when it
  is called, so inference, traces and interventions (eager or inside ``tf.function`` traces) run
  under the bundle's configuration with stdout kept clean, whoever calls the model.

Without trust nothing is unpickled: Keras is given every class the model's ``config.json`` names
that is importable from ``ptycho`` (``CenterMaskLayer`` is registered without a package prefix
and is otherwise found only through the pickled ``custom_objects.dill``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

# PtychoPINN's modules that define the layers a bundle's config.json names.
PTYCHO_LAYER_MODULES = ("ptycho.model", "ptycho.custom_layers", "ptycho.tf_helper")
# ptycho.model's per-process caches whose tf.Variables layers bind when they are built
# (IntensityScaler -> log_scale; ProbeIllumination -> initial_probe_guess, probe_illumination).
LAZY_CACHE_KEYS = ("log_scale", "initial_probe_guess", "probe_illumination")
MEMOIZE_SWITCH = "PTYCHO_DISABLE_MEMOIZE"  # PtychoPINN's own switch for its disk memoizer
MEMOIZE_FOLDER = "memoized_data"

# The training parameters a card shows from params.dill (PtychoPINN's names), in this order.
CARD_PARAMETERS = ("N", "gridsize", "nphotons", "intensity_scale", "intensity_scale.trainable",
                   "offset", "max_position_jitter", "batch_size", "nepochs", "n_groups",
                   "n_filters_scale", "object.big", "probe.big", "probe.mask", "probe.trainable",
                   "pad_object", "amp_activation", "model_type", "gaussian_smoothing_sigma",
                   "use_xla_translate", "positions.provided")

# One scope at a time in the process: ptycho.params.cfg and ptycho.model._lazy_cache are global.
_LOCK = threading.RLock()
_quiet_depth = 0
# Why importing a ptycho module failed (module -> one line), for the missing-class hint.
IMPORT_ERRORS: dict[str, str] = {}


# ---- stdout and the current folder ----------------------------------------------------------


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Send whatever is written to stdout (Python ``print`` and writes to file descriptor 1) to
    stderr for the block, so ptytui's stdout (``--json``) stays one document. Re-entrant; the
    process-wide lock serializes it with every other PtychoPINN scope."""
    global _quiet_depth
    with _LOCK:
        if _quiet_depth:
            _quiet_depth += 1
            try:
                yield
            finally:
                _quiet_depth -= 1
            return
        saved_fd = _redirect_fd1()
        _quiet_depth = 1
        try:
            with contextlib.redirect_stdout(sys.stderr):
                yield
        finally:
            _quiet_depth = 0
            _restore_fd1(saved_fd)


def _redirect_fd1() -> int | None:
    """dup2(2, 1), returning the saved descriptor (None where the descriptors cannot be used,
    e.g. under a test runner that replaced them)."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:
        return None
    try:
        os.dup2(2, 1)
    except OSError:
        os.close(saved)
        return None
    return saved


def _restore_fd1(saved: int | None) -> None:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    if saved is not None:
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.contextmanager
def _memoizer_off() -> Iterator[None]:
    """PtychoPINN's switch set for the block; a ``memoized_data`` folder that still appears
    (an older ptycho without the switch) is removed when it is new and empty."""
    old = os.environ.get(MEMOIZE_SWITCH)
    folder = Path.cwd() / MEMOIZE_FOLDER
    existed = folder.exists()
    os.environ[MEMOIZE_SWITCH] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(MEMOIZE_SWITCH, None)
        else:
            os.environ[MEMOIZE_SWITCH] = old
        if not existed and folder.is_dir():
            with contextlib.suppress(OSError):
                folder.rmdir()


# ---- importing ptycho ---------------------------------------------------------------------


def installed() -> bool:
    """Whether an importable ``ptycho`` package is on the path (nothing is imported)."""
    try:
        return importlib.util.find_spec("ptycho") is not None
    except (ImportError, ValueError):
        return False


def import_module(name: str):
    """Import one ``ptycho`` module quietly (stdout to stderr, memoizer off); None on failure,
    with the reason kept in ``IMPORT_ERRORS``."""
    if name in sys.modules:
        return sys.modules[name]
    if not name.split(".")[0] == "ptycho" or not installed():
        return None
    from ptytui.core import tfload  # noqa: PLC0415 - TensorFlow first, with ptytui's log settings

    tfload.tf()
    try:
        with quiet(), _memoizer_off():
            return importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - its import-time code may fail in any way
        text = " ".join(str(exc).split())
        IMPORT_ERRORS[name] = f"{type(exc).__name__}: {text[:160]}"
        return None


def find_class(class_name: str, module: str | None) -> type | None:
    """The class from its recorded ``ptycho`` module, else from PtychoPINN's layer modules by
    name. Never imports a module outside ``ptycho`` (that would run arbitrary installed code)."""
    tried = [module] if module and module.split(".")[0] == "ptycho" else []
    if module and not tried:
        return None
    tried += [m for m in PTYCHO_LAYER_MODULES if m not in tried]
    for name in tried:
        found = getattr(import_module(name), class_name, None)
        if isinstance(found, type):
            return found
    return None


def resolve_classes(classes: Iterable[Any]) -> tuple[dict[str, type], list[Any]]:
    """Keras ``custom_objects`` for every class (objects with ``class_name``, ``module``,
    ``registered_name``) importable from ``ptycho``, keyed by class name and registered name,
    and the classes that were not found."""
    objects: dict[str, type] = {}
    missing = []
    for custom in classes:
        found = find_class(custom.class_name, custom.module)
        if found is None:
            missing.append(custom)
            continue
        objects[custom.class_name] = found
        if custom.registered_name:
            objects[custom.registered_name] = found
    return objects, missing


# ---- the configuration, per bundle --------------------------------------------------------


class BundleConfiguration:
    """One bundle's PtychoPINN configuration (its ``params.dill``, or PtychoPINN's defaults
    without trust) and its own cached ``tf.Variable`` s, made current only inside ``active()``."""

    def __init__(self, params: dict | None):
        self.params = {k: v for k, v in (params or {}).items() if k != "_version"} if params else None
        self._cache: dict[str, Any] = {}  # this bundle's ptycho.model._lazy_cache entries

    @contextlib.contextmanager
    def active(self) -> Iterator[dict]:
        """``ptycho.params.cfg`` holds this bundle's configuration for the block (same dict
        object), stdout goes to stderr; both are put back exactly on exit."""
        params_module = import_module("ptycho.params")
        model_module = import_module("ptycho.model")
        with _LOCK, quiet():
            cfg = getattr(params_module, "cfg", None)
            cache = getattr(model_module, "_lazy_cache", None)
            if not isinstance(cfg, dict):
                yield {}
                return
            saved_cfg = dict(cfg)
            saved_cache = _swap_cache(cache, self._cache)
            cfg.clear()
            cfg.update(getattr(params_module, "DEFAULT_CFG", None) or saved_cfg)
            if self.params is not None:
                cfg.update(self.params)
            try:
                yield cfg
            finally:
                self._cache = _swap_cache(cache, saved_cache)
                cfg.clear()
                cfg.update(saved_cfg)


def _swap_cache(cache: dict | None, entries: dict) -> dict:
    """Put ``entries`` in ``cache`` for LAZY_CACHE_KEYS; return what was there."""
    if not isinstance(cache, dict):
        return {}
    previous = {k: cache.pop(k) for k in LAZY_CACHE_KEYS if k in cache}
    cache.update(entries)
    return previous


def bind_configuration(model, configuration: BundleConfiguration) -> int:
    """Make every PtychoPINN layer of ``model`` (nested models included) call through
    ``configuration.active()``; return how many layers were bound."""
    bound = 0
    seen: set[int] = set()

    def visit(layer) -> None:
        nonlocal bound
        if id(layer) in seen:
            return
        seen.add(id(layer))
        for inner in getattr(layer, "layers", None) or []:
            visit(inner)
        module = type(layer).__module__ or ""
        if module.split(".")[0] == "ptycho" or type(layer).__name__ == "Lambda":
            _bind_call(layer, configuration)
            bound += 1

    visit(model)
    return bound


def _bind_call(layer, configuration: BundleConfiguration) -> None:
    original = layer.call

    @functools.wraps(original)
    def call(*args, **kwargs):
        with configuration.active():
            return original(*args, **kwargs)

    # Keras tracks attributes set on layers; a plain function needs no tracking.
    object.__setattr__(layer, "call", call)


# ---- loading ------------------------------------------------------------------------------


def missing_configuration_key(exc: BaseException, configuration: dict) -> str | None:
    """The key a PtychoPINN layer looked up in its configuration and did not find: a KeyError in
    the exception chain (``__cause__`` / ``__context__``) whose key is not in ``configuration``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, KeyError) and current.args and isinstance(current.args[0], str) \
                and current.args[0] not in configuration:
            return current.args[0]
        stack += [current.__cause__, current.__context__]
    return None


def innermost_cause(exc: BaseException) -> BaseException:
    """The deepest exception of the chain (what actually went wrong, under Keras' wrappers)."""
    seen = {id(exc)}
    while True:
        nxt = exc.__cause__ or exc.__context__
        if nxt is None or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt


def load_keras_archive(file: Path, *, custom_objects: dict, configuration: BundleConfiguration,
                       trust: bool):
    """Deserialize a bundle's ``model.keras`` under its configuration, stdout kept clean, and
    bind the loaded layers to it; Keras safe mode stays on without trust. Raises what Keras raises."""
    from ptytui.core import tfload  # noqa: PLC0415 - TensorFlow is imported lazily

    keras = tfload.keras()
    with configuration.active(), warnings.catch_warnings():
        # Keras warns that CenterMaskLayer has no build(): harmless, and not the user's to fix
        warnings.simplefilter("ignore")
        model = keras.saving.load_model(str(file), compile=False, safe_mode=not trust,
                                        custom_objects=custom_objects)
    bind_configuration(model, configuration)
    return model


def card_parameters(params: dict) -> dict[str, Any]:
    """The training parameters that matter for running a bundle, from its ``params.dill``:
    the CARD_PARAMETERS present, plus the canvas sizes PtychoPINN derives from them
    (``bigN = N + (gridsize - 1) * offset``, ``padded_size = bigN + max_position_jitter``, pixels)."""
    out: dict[str, Any] = {}
    for key in CARD_PARAMETERS:
        if key in params:
            out[key] = _plain(params[key])
    n, gs, off, jitter = (params.get(k) for k in ("N", "gridsize", "offset", "max_position_jitter"))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (n, gs, off)):
        out["bigN"] = int(n + (gs - 1) * off)
        if isinstance(jitter, (int, float)) and not isinstance(jitter, bool):
            out["padded_size"] = int(out["bigN"] + jitter)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if hasattr(value, "item") and getattr(value, "size", 2) == 1:
        with contextlib.suppress(Exception):
            return value.item()
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__} of shape {tuple(shape)}" if shape is not None else repr(value)[:80]
