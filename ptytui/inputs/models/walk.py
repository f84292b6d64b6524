"""Walking a model config (Keras 3 ``config.json`` or a legacy ``model_config``) without
deserializing it: inputs, outputs, layer counts, custom classes, the reassembly layer.

Output specs of layers the config does not record are inferred by rules (shape-preserving
layers, PtychoPINN's and ptytui's reassembly and crop layers) or asked of Keras for built-in
classes, so custom classes need not be importable.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

from ptytui.core import tfload
from ptytui.errors import InputError
from ptytui.inputs.models.card import (
    _COMPLEX_COMBINE,
    _CROP_CLASSES,
    _ELEMENTWISE_MERGE,
    _SHAPE_PRESERVING,
    CANVAS_KEYS,
    INTENSITY_SCALE_CLASSES,
    MODEL_CLASSES,
    PATCH_KEYS,
    REASSEMBLY_CLASSES,
    UNSAFE_CLASSES,
    CustomClass,
    ModelCard,
    ReassemblyLayer,
    _first_line,
)
from ptytui.inputs.models.classes import class_importable
from ptytui.inputs.models.known_classes import KERAS_LAYER_NAMES
from ptytui.inputs.models.shape_rules import builtin_output_shape

# --------------------------------------------------------------------------------------------
# Walking a model config (no deserialization)
# --------------------------------------------------------------------------------------------

Spec = dict  # {"shape": list | None, "dtype": str | None}


class _ConfigWalk:
    """Accumulates what the card needs while walking (nested) model configs."""

    def __init__(self, card: ModelCard, where: str):
        self.card = card
        self.where = where
        self.counts: Counter = Counter()
        self.customs: dict[tuple, CustomClass] = {}
        self.scale_candidates: list[float] = []
        self._builtin_names: set[str] | None = None

    # -- classes ------------------------------------------------------------------------------
    def class_of(self, layer: dict) -> tuple[str, str | None, str | None]:
        class_name = str(layer.get("class_name", "?"))
        registered = layer.get("registered_name")
        if ">" in class_name:  # legacy serialization writes the registered name as class_name
            registered = registered or class_name
            class_name = class_name.split(">")[-1]
        return class_name, layer.get("module"), registered

    def is_custom(self, class_name: str, module: str | None, registered: str | None) -> bool:
        if module:
            return module.split(".")[0] != "keras"
        if registered and ">" in registered:
            return True
        if class_name in MODEL_CLASSES or class_name in UNSAFE_CLASSES or class_name == "InputLayer":
            return False
        return class_name not in self.builtin_names()

    def builtin_names(self) -> frozenset[str] | set[str]:
        """Keras' built-in layer names: the static list (no TensorFlow import for a card), with
        the installed Keras' own names added when Keras is already loaded anyway."""
        if self._builtin_names is None:
            keras = sys.modules.get("keras")
            live = {n for n in dir(getattr(keras, "layers", None)) if not n.startswith("_")}
            self._builtin_names = KERAS_LAYER_NAMES | live
        return self._builtin_names

    def note_class(self, class_name: str, module: str | None, registered: str | None) -> None:
        self.counts[class_name] += 1
        if self.is_custom(class_name, module, registered):
            key = (module, class_name, registered)
            if key not in self.customs:
                self.customs[key] = CustomClass(class_name, module, registered)


def _describe_model_config(config: dict, card: ModelCard, *, where: str) -> None:
    """Fill the card from a whole-model config (Keras 3 .keras or legacy .h5 model_config)."""
    walk = _ConfigWalk(card, where)
    class_name, module, registered = walk.class_of(config)
    if class_name not in MODEL_CLASSES and not isinstance((config.get("config") or {}).get("layers"), list):
        # a subclassed model: the file holds its class and weights, not its graph
        walk.note_class(class_name, module, registered)
        card.custom_classes = [CustomClass(class_name, module, registered, class_importable(
            CustomClass(class_name, module, registered)))] if walk.customs else []
        card.layers = dict(walk.counts)
        card.warnings.append(f"class {class_name!r} is a subclassed model: its layer graph is not in "
                             "the file, so inputs, outputs and layers are unknown until it is loaded")
        return
    try:
        inputs, outputs = _walk_model(config, walk, prefix="", outer_inputs=None)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed configs fail in many shapes
        raise InputError(where, "a well-formed Keras model config",
                         f"{type(exc).__name__}: {_first_line(exc)}") from None
    card.inputs = inputs
    card.outputs = outputs
    card.layers = dict(sorted(walk.counts.items(), key=lambda kv: (-kv[1], kv[0])))
    for custom in walk.customs.values():
        custom.importable = class_importable(custom)
    card.custom_classes = sorted(walk.customs.values(), key=lambda c: (c.module or "", c.class_name))
    if walk.scale_candidates and card.intensity_scale is None:
        card.intensity_scale = walk.scale_candidates[0]
    if any(o.get("shape") is None for o in outputs):
        card.warnings.append("some output shapes are not recorded in the config and could not be inferred")


