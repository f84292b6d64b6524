"""Custom classes a model config names: can Keras resolve them now, and from where.

Only ptytui's and PtychoPINN's (``ptycho``) modules are ever imported to find a class: a config
must not make ptytui import arbitrary installed modules (that runs their code).
"""

from __future__ import annotations

import importlib
import sys

from ptytui.core import tfload
from ptytui.inputs import ptychopinn
from ptytui.inputs.models.card import PTYTUI_LAYERS_MODULE, CustomClass


def import_ptytui_layers() -> bool:
    """Register ptytui's own layers (``ptytui>...``) if that module exists."""
    try:
        importlib.import_module(PTYTUI_LAYERS_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != PTYTUI_LAYERS_MODULE:
            raise
        return False
    return True


def top_package(custom: CustomClass) -> str:
    """The package a class comes from: its module's, else its registration prefix's."""
    return (custom.module or (custom.registered_name or "").split(">")[0] or "").split(".")[0]


def class_importable(custom: CustomClass) -> bool:
    """Whether Keras can resolve the class now (for ``ptycho`` classes: whether ptytui can pass
    it to Keras, found in PtychoPINN's modules whatever its registration prefix)."""
    module = custom.module
    top = top_package(custom)
    if top == "ptytui":
        import_ptytui_layers()
        if module and module in sys.modules and hasattr(sys.modules[module], custom.class_name):
            return True
        return registered(custom)
    if top == "ptycho":
        return ptychopinn.find_class(custom.class_name, module) is not None
    if module and module in sys.modules and hasattr(sys.modules[module], custom.class_name):
        return True
    return registered(custom)


def registered(custom: CustomClass) -> bool:
    """Whether Keras' registry knows the class by its registered name or class name."""
    if not tfload.is_loaded() and "keras" not in sys.modules:
        return False  # nothing can be registered with Keras before Keras is imported
    try:
        keras = tfload.keras()
        for name in {custom.registered_name, custom.class_name} - {None}:
            if keras.saving.get_registered_object(name) is not None:
                return True
    except Exception:  # noqa: BLE001
        return False
    return False


def ptycho_custom_objects(classes: list[CustomClass]) -> tuple[dict, list[CustomClass]]:
    """Keras ``custom_objects`` for the ``ptycho`` classes among ``classes`` (keyed by class
    name and registered name), and the ``ptycho`` classes that could not be found."""
    wanted = [c for c in classes if top_package(c) == "ptycho"]
    return ptychopinn.resolve_classes(wanted) if wanted else ({}, [])


def missing_hint(missing: list[CustomClass]) -> str:
    """What to do about classes that cannot be resolved, by where they come from."""
    tops = {top_package(c) for c in missing}
    hints = []
    if "ptycho" in tops:
        failures = [f"{name}: {ptychopinn.IMPORT_ERRORS[name]}" for name in sorted(ptychopinn.IMPORT_ERRORS)]
        if ptychopinn.installed() and failures:
            hints.append("PtychoPINN's `ptycho` is installed but importing it failed (" + "; ".join(failures) + ")")
        else:
            hints.append("install PtychoPINN's `ptycho` package")
    if "ptytui" in tops:
        hints.append("this ptytui does not define them: upgrade ptytui")
    if tops - {"ptycho", "ptytui"}:
        hints.append("import or register the module that defines them")
    return "; ".join(hints)
