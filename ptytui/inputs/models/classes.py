"""Custom classes a model config names: can Keras resolve them now, and from where.

Only ptytui's and PtychoPINN's (``ptycho``) modules are ever imported to find a class: a config
must not make ptytui import arbitrary installed modules (that runs their code).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

from ptytui.core import tfload
from ptytui.inputs import ptychopinn
from ptytui.inputs.models.card import PTYTUI_LAYERS_MODULE, CustomClass
from ptytui.inputs.models.known_classes import PTYTUI_PACKAGE, PTYTUI_REGISTERED_CLASSES


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
    if top == PTYTUI_PACKAGE:
        return ptytui_class_known(custom)
    if top == "ptycho":
        if "ptycho" in sys.modules:  # imported already: ask the modules themselves
            return ptychopinn.find_class(custom.class_name, module) is not None
        return ptycho_source_defines(custom.class_name, module)
    if module and module in sys.modules and hasattr(sys.modules[module], custom.class_name):
        return True
    return registered(custom)


def ptytui_class_known(custom: CustomClass) -> bool:
    """Whether this ptytui registers the class: Keras resolves ``ptytui>Name`` by its registered
    name once ptytui.networks.layers is imported, so the name decides (nothing is imported: the
    card never loads TensorFlow)."""
    name = (custom.registered_name or "").split(">")[-1] or custom.class_name
    return name in PTYTUI_REGISTERED_CLASSES


def ptycho_source_defines(class_name: str, module: str | None) -> bool:
    """Whether the installed ``ptycho``'s source defines (or imports) ``class_name`` in
    ``module``, else in PtychoPINN's layer modules: read, not imported, because importing
    ``ptycho`` imports TensorFlow and runs its code, and a card runs nothing. Loading the model
    imports the modules for real and names any class that then fails (``_check_importable``)."""
    if module and module.split(".")[0] != "ptycho":
        return False
    for name in ([module] if module else []) + [m for m in ptychopinn.PTYCHO_LAYER_MODULES if m != module]:
        if class_name in _top_level_names(name):
            return True
    return False


@lru_cache(maxsize=None)
def _top_level_names(module: str) -> frozenset[str]:
    """Names a ``ptycho`` module defines or imports at its top level, from its source file
    (found beside the package's ``__init__`` without importing the package)."""
    try:
        spec = importlib.util.find_spec("ptycho")
    except (ImportError, ValueError):
        return frozenset()
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    parts = module.split(".")[1:]
    for root in spec.submodule_search_locations:
        base = Path(root).joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                try:
                    tree = ast.parse(candidate.read_text(encoding="utf-8", errors="replace"))
                except (SyntaxError, ValueError):
                    return frozenset()
                return frozenset(_bound_names(tree))
    return frozenset()


def _bound_names(tree: ast.Module):
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            yield node.name
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                yield alias.asname or alias.name.split(".")[0]
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    yield target.id


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