def _walk_model(config: dict, walk: _ConfigWalk, *, prefix: str,
                outer_inputs: list[Spec] | None) -> tuple[list[dict], list[dict]]:
    """Walk one (possibly nested) model; return its input and output specs (named)."""
    class_name, _, _ = walk.class_of(config)
    body = config.get("config", {})
    name = body.get("name") or class_name
    path = f"{prefix}/{name}" if prefix else name
    if class_name == "Sequential" or ("input_layers" not in body and "layers" in body):
        return _walk_sequential(body, walk, path, outer_inputs)
    return _walk_functional(body, walk, path)


def _input_layer_spec(layer_config: dict) -> Spec:
    shape = layer_config.get("batch_shape") or layer_config.get("batch_input_shape")
    if shape is None and layer_config.get("shape") is not None:
        shape = [None, *layer_config["shape"]]
    dtype = layer_config.get("dtype")
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name")
    return {"shape": list(shape) if shape is not None else None, "dtype": dtype or "float32"}


def _tensor_refs(node: Any) -> list[tuple[tuple[str, int, int], Spec | None]]:
    """Tensors a node consumes: Keras 3 dict nodes carry shapes, legacy list nodes only names."""
    refs: list[tuple[tuple[str, int, int], Spec | None]] = []

    def visit(value):
        if isinstance(value, dict):
            if value.get("class_name") == "__keras_tensor__":
                cfg = value.get("config", {})
                history = cfg.get("keras_history") or [None, 0, 0]
                refs.append(((history[0], int(history[1]), int(history[2])),
                             {"shape": cfg.get("shape"), "dtype": cfg.get("dtype")}))
                return
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            if len(value) >= 3 and isinstance(value[0], str) and isinstance(value[1], int) \
                    and isinstance(value[2], int):  # legacy [layer, node, tensor, kwargs]
                refs.append(((value[0], value[1], value[2]), None))
                return
            for item in value:
                visit(item)

    if isinstance(node, dict):
        visit(node.get("args", []))
        visit(node.get("kwargs", {}))
    else:
        visit(node)
    return refs


def _layer_refs(spec_list: Any) -> list[tuple[str, int, int]]:
    """input_layers / output_layers: one [name, node, tensor], a list of them, or a dict of them."""
    if isinstance(spec_list, dict):
        spec_list = list(spec_list.values())
    if not spec_list:
        return []
    if isinstance(spec_list[0], str):
        return [(spec_list[0], int(spec_list[1]), int(spec_list[2]))]
    return [(item[0], int(item[1]), int(item[2])) for item in spec_list]


