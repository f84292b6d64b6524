"""The model card's types and the conventions every model format shares.

A ``ModelCard`` is what a saved model is, read from its files without deserializing anything;
a ``LoadedModel`` is a model ready to call with the card it was loaded under. ``input_roles``
says which input takes the diffraction and which the positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ptytui.errors import InputError, MissingDependency

KIND_KERAS = "keras"
KIND_H5 = "h5"
KIND_SAVEDMODEL = "savedmodel"
KIND_BUNDLE = "ptychopinn-bundle"

BUNDLE_ZIP = "wts.h5.zip"
BUNDLE_INFERENCE_MEMBER = "diffraction_to_obj"  # the model that maps diffraction to object patches
PTYTUI_LAYERS_MODULE = "ptytui.networks.layers"

# Class names the card reports as the reassembly (translation) layer: where positions enter.
REASSEMBLY_CLASSES = ("ReassemblePatches", "ReassemblePatchesLayer", "Translation", "TranslationLayer")
# Config keys holding the padded canvas size P and the patch size N, ours first, PtychoPINN's next.
CANVAS_KEYS = ("canvas_size", "padded_size", "canvas")
PATCH_KEYS = ("patch_size", "N")
# Classes whose deserialization runs code stored in the file (Keras safe mode refuses them).
UNSAFE_CLASSES = ("Lambda", "TFOpLambda", "SlicingOpLambda")
MODEL_CLASSES = ("Functional", "Sequential", "Model")
INTENSITY_SCALE_CLASSES = ("IntensityScale", "IntensityScaler")
# Names that mark an input as the diffraction or the positions input (checked in this order).
DIFFRACTION_INPUT_NAMES = ("input", "diffraction", "diff", "input_diffraction", "diffraction_input", "x")
POSITIONS_INPUT_NAMES = ("input_positions", "positions", "position", "offsets", "input_offsets",
                         "coords", "coordinates")

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MODEL_FOLDER_EXPECTED = ("a model file (.keras, .h5), a SavedModel folder (saved_model.pb) or a "
                         "PtychoPINN bundle (wts.h5.zip)")

# Shape rules for layers whose output spec the card must infer (terminal layers of Keras 3 configs,
# every layer of Keras 2 configs), so that custom classes need not be importable.
_SHAPE_PRESERVING = frozenset((
    "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax", "Dropout", "SpatialDropout1D",
    "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "BatchNormalization",
    "LayerNormalization", "GroupNormalization", "UnitNormalization", "Identity", "Masking",
    "ActivationLayer", "CenterMaskLayer", "IntensityScaler", "IntensityScaler_inv", "IntensityScale",
    "SquareLayer", "ProbeIllumination", "ScaledTanh",
))
_ELEMENTWISE_MERGE = frozenset(("Add", "Multiply", "Subtract", "Average", "Maximum", "Minimum"))
_COMPLEX_COMBINE = frozenset(("CombineComplex", "CombineComplexLayer"))
_CROP_CLASSES = frozenset(("Cropping2D", "TrimReconstructionLayer", "CenterCrop"))


# --------------------------------------------------------------------------------------------
# The card
# --------------------------------------------------------------------------------------------


@dataclass
class CustomClass:
    """A class a model config refers to that is not part of Keras."""

    class_name: str
    module: str | None
    registered_name: str | None
    importable: bool = False

    @property
    def qualname(self) -> str:
        """``module.Class`` (or the registered name when the config records no module)."""
        if self.module:
            return f"{self.module}.{self.class_name}"
        return self.registered_name or self.class_name

    def describe(self) -> str:
        """``Class (module)``, as the missing-classes message lists them."""
        where = self.module or (self.registered_name.split(">")[0] if self.registered_name and ">" in self.registered_name else None)
        return f"{self.class_name} ({where})" if where else self.class_name

    def to_dict(self) -> dict:
        return {"class_name": self.class_name, "module": self.module,
                "registered_name": self.registered_name, "importable": self.importable}


@dataclass
class ReassemblyLayer:
    """The layer that places patches on the padded canvas by -offset and crops back."""

    path: str  # outer/inner/layer
    type: str
    canvas: int | None  # padded canvas size P (pixels)
    patch: int | None  # patch size N (pixels)
    gridsize: int | None = None
    inferred: bool = False  # canvas/patch read off the neighbouring layers' shapes, not the config

    def to_dict(self) -> dict:
        return {"path": self.path, "type": self.type, "canvas": self.canvas, "patch": self.patch,
                "gridsize": self.gridsize, "inferred": self.inferred}


@dataclass
class ModelCard:
    """What a saved model is, read from its files without deserializing anything.

    ``to_dict()`` has every key of ``ptytui card --json`` (CLI.md) plus ``gridsize``,
    ``warnings`` and a few details. Shapes are lists with ``None`` for the batch dimension.
    """

    path: str
    kind: str
    loaded_from: str
    fallback: str | None = None
    inputs: list[dict] = field(default_factory=list)  # [{name, shape, dtype}] in model order
    outputs: list[dict] = field(default_factory=list)
    takes_positions: bool = False
    layers: dict[str, int] = field(default_factory=dict)  # class name -> count, nested models included
    custom_classes: list[CustomClass] = field(default_factory=list)
    reassembly: list[ReassemblyLayer] = field(default_factory=list)
    intensity_scale: float | None = None
    parameters: int | None = None
    gridsize: int | None = None
    warnings: list[str] = field(default_factory=list)
    unsafe_layers: list[str] = field(default_factory=list)  # paths of Lambda-like layers
    keras_version: str | None = None
    params: dict | None = None  # a bundle's params.dill scalars (only read with trust)
    # The training parameters that matter for running a bundle (N, gridsize, nphotons, intensity
    # scale, offsets, training batch size; see ptychopinn.card_parameters); only with trust.
    training: dict | None = None

    @property
    def missing_classes(self) -> list[str]:
        """Custom classes that could not be resolved when the card was read (``module.Class``)."""
        return [c.qualname for c in self.custom_classes if not c.importable]

    def missing_description(self) -> str:
        return ", ".join(c.describe() for c in self.custom_classes if not c.importable)

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "kind": self.kind,
            "loaded_from": self.loaded_from,
            "fallback": self.fallback,
            "inputs": [dict(spec) for spec in self.inputs],
            "outputs": [dict(spec) for spec in self.outputs],
            "takes_positions": self.takes_positions,
            "layers": dict(self.layers),
            "custom_classes": [c.qualname for c in self.custom_classes],
            "missing_classes": self.missing_classes,
            "reassembly": [r.to_dict() for r in self.reassembly],
            "intensity_scale": self.intensity_scale,
            "parameters": self.parameters,
            "gridsize": self.gridsize,
            "warnings": list(self.warnings),
            "custom_class_details": [c.to_dict() for c in self.custom_classes],
            "unsafe_layers": list(self.unsafe_layers),
            "keras_version": self.keras_version,
            "params": self.params,
            "training": self.training,
        }


@dataclass
class LoadedModel:
    """A model ready to call, with the card it was loaded under.

    ``model`` is a Keras model (for a SavedModel, a functional wrapper around its serving
    signature). ``intensity_scale`` is the factor the diffraction amplitude is multiplied by before
    the model sees it (None when the model carries none). ``params`` holds a bundle's
    ``params.dill`` scalars when loaded with trust, per model (never a global config).
    """

    model: Any
    card: ModelCard
    intensity_scale: float | None
    kind: str
    loaded_from: str
    fallback: str | None
    params: dict | None = None


class MissingCustomClasses(InputError, MissingDependency):
    """The model refers to custom classes that are not importable (exit 2, one line)."""


def input_roles(model_or_card: Any) -> dict[str, str | None]:
    """Which input is the diffraction input and which the positions input.

    By name first (``input`` / ``diffraction`` ...; ``input_positions`` / ``positions`` ...), then
    by shape: (None, 1, 2, C) is positions, the remaining 4-D input is diffraction. A single input
    is the diffraction input.

    Parameters
    ----------
    model_or_card : ModelCard, LoadedModel, dict (card.to_dict()) or Keras model

    Returns
    -------
    dict
        ``{"diffraction": name | None, "positions": name | None}``.
    """
    specs = _input_specs_of(model_or_card)
    names = [s["name"] for s in specs]
    roles: dict[str, str | None] = {"diffraction": None, "positions": None}
    lowered = {str(n).lower(): n for n in names}
    for candidate in POSITIONS_INPUT_NAMES:
        if candidate in lowered:
            roles["positions"] = lowered[candidate]
            break
    if roles["positions"] is None:
        for spec in specs:
            if _looks_like_positions(spec):
                roles["positions"] = spec["name"]
                break
    for candidate in DIFFRACTION_INPUT_NAMES:
        if candidate in lowered and lowered[candidate] != roles["positions"]:
            roles["diffraction"] = lowered[candidate]
            break
    if roles["diffraction"] is None:
        rest = [s for s in specs if s["name"] != roles["positions"]]
        four_d = [s for s in rest if s.get("shape") is not None and len(s["shape"]) == 4]
        if four_d:
            roles["diffraction"] = four_d[0]["name"]
        elif rest:
            roles["diffraction"] = rest[0]["name"]
    return roles


def _finish_card(card: ModelCard) -> None:
    """Derived fields: takes_positions, gridsize, missing-class warnings."""
    roles = input_roles(card)
    card.takes_positions = roles["positions"] is not None
    positions = next((s for s in card.inputs if s["name"] == roles["positions"]), None)
    if positions and positions.get("shape") and positions["shape"][-1] is not None:
        channels = int(positions["shape"][-1])
        root = math.isqrt(channels)
        if root * root == channels:
            card.gridsize = root
    if card.gridsize is None:
        stored = [r.gridsize for r in card.reassembly if r.gridsize]
        if stored:
            card.gridsize = int(stored[0])
    if card.takes_positions and not card.reassembly and card.kind != KIND_SAVEDMODEL:
        card.warnings.append("the model takes positions but no reassembly layer was recognized")
    if card.unsafe_layers:
        card.warnings.append(f"{len(card.unsafe_layers)} layer(s) run code stored in the file "
                             f"({', '.join(card.unsafe_layers[:3])}): loading needs --trust")
    if card.missing_classes:
        card.warnings.append(f"custom classes not importable: {card.missing_description()}")


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _looks_like_positions(spec: dict) -> bool:
    shape = spec.get("shape")
    return bool(shape) and len(shape) == 4 and shape[1] == 1 and shape[2] == 2


def _input_specs_of(thing: Any) -> list[dict]:
    if isinstance(thing, ModelCard):
        return thing.inputs
    if isinstance(thing, LoadedModel):
        return thing.card.inputs
    if isinstance(thing, dict) and "inputs" in thing:
        return thing["inputs"]
    inputs = getattr(thing, "inputs", None)
    if inputs is None:
        raise TypeError(f"input_roles: expected a ModelCard, LoadedModel or Keras model, got {type(thing).__name__}")
    specs = []
    for tensor in inputs:
        name = getattr(tensor, "name", None)
        name = name.split(":")[0] if isinstance(name, str) else name
        shape = getattr(tensor, "shape", None)
        specs.append({"name": name, "shape": list(shape) if shape is not None else None,
                      "dtype": str(getattr(tensor, "dtype", None))})
    return specs