def _walk_functional(body: dict, walk: _ConfigWalk, path: str) -> tuple[list[dict], list[dict]]:
    layers = body.get("layers", [])
    known: dict[tuple[str, int, int], Spec] = {}
    for layer in layers:  # consumers record the shapes of what they consume (Keras 3 configs)
        for node in layer.get("inbound_nodes", []) or []:
            for ref, spec in _tensor_refs(node):
                if spec is not None and ref not in known:
                    known[ref] = spec
    by_name = {layer.get("name") or layer.get("config", {}).get("name"): layer for layer in layers}

    def lookup(ref):
        # keras_history counts a nested model's own construction node (and other graphs' calls of
        # a shared layer), so node indices can be offset from this graph's inbound_nodes order:
        # fall back to the one spec recorded for that layer output, when there is only one.
        if ref in known:
            return known[ref]
        same = [spec for key, spec in known.items() if key[0] == ref[0] and key[2] == ref[2]]
        return same[0] if len(same) == 1 else None

    node_inputs: dict[str, list[tuple[tuple[str, int, int], Spec]]] = {}
    consumers: dict[str, list[str]] = {}
    for layer in layers:
        layer_name = layer.get("name") or layer.get("config", {}).get("name")
        class_name, module, registered = walk.class_of(layer)
        layer_path = f"{path}/{layer_name}"
        walk.note_class(class_name, module, registered)
        cfg = layer.get("config", {}) or {}
        if class_name == "InputLayer":
            known.setdefault((layer_name, 0, 0), _input_layer_spec(cfg))
            continue
        nodes = layer.get("inbound_nodes", []) or []
        if nodes and not isinstance(nodes[0], dict) and isinstance(nodes[0], list) and nodes[0] \
                and isinstance(nodes[0][0], str):
            nodes = [nodes]  # a legacy single node written flat
        nested_outputs = None
        for node_index, node in enumerate(nodes):
            refs = _tensor_refs(node)
            in_specs = [spec if spec is not None else (lookup(ref) or {"shape": None, "dtype": None})
                        for ref, spec in refs]
            for ref, _ in refs:
                consumers.setdefault(ref[0], []).append(layer_name)
            if node_index == 0:
                node_inputs[layer_name] = list(zip([r for r, _ in refs], in_specs))
            if _is_nested_model(layer):
                if nested_outputs is None:  # walk (and count) a shared nested model once
                    _, nested_outputs = _walk_model(layer, walk, prefix=path, outer_inputs=in_specs)
                for i, out in enumerate(nested_outputs):
                    known.setdefault((layer_name, node_index, i), {"shape": out["shape"], "dtype": out["dtype"]})
                continue
            if not any(key[0] == layer_name and key[1] == node_index for key in known):
                known[(layer_name, node_index, 0)] = _infer_output_spec(layer, class_name, module, in_specs, walk)
        if not nodes and _is_nested_model(layer):
            _walk_model(layer, walk, prefix=path, outer_inputs=None)
        _note_layer_details(layer, class_name, layer_path, walk)

    for layer in layers:  # reassembly layers need their neighbours' shapes
        class_name, _, _ = walk.class_of(layer)
        if class_name in REASSEMBLY_CLASSES:
            layer_name = layer.get("name") or layer.get("config", {}).get("name")
            _note_reassembly(layer, class_name, f"{path}/{layer_name}", walk,
                             inputs=node_inputs.get(layer_name, []),
                             output=lookup((layer_name, 0, 0)),
                             producer=lambda ref: by_name.get(ref[0]),
                             producer_inputs=lambda name: [s for _, s in node_inputs.get(name, [])],
                             consumer_outputs=[(by_name.get(c), lookup((c, 0, 0)))
                                               for c in consumers.get(layer_name, [])])

    def named(refs):
        out = []
        for ref in refs:
            spec = lookup(ref) or {"shape": None, "dtype": None}
            out.append({"name": ref[0], "shape": spec.get("shape"), "dtype": spec.get("dtype")})
        return out

    return named(_layer_refs(body.get("input_layers"))), named(_layer_refs(body.get("output_layers")))


def _walk_sequential(body: dict, walk: _ConfigWalk, path: str,
                     outer_inputs: list[Spec] | None) -> tuple[list[dict], list[dict]]:
    layers = body.get("layers", [])
    spec: Spec = {"shape": None, "dtype": None}
    input_name = f"{body.get('name', 'sequential')}_input"
    if outer_inputs:
        spec = dict(outer_inputs[0])
    elif body.get("build_input_shape") is not None:
        spec = {"shape": list(body["build_input_shape"]), "dtype": "float32"}
    input_spec = None
    previous = None
    pending_reassembly = []
    for index, layer in enumerate(layers):
        layer_name = layer.get("name") or layer.get("config", {}).get("name") or f"layer_{index}"
        class_name, module, registered = walk.class_of(layer)
        walk.note_class(class_name, module, registered)
        cfg = layer.get("config", {}) or {}
        if class_name == "InputLayer":
            spec = _input_layer_spec(cfg)
            input_name = cfg.get("name", input_name)
            input_spec = dict(spec)
            continue
        if input_spec is None:
            if spec.get("shape") is None and cfg.get("batch_input_shape"):
                spec = _input_layer_spec(cfg)
            input_spec = dict(spec)
        in_spec = spec
        if _is_nested_model(layer):
            _, nested_outputs = _walk_model(layer, walk, prefix=path, outer_inputs=[spec])
            spec = {"shape": nested_outputs[0]["shape"], "dtype": nested_outputs[0]["dtype"]} \
                if nested_outputs else {"shape": None, "dtype": None}
        else:
            spec = _infer_output_spec(layer, class_name, module, [spec], walk)
        layer_path = f"{path}/{layer_name}"
        _note_layer_details(layer, class_name, layer_path, walk)
        if class_name in REASSEMBLY_CLASSES:
            pending_reassembly.append((index, layer, class_name, layer_path, in_spec, spec, previous))
        previous = (layer, in_spec)
    for index, layer, class_name, layer_path, in_spec, out_spec, prev in pending_reassembly:
        nxt = layers[index + 1] if index + 1 < len(layers) else None
        _note_reassembly(layer, class_name, layer_path, walk, inputs=[(("", 0, 0), in_spec)],
                         output=out_spec, producer=lambda ref, prev=prev: prev[0] if prev else None,
                         producer_inputs=lambda name, prev=prev: [prev[1]] if prev else [],
                         consumer_outputs=[(nxt, None)] if nxt is not None else [])
    spec_in = input_spec or {"shape": None, "dtype": None}
    # Keras names a Sequential model's output after its last layer
    last = [layer for layer in layers if walk.class_of(layer)[0] != "InputLayer"]
    output_name = ((last[-1].get("name") or last[-1].get("config", {}).get("name")) if last else None) \
        or body.get("name", "sequential")
    return ([{"name": input_name, "shape": spec_in.get("shape"), "dtype": spec_in.get("dtype")}],
            [{"name": output_name, "shape": spec.get("shape"), "dtype": spec.get("dtype")}])


def _is_nested_model(layer: dict) -> bool:
    cfg = layer.get("config", {}) or {}
    return isinstance(cfg, dict) and isinstance(cfg.get("layers"), list)


def _note_layer_details(layer: dict, class_name: str, layer_path: str, walk: _ConfigWalk) -> None:
    cfg = layer.get("config", {}) or {}
    if class_name in UNSAFE_CLASSES:
        walk.card.unsafe_layers.append(layer_path)
    if class_name in INTENSITY_SCALE_CLASSES:
        for key in ("intensity_scale", "scale"):
            value = cfg.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                walk.scale_candidates.append(float(value))
                break


def _spatial(spec: Spec | None) -> int | None:
    shape = (spec or {}).get("shape")
    if shape and len(shape) == 4 and isinstance(shape[1], int):
        return int(shape[1])
    return None


def _note_reassembly(layer, class_name, layer_path, walk, *, inputs, output, producer,
                     producer_inputs, consumer_outputs) -> None:
    cfg = layer.get("config", {}) or {}
    canvas = next((int(cfg[k]) for k in CANVAS_KEYS if isinstance(cfg.get(k), (int, float))), None)
    patch = next((int(cfg[k]) for k in PATCH_KEYS if isinstance(cfg.get(k), (int, float))), None)
    gridsize = cfg.get("gridsize") if isinstance(cfg.get("gridsize"), int) else None
    inferred = False
    if canvas is None or patch is None:
        # Infer from the shapes around it: a ZeroPadding2D before it pads N -> P; a crop after it
        # brings P back to N; its own input and output shapes bracket the two sizes.
        sizes = []
        first_in = inputs[0][1] if inputs else None
        in_h, out_h = _spatial(first_in), _spatial(output)
        sizes += [s for s in (in_h, out_h) if s]
        upstream = producer(inputs[0][0]) if inputs else None
        patch_candidates = [s for s in (in_h, out_h) if s]
        if upstream is not None and walk.class_of(upstream)[0] == "ZeroPadding2D":
            up_in = producer_inputs(upstream.get("name") or upstream.get("config", {}).get("name"))
            if up_in and _spatial(up_in[0]):
                patch_candidates.append(_spatial(up_in[0]))
        for consumer, consumer_out in consumer_outputs:
            if consumer is None:
                continue
            consumer_class = walk.class_of(consumer)[0]
            ccfg = consumer.get("config", {}) or {}
            if consumer_class in _CROP_CLASSES:
                crop_h = _spatial(consumer_out)
                if crop_h is None and isinstance(ccfg.get("output_size"), int):
                    crop_h = ccfg["output_size"]
                if crop_h:
                    patch_candidates.append(crop_h)
        if canvas is None and sizes:
            canvas = max(sizes)
            inferred = True
        if patch is None and patch_candidates:
            patch = min(patch_candidates)
            inferred = True
        if canvas is not None and patch is not None and canvas == patch:
            walk.card.warnings.append(f"{layer_path}: canvas and patch sizes could not be told apart "
                                      "from the neighbouring shapes")
    walk.card.reassembly.append(ReassemblyLayer(layer_path, class_name, canvas, patch, gridsize, inferred))


def _first_shape(specs: list[Spec]) -> list | None:
    return specs[0].get("shape") if specs else None


def _infer_output_spec(layer: dict, class_name: str, module: str | None, in_specs: list[Spec],
                       walk: _ConfigWalk) -> Spec:
    """Output spec of a layer from rules, else from Keras for built-in classes (config only)."""
    cfg = layer.get("config", {}) or {}
    shape = _first_shape(in_specs)
    dtype = in_specs[0].get("dtype") if in_specs else None
    if shape is None:
        return {"shape": None, "dtype": dtype}
    if class_name in _SHAPE_PRESERVING or class_name in _ELEMENTWISE_MERGE:
        return {"shape": list(shape), "dtype": dtype}
    if class_name in _COMPLEX_COMBINE:
        return {"shape": list(shape), "dtype": "complex64"}
    if class_name == "FFTAmplitude":
        return {"shape": list(shape), "dtype": "float32"}
    if class_name == "ExtractPatches" and isinstance(cfg.get("patch_size"), int) and len(in_specs) > 1:
        n, offsets = cfg["patch_size"], in_specs[1].get("shape")
        channels = offsets[-1] if offsets else None
        return {"shape": [shape[0], n, n, channels], "dtype": "complex64"}
    if class_name == "TrimReconstructionLayer" and isinstance(cfg.get("output_size"), int) and len(shape) == 4:
        n = cfg["output_size"]
        return {"shape": [shape[0], n, n, shape[3]], "dtype": dtype}
    if class_name in REASSEMBLY_CLASSES and len(shape) == 4:
        if class_name == "ReassemblePatches" and isinstance(cfg.get("patch_size"), int):
            n = cfg["patch_size"] if cfg.get("crop", True) else cfg.get("canvas_size", cfg["patch_size"])
        elif class_name == "ReassemblePatchesLayer" and isinstance(cfg.get("padded_size"), int):
            n = cfg["padded_size"]  # PtychoPINN's layer returns the padded canvas; a trim follows
        else:
            n = shape[1]
        return {"shape": [shape[0], n, n, 1], "dtype": "complex64"}
    if walk.is_custom(class_name, module, walk.class_of(layer)[2]) or class_name in UNSAFE_CLASSES:
        return {"shape": None, "dtype": None}
    return _keras_output_spec(layer, in_specs)


def _keras_output_spec(layer: dict, in_specs: list[Spec]) -> Spec:
    """A built-in layer's output spec: by the config's rules (shape_rules), else asked of Keras
    (safe mode; no custom or Lambda classes) only when Keras is already imported, since a card
    never imports TensorFlow for itself."""
    class_name, cfg = str(layer.get("class_name")), layer.get("config") or {}
    shape = builtin_output_shape(class_name, cfg, [s.get("shape") for s in in_specs])
    if shape is not None:
        return {"shape": shape, "dtype": _compute_dtype(cfg) or in_specs[0].get("dtype")}
    if "keras" not in sys.modules:
        return {"shape": None, "dtype": None}
    try:
        keras = tfload.keras()
        from keras.src.saving import serialization_lib  # noqa: PLC0415

        class_name = str(layer.get("class_name"))
        builtin = getattr(keras.layers, class_name, None)
        with serialization_lib.SafeModeScope(True):
            if isinstance(builtin, type):  # works for legacy configs, which carry no module
                instance = builtin.from_config(dict(layer.get("config") or {}))
            else:  # keras.ops layers (GetItem, ...) are found through their module
                config = {k: layer[k] for k in ("module", "class_name", "config", "registered_name") if k in layer}
                instance = keras.layers.deserialize(config)
        tensors = [keras.KerasTensor(tuple(s["shape"]), dtype=s.get("dtype") or "float32") for s in in_specs]
        argument = tensors[0] if len(tensors) == 1 else tensors
        out = instance.compute_output_spec(argument)
        if isinstance(out, (list, tuple)):
            out = out[0]
        return {"shape": [None if d is None else int(d) for d in out.shape], "dtype": str(out.dtype)}
    except Exception:  # noqa: BLE001 - inference is best effort; the card says what is unknown
        return {"shape": None, "dtype": None}



def _compute_dtype(config: dict) -> str | None:
    """The dtype a layer computes in, from its config's ``dtype`` (a name or a DTypePolicy)."""
    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name")
    if isinstance(dtype, str) and dtype.startswith("mixed_"):
        return dtype.split("_", 1)[1]
    return dtype if isinstance(dtype, str) else None
